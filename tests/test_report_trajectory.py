"""The report's trajectory: a pair's checkpoints in training order against tokens seen, the gap's
sign change with its uncertainty, trajectory.csv, the pictures and the page section (browser)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from browser import Page, chromium, require_or_skip
from test_report_frame import put
from test_report_html import sst2_rows

from harness.report import build_report, write_report
from harness.report.trajectory import crossings, trajectory_frame
from harness.revisions import ettin_tokens

N = 200
# SST-2 accuracy of the 17m pair at three pretraining tags: the decoder leads early, the encoder later
POINTS = {"step100000": (0.55, 0.75), "step300000": (0.72, 0.68), "step599525": (0.90, 0.60)}


def wrong(acc: float, shift: int) -> set:
    return {(i + shift) % N for i in range(round(N * (1 - acc)))}


def trajectory_folder(root) -> None:
    for rev, (enc, dec) in POINTS.items():
        put(root, "encoder", "17m", "sst2", enc, revision=rev, samples=sst2_rows(N, wrong(enc, 0), with_inputs=False))
        put(root, "decoder", "17m", "sst2", dec, revision=rev, samples=sst2_rows(N, wrong(dec, 100), with_inputs=False))
        put(root, "encoder", "17m", "mnli", enc - 0.1, revision=rev, split="validation_matched")
        put(root, "decoder", "17m", "mnli", dec - 0.2, revision=rev, split="validation_matched")
    put(root, "encoder", "150m", "sst2", 0.91)  # a single checkpoint: no trajectory
    put(root, "decoder", "150m", "sst2", 0.88)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("trajectory")
    trajectory_folder(root)
    report = build_report([root], n_boot=300)
    return report, write_report([root], root / "report", report=report)


def test_checkpoints_line_up_on_tokens_seen_in_training_order(written):
    report, _ = written
    traj = trajectory_frame(report)
    assert set(traj["pair"]) == {"17m"}  # the 150m row has one checkpoint: no trajectory
    enc = traj[(traj["task"] == "sst2") & (traj["architecture"] == "encoder")]
    assert list(enc["revision"]) == list(POINTS) and list(enc["order"]) == [0, 1, 2]
    assert list(enc["tokens_seen"]) == [ettin_tokens("17m", r) for r in POINTS]
    assert set(enc["tokens_source"]) == {"Ettin configs: step x 2.836M tokens"}
    assert list(enc["score"]) == pytest.approx([100 * e for e, _ in POINTS.values()])
    assert (enc["lo"] < enc["score"]).all() and (enc["score"] < enc["hi"]).all()
    assert list(enc["gap"]) == pytest.approx([100 * (e - d) for e, d in POINTS.values()])
    assert "GLUE avg" not in set(traj["task"])  # two of the eight GLUE tasks: no average


def test_the_glue_average_has_a_curve_once_every_task_is_there(tmp_path):
    from harness.report.frame import GLUE_TASKS

    for k, rev in enumerate(("step1000", "step2000")):
        for j, task in enumerate(GLUE_TASKS):
            split = "validation_matched" if task == "mnli" else "validation"
            put(tmp_path, "encoder", "17m", task, 0.5 + 0.15 * k + 0.01 * j, revision=rev, split=split)
            put(tmp_path, "decoder", "17m", task, 0.6 + 0.01 * j, revision=rev, split=split)
    traj = trajectory_frame(build_report([tmp_path], n_boot=0))
    avg = traj[traj["task"] == "GLUE avg"].sort_values(["architecture", "order"])
    from harness.suite import suite

    averaged = suite().averaged("glue")  # the paper's GLUE average leaves WNLI out
    mean_j = sum(GLUE_TASKS.index(t) for t in averaged) / len(averaged)
    assert list(avg["score"]) == pytest.approx([100 * (0.6 + 0.01 * mean_j)] * 2 +
                                               [100 * (0.5 + 0.01 * mean_j), 100 * (0.65 + 0.01 * mean_j)])
    assert crossings(traj).query("task == 'GLUE avg'").iloc[0]["before"] == "step1000"


def test_the_sign_change_is_placed_between_its_checkpoints_with_its_uncertainty(written):
    report, _ = written
    cross = crossings(trajectory_frame(report))
    sst2 = cross[cross["task"] == "sst2"].iloc[0]
    assert (sst2["before"], sst2["after"]) == ("step100000", "step300000")
    a, b = (math.log10(ettin_tokens("17m", r)) for r in ("step100000", "step300000"))
    ga, gb = -20.0, 4.0  # the paired differences equal the accuracy gaps
    assert sst2["x"] == pytest.approx(a + ga / (ga - gb) * (b - a))
    assert sst2["tokens_seen"] == pytest.approx(10 ** sst2["x"])
    assert (sst2["from_leader"], sst2["to_leader"]) == ("decoder", "encoder")
    # +4 points on 200 examples is not significant: the band runs to the next checkpoint whose gap is
    sig = report.significance.set_index(["row", "task"])
    assert not sig.at[("17m@step300000", "sst2"), "significant"]
    assert sig.at[("17m@step599525", "sst2"), "significant"]
    c = math.log10(ettin_tokens("17m", "step599525"))
    assert (sst2["band_from"], sst2["band_to"]) == pytest.approx((a, c))
    assert bool(sst2["certain"])
    # MNLI (no per-example outputs): crossing between the same checkpoints, band = those checkpoints
    mnli = cross[cross["task"] == "mnli"].iloc[0]
    assert (mnli["band_from"], mnli["band_to"]) == pytest.approx((a, b)) and not bool(mnli["certain"])


def test_unknown_tokens_fall_back_to_training_order(tmp_path):
    for rev, (enc, dec) in (("my-first", (0.5, 0.6)), ("my-second", (0.7, 0.6))):
        put(tmp_path, "encoder", "17m", "sst2", enc, revision=rev)
        put(tmp_path, "decoder", "17m", "sst2", dec, revision=rev)
    traj = trajectory_frame(build_report([tmp_path], n_boot=0))
    assert traj["tokens_seen"].isna().all()
    cross = crossings(traj)
    assert cross.iloc[0]["x"] == pytest.approx(0.5) and pd.isna(cross.iloc[0]["tokens_seen"])


def test_report_folder_has_the_table_and_pictures(written):
    _, paths = written
    table = pd.read_csv(paths["trajectory.csv"])
    assert len(table) == 3 * 2 * 2  # checkpoints x architectures x (SST-2, MNLI)
    first = table[(table["task"] == "sst2") & (table["architecture"] == "encoder")]
    assert list(first["revision"]) == list(POINTS) and first["tokens_seen"].is_monotonic_increasing
    assert {"plots/trajectory_17m.png", "plots/trajectory_17m.pdf", "plots/trajectory_gap_17m.png"} <= set(paths)


def test_page_section_shows_curves_crossings_and_links_the_last_checkpoint(written):
    _, paths = written
    require_or_skip()
    with chromium() as context:
        page = Page(context, paths["index.html"])
        section = page.page.locator("section.trajectory").first
        assert section.is_visible()
        rows = [r.strip() for r in section.locator("table.crossings tbody tr").all_inner_texts()]
        sst2 = [r for r in rows if r.startswith("SST-2")]
        assert len(rows) == 2 and sst2[0].startswith("SST-2\tstep100000 and step300000")
        assert "decoder ahead, then encoder" in sst2[0] and sst2[0].endswith("yes")
        svg = section.locator("figure[id$='-curves'] svg")
        assert svg.locator("[id*='-band-encoder']").count() >= 1 and svg.locator("[id*='-crossing']").count() >= 2
        link = section.locator("a.final-link")
        assert link.inner_text() == "17m@step599525"
        link.click()
        target = page.page.locator(link.get_attribute("href"))
        assert target.inner_text().startswith("17m@step599525") and target.is_visible()
        assert page.errors == [] and page.requests == [page.url]
        page.close()


def test_comparison_rows_of_a_trajectory_come_in_training_order(tmp_path):
    for rev in ("checkpoint-100", "checkpoint-25", "checkpoint-1000"):
        put(tmp_path, "encoder", "17m", "sst2", 0.6, revision=rev)
        put(tmp_path, "decoder", "17m", "sst2", 0.5, revision=rev)
    put(tmp_path, "encoder", "17m", "sst2", 0.7)
    table = build_report([tmp_path], n_boot=0).table
    assert list(table.index) == ["17m", "17m@checkpoint-25", "17m@checkpoint-100", "17m@checkpoint-1000"]


def test_two_protocols_are_two_trajectories_never_one_curve(tmp_path):
    for rev, (a, b) in (("step1000", (0.5, 0.9)), ("step2000", (0.6, 0.95))):
        put(tmp_path, "encoder", "17m", "sst2", a, revision=rev, limit=64)
        put(tmp_path, "decoder", "17m", "sst2", a, revision=rev, limit=64)
        put(tmp_path, "encoder", "17m", "sst2", b, revision=rev)
        put(tmp_path, "decoder", "17m", "sst2", b, revision=rev)
    traj = trajectory_frame(build_report([tmp_path], n_boot=0))
    assert traj["pair"].nunique() == 2
    for _, part in traj.groupby("pair"):
        assert len(part) == 4 and part.groupby(["revision", "architecture"]).size().max() == 1
    assert sorted(traj.groupby("pair")["score"].max()) == pytest.approx([60.0, 95.0])
