"""bench/sass_report.py counts the instructions one pipeline stage of a GEMM main loop issues, from nvdisasm's text.
These tests feed it small hand-written listings (no nvcc, no nvdisasm on CI) whose answer is known by construction:
a planted instruction anywhere in the stage moves the count by one, one outside it does not."""

import importlib.util
import re
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "sass_report.py"
_spec = importlib.util.spec_from_file_location("sass_report", _PATH)
sass_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass_report)

OURS = "_ZN11marlin_fast18marlin_gemm_kernelI13__nv_bfloat16Li0ELi0EEEvNS_8GemmArgsE"
PEER = "_ZN6marlin6MarlinI13__nv_bfloat16Ll2814749767172868ELi256ELi1ELi8ELi8ELb0ELi2ELin1ELb0EEEvPK4int4"


def listing(name: str, lines: list[str]) -> str:
    """nvdisasm-style text: a function header, then labels (".L_x_N:") and instructions with addresses."""
    out, addr = [f"//---- .text.{name} ----", f".text.{name}:"], 0
    for line in lines:
        if line.endswith(":"):
            out.append(line)
        else:
            out.append(f"        /*{addr:04x}*/                   {line} ;")
            addr += 16
    return "\n".join(out) + "\n"


# Our loop is one stage: 7 instructions, 2 of them an inner copy loop without HMMA; one setup and one exit outside.
OUR_LOOP = ["MOV R1, R2", ".L_x_1:", "LDS.128 R4, [R5]", "HMMA.16816.F32.BF16 R8, R12, R4, R8", "@P0 BRA `(.L_x_2)",
            ".L_x_3:", "LDGSTS.E.BYPASS.128 [R6], desc[UR4][R2.64]", "@P1 BRA `(.L_x_3)", ".L_x_2:",
            "IMAD.SHL.U32 R7, R7, 0x10, RZ", "@!P2 BRA `(.L_x_1)", "EXIT"]
# The peer's loop unrolls two stages (template argument stages = 2): HMMA to HMMA is 4 instructions; the slice
# epilogue after the second stage sits inside the loop and must not count.
PEER_LOOP = ["MOV R1, R2", ".L_x_10:", "HMMA.16816.F32.BF16 R8, R12, R4, R8", "LOP3.LUT R4, R4, 0xff, RZ, 0xc0, !PT",
             "LDS.128 R4, [R5]", "IMAD R5, R5, 0x2, R6", "HMMA.16816.F32.BF16 R8, R12, R4, R8",
             "LOP3.LUT R4, R4, 0xff, RZ, 0xc0, !PT", "LDS.128 R4, [R5]", "IMAD R5, R5, 0x2, R6",
             "@P0 BRA `(.L_x_11)", "STG.E [R2.64], R8", "FADD R8, R8, R9", ".L_x_11:", "@!P1 BRA `(.L_x_10)", "EXIT"]


def _row(name, lines):
    (function,) = sass_report.parse_sass(listing(name, lines)).values()
    return sass_report.row_of(name, function, sass_report.our_configs())


def test_our_stage_is_the_loop_without_its_inner_copy_loop():
    row = _row(OURS, OUR_LOOP)
    assert (row["who"], row["config"], row["scheme"]) == ("ours", 0, "channel")
    assert row["loop_instructions"] == 7 and row["inner_loop_instructions"] == 2 and row["stage_instructions"] == 5
    assert row["per_tile"] == round(5 / sass_report.our_configs()[0]["u"], 1)
    assert row["classes"]["bit ops (dequant)"] == 1 and row["classes"]["mma"] == 1


def test_the_peer_stage_runs_from_one_hmma_to_the_next_and_leaves_the_epilogue_out():
    row = _row(PEER, PEER_LOOP)
    assert row["who"] == "peer" and row["stages"] == 2 and row["group_blocks"] == -1
    assert row["stage_instructions"] == 4 and row["stage_lengths"] == [4]
    assert row["tiles_per_warp"] == 2 and row["per_tile"] == 2.0
    assert "STG" not in row["opcodes"] and "FADD" not in row["opcodes"]


@pytest.mark.parametrize("where", range(1, 5))
def test_an_instruction_planted_in_a_stage_is_counted(where):
    ours = OUR_LOOP[:1 + where] + ["IADD3 R9, R9, 0x1, RZ"] + OUR_LOOP[1 + where:]
    assert _row(OURS, ours)["stage_instructions"] == 6
    peer = PEER_LOOP[:2 + where] + ["IADD3 R9, R9, 0x1, RZ"] + PEER_LOOP[2 + where:]
    assert _row(PEER, peer)["stage_instructions"] == 5


def test_an_instruction_planted_in_the_inner_copy_loop_counts_there():
    ours = OUR_LOOP[:6] + ["IADD3 R9, R9, 0x1, RZ"] + OUR_LOOP[6:]
    row = _row(OURS, ours)
    assert (row["stage_instructions"], row["inner_loop_instructions"]) == (5, 3)


def test_instructions_outside_the_loop_are_not_counted():
    assert _row(OURS, ["NOP"] * 3 + OUR_LOOP + ["NOP"] * 3)["stage_instructions"] == 5
    assert _row(PEER, ["NOP"] * 3 + PEER_LOOP[:-1] + ["NOP", "EXIT"])["stage_instructions"] == 4


def test_a_function_without_a_loop_of_hmma_or_of_another_kernel_has_no_row():
    assert _row(OURS, [line for line in OUR_LOOP if not line.startswith("HMMA")]) is None
    assert _row("_Z12other_kernelv", OUR_LOOP) is None


def test_unequal_unrolled_stages_are_refused_with_the_count():
    lines = PEER_LOOP[:3] + ["HMMA.16816.F32.BF16 R8, R12, R4, R8"] + PEER_LOOP[3:]
    with pytest.raises(ValueError, match=r"steps=2: the loop's 3 HMMA"):
        _row(PEER, lines)


def test_the_configurations_are_read_from_launch_h():
    text = (sass_report.CSRC / "launch.h").read_text()
    count = int(re.search(r"kNumConfigs = (\d+);", text).group(1))
    configs = sass_report.our_configs()
    assert len(configs) == count
    assert all(set(c) == {"mb", "wm", "wn", "wk", "u", "ns", "tma", "wgmma"} for c in configs)


def test_classes_cover_the_opcodes_of_a_marlin_main_loop():
    ops = ["HMMA.16816.F32.BF16", "LOP3.LUT", "PRMT", "IMAD.SHL.U32", "IMAD", "LEA.HI.X", "ISETP.GE.AND", "LDSM.16.M88.4",
           "LDGSTS.E.BYPASS.128", "BAR.SYNC.DEFER_BLOCKING", "IMAD.MOV.U32", "S2R", "UIADD3"]
    assert "other" not in {sass_report.classify(op) for op in ops}


def test_our_loop_unrolled_over_two_slots_is_measured_a_stage_at_a_time():
    """A loop holding two stages' worth of mma (16 each for configuration 0) is two stages: HMMA to HMMA."""
    per_stage = sass_report.our_hmma_per_stage(0, sass_report.our_configs())
    stage = ["HMMA.16816.F32.BF16 R8, R12, R4, R8"] * per_stage + ["LOP3.LUT R4, R4, 0xff, RZ, 0xc0, !PT",
                                                                  "BAR.SYNC.DEFER_BLOCKING 0x0"]
    row = _row(OURS, ["MOV R1, R2", ".L_x_1:"] + stage + stage + ["@!P2 BRA `(.L_x_1)", "EXIT"])
    assert row["stage_instructions"] == per_stage + 2 and row["stage_lengths"] == [per_stage + 2]


def test_an_odd_descriptor_register_or_an_unwritten_uniform_register_is_named_and_nothing_else():
    # ptxas 13.0 emitted `bad` for gemm-loop.patch's streaming copies: an illegal instruction on the H100.
    bad = "LDGSTS.E.BYPASS.128 [R70+UR0], desc[UR1][R102.64]"
    setup = ["ULDC.64 UR10, c[0x0][0x208]", "ULDC.64 UR4, c[0x0][0x218]", "UMOV UR6, UR5"]
    fine = ["LDGSTS.E.BYPASS.128 [R17], desc[UR10][R80.64], P0", "LDG.E R7, desc[UR4][R2.64]", "MOV R1, R2",
            "IMAD R5, R2, UR11, RZ"]

    def named(lines):
        (function,) = sass_report.parse_sass(listing(OURS, [*lines, "EXIT"])).values()
        return sass_report.misencoded_uniform_operands(function)

    assert named([*setup, *fine]) == []
    assert named([*setup, *fine, bad]) == [bad]
    assert named([*setup, "LDGSTS.E.BYPASS.128 [R70], desc[UR5][R102.64]"]) == [
        "LDGSTS.E.BYPASS.128 [R70], desc[UR5][R102.64]"]                       # written (pair of UR4), but odd
    assert named([*setup[1:], fine[0]]) == [fine[0]]                              # UR10 is never written
