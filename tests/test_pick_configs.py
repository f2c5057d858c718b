"""bench/pick_configs.py turns a configuration sweep into choices: fed sweeps whose winner is known by construction,
it picks that winner, never picks a configuration that failed its float64 check on any case or a repack variant
with wrong bytes, and refuses a file that is not a sweep with one line (exit 2)."""

import importlib.util
import json
import re
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "pick_configs.py"
_spec = importlib.util.spec_from_file_location("pick_configs", _PATH)
pick_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pick_configs)

SHAPES = [(8192, 8192), (28672, 4096)]


def _gemm(times, rows=16, scheme="channel", err=0.5):
    """Records from {(config, splits): [us per shape]}."""
    return [dict(N=n, K=k, M=rows, scheme=scheme, config=config, splits=splits, us=us[i], err_over_bound=err)
            for (config, splits), us in times.items() for i, (n, k) in enumerate(SHAPES)]


def _repack(variant, repack_us, fused_us, ok=True):
    return dict(repack=variant, copy_us=10.0, repack_us=repack_us, fused_us=fused_us, ok=ok)


def test_the_configuration_fastest_over_the_cases_is_chosen_and_compared_with_today():
    # config 9 is 20% faster than today's config 0 on both shapes; its automatic split count is its best
    records = _gemm({(0, None): [10.0, 20.0], (0, 2): [11.0, 19.0], (9, None): [8.0, 16.0], (9, 2): [9.0, 17.0]})
    (choice,), splits, failed = pick_configs.gemm_choices(records)
    assert (choice["chosen"], choice["default"]) == (9, 0) and not failed
    assert choice["chosen_geomean"] == pytest.approx(1.0) and choice["chosen_worst"] == pytest.approx(1.0)
    assert choice["default_geomean"] == pytest.approx(math.sqrt(10 / 8 * 20 / 16))
    lag = {(r["config"]): r for r in splits}
    assert lag[9]["auto_keeps_up"] and lag[0]["auto_over_best_split_worst"] == pytest.approx(20 / 19)
    assert not lag[0]["auto_keeps_up"]


def test_a_configuration_that_failed_its_check_on_any_case_is_never_chosen():
    records = _gemm({(0, None): [10.0, 20.0], (9, None): [1.0, 2.0]})
    records[-1]["err_over_bound"] = 1.5   # config 9 wrong on the second shape, though fastest
    (choice,), _, failed = pick_configs.gemm_choices(records)
    assert choice["chosen"] == 0 and [r["config"] for r in failed] == [9]
    records[-1]["err_over_bound"] = float("nan")   # a NaN error is not a pass either: it fails
    (choice,), _, failed = pick_configs.gemm_choices(records)
    assert choice["chosen"] == 0 and [r["config"] for r in failed] == [9]


def test_stream_k_is_compared_with_the_best_split_count_of_its_configuration_where_both_passed():
    # config 0: stream-K 1.5x the best split (2) on the first shape, 0.9x on the second; config 9 has no stream-K
    records = _gemm({(0, None): [10.0, 20.0], (0, 1): [12.0, 20.0], (0, 2): [10.0, 22.0], (0, 0): [15.0, 18.0],
                     (9, 1): [9.0, 19.0]})
    (row,) = pick_configs.stream_k_rows(records)
    assert (row["M"], row["config"], row["cases"]) == (16, 0, 2)
    assert (row["best"], row["worst"]) == (pytest.approx(0.9), pytest.approx(1.5))
    assert row["geomean"] == pytest.approx(math.sqrt(1.5 * 0.9))
    records[7]["err_over_bound"] = 2.0    # stream-K failed its check on the second shape: that case does not count
    assert records[7]["splits"] == 0 and records[7]["N"] == SHAPES[1][0]
    (row,) = pick_configs.stream_k_rows(records)
    assert row["cases"] == 1 and row["worst"] == pytest.approx(1.5)


def test_repack_variants_are_ranked_and_wrong_bytes_are_left_out():
    ranked, wrong = pick_configs.repack_choices([_repack("4,8,0", 16.0, 20.0), _repack("2,16,1", 12.0, 13.0),
                                                 _repack("1,0,0", 5.0, 5.0, ok=False)])
    assert [r["variant"] for r in ranked] == ["2,16,1", "4,8,0"] and ranked[0]["fused_over_copy"] == 1.3
    assert [r["repack"] for r in wrong] == ["1,0,0"]


def test_the_report_names_what_was_never_chosen(tmp_path, capsys):
    records = _gemm({(0, None): [10.0, 20.0], (9, None): [8.0, 16.0]}) + [_repack("4,8,0", 16.0, 20.0),
                                                                            _repack("1,0,0", 5.0, 5.0, ok=False)]
    records[0]["err_over_bound"] = 2.0
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(records))
    assert pick_configs.main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "1 GEMM cases failed" in text and "(configurations c0)" in text and "wrong bytes (1,0,0)" in text
    assert json.loads((tmp_path / "out" / "picks.json").read_text())["gemm"][0]["chosen"] == 9


@pytest.mark.parametrize("content, match", [("{}", "must be a list"), ('[{"N": 1}]', "record 0 has neither"),
                                            ("not json", "Expecting value")])
def test_a_file_that_is_not_a_sweep_exits_2_with_one_line(tmp_path, capsys, content, match):
    sweep = tmp_path / "sweep.json"
    sweep.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        pick_configs.main([str(sweep)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and match in err[-1]


def test_todays_configuration_is_the_one_bindings_cpp_chooses():
    # DEFAULT_CONFIG restates csrc/bindings.cpp config_for_rows; a change there must change it here.
    source = (_PATH.parents[1] / "marlin_fast" / "csrc" / "bindings.cpp").read_text()
    body = source[source.index("int config_for_rows(int64_t rows) {"):]
    body = body[:body.index("}")]
    limits = [(int(limit), int(config)) for limit, config in re.findall(r"if \(rows <= (\d+)\) return (\d+);", body)]
    last = int(re.search(r"\n\s*return (\d+);", body).group(1))
    assert limits + [(math.inf, last)] == list(pick_configs.DEFAULT_CONFIG)


def test_the_wide_rule_is_the_one_bindings_cpp_chooses():
    # WIDE_CONFIG and WIDE_MIN_WEIGHT restate csrc/launch.h kWideConfig and csrc/bindings.cpp dense_config's rule
    # (configuration 2's rows on N * K >= kWideMinWeight); a change there must change them here.
    csrc = _PATH.parents[1] / "marlin_fast" / "csrc"
    bindings, launch = (csrc / "bindings.cpp").read_text(), (csrc / "launch.h").read_text()
    assert int(re.search(r"constexpr int kWideConfig = (\d+);", launch).group(1)) == pick_configs.WIDE_CONFIG
    shift = int(re.search(r"kWideMinWeight = int64_t\{1\} << (\d+);", bindings).group(1))
    assert 1 << shift == pick_configs.WIDE_MIN_WEIGHT
    assert "by_rows == 2 && n * k >= kWideMinWeight ? mf::kWideConfig : by_rows" in bindings
