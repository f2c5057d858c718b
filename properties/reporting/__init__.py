"""What a run says: failure messages in layout terms, the compliance table, counts and replayable cases.

    report          byte-exact comparison and failure messages in both layouts
    cells           which compliance cell one law check exercised, and the per-test tally
    compliance      the compliance table (pytest plugin; --marlin-report)
    counters        Hypothesis examples executed per test (pytest plugin; --marlin-count-examples)
    replay          minimal failing cases: read off failures, saved, replayed (pytest plugin and CLI)
"""
