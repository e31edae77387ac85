"""The published reference numbers and measured minus published."""

from __future__ import annotations

import pytest
from test_report_frame import put

from harness.report import best_scores, build_report, headline_frame, load_reference, versus_published
from harness.report.frame import GENERATIVE_TASKS
from harness.suite import suite


def test_reference_file_holds_the_paper_tables():
    ref = load_reference()
    cell = ref.set_index(["model", "task"])["value"]
    # Table 3 (GLUE and embedding columns), Table 4, Figure 1 read-offs (MNLI and generative average of
    # both architectures, then MS MARCO of four families and the cross-objective families' other panels)
    assert len(ref) == 6 * 3 + 6 * 5 + 6 * 11 + 12 + 6 * 4 + 6 * 4
    assert cell[("jhu-clsp/ettin-encoder-150m", "mnli")] == 89.2
    assert cell[("jhu-clsp/ettin-encoder-1b", "glue_avg")] == 91.6
    assert cell[("jhu-clsp/ettin-decoder-17m", "wsc273")] == 48.0
    assert cell[("jhu-clsp/ettin-decoder-400m", "mnli")] == 88.2
    assert ref["source"].str.contains("2507.11412").all()
    assert ref.loc[ref["task"] == "gen_avg", "approximate"].sum() == 6 + 12  # Figure 1: encoders, cross families
    assert cell[("jhu-clsp/ettin-encoder-150m", "ret_avg")] == 45.7  # Table 3's MTEB v2 retrieval column
    assert cell[("jhu-clsp/ettin-dec-from-enc-1b", "msmarco")] == 40.8
    assert ref.loc[ref["task"] == "msmarco", "approximate"].all() and len(ref[ref["task"] == "msmarco"]) == 24
    # Table 4's average column agrees with the mean of its ten tasks (a transcription check)
    for size in ("17m", "32m", "68m", "150m", "400m", "1b"):
        model = f"jhu-clsp/ettin-decoder-{size}"
        mean = sum(cell[(model, t)] for t in GENERATIVE_TASKS) / 10
        assert mean == pytest.approx(cell[(model, "gen_avg")], abs=0.051)


def test_measured_minus_published_uses_the_matching_cells(tmp_path):
    put(tmp_path, "encoder", "150m", "sst2", 0.950)  # Table 3: 95.8
    put(tmp_path, "decoder", "17m", "arc_challenge", 0.200)  # Table 4: 21.3
    put(tmp_path, "decoder", "150m", "mnli", 0.850)  # Figure 1 read-off: 85.6 (approximate)
    put(tmp_path, "encoder", "68m", "sst2", 0.90, revision="step599525")  # another checkpoint: not compared
    put(tmp_path, "encoder", "tiny", "sst2", 0.90)  # not an Ettin model: not compared
    put(tmp_path, "encoder", "32m", "rte", 0.70)  # no published RTE number: not compared
    for task in suite().averaged("glue"):  # all eight GLUE tasks of the 1b encoder: the average is compared too
        put(tmp_path, "encoder", "1b", task, 0.90)
    vs = versus_published(best_scores(headline_frame(tmp_path))).set_index(["model", "task"])
    assert sorted(vs.index) == sorted([
        ("jhu-clsp/ettin-encoder-150m", "sst2"), ("jhu-clsp/ettin-decoder-17m", "arc_challenge"),
        ("jhu-clsp/ettin-decoder-150m", "mnli"), ("jhu-clsp/ettin-encoder-1b", "sst2"),
        ("jhu-clsp/ettin-encoder-1b", "mnli"), ("jhu-clsp/ettin-encoder-1b", "glue_avg")])
    assert vs.at[("jhu-clsp/ettin-encoder-150m", "sst2"), "delta"] == pytest.approx(95.0 - 95.8)
    assert vs.at[("jhu-clsp/ettin-decoder-17m", "arc_challenge"), "delta"] == pytest.approx(20.0 - 21.3)
    assert vs.at[("jhu-clsp/ettin-decoder-150m", "mnli"), "approximate"]
    assert vs.at[("jhu-clsp/ettin-encoder-1b", "glue_avg"), "delta"] == pytest.approx(90.0 - 91.6)
    assert vs.at[("jhu-clsp/ettin-encoder-1b", "mnli"), "published"] == 91.8
    text = build_report([tmp_path], n_boot=0).text()
    assert "Measured minus published" in text and "-0.8" in text and "-0.6~" in text
    assert set(vs["protocol"]) == {"paper"}


def test_runs_off_the_paper_protocol_carry_their_label_next_to_published_numbers(tmp_path):
    put(tmp_path, "encoder", "150m", "sst2", 0.950, limit=100, grid="small")
    vs = versus_published(best_scores(headline_frame(tmp_path)))
    assert list(vs["protocol"]) == ["small grid, limit 100"]
