"""Every plot writes a non-empty PNG (and a PDF) for complete and for partial results, and shows
what it must: encoder and decoder apart, equal heights per task family, labelled foreign models,
non-significant gaps marked, and inline SVG fit for one HTML page."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report_frame import put, suite

from harness.report import (
    best_scores,
    comparison_table,
    headline_frame,
    load_reference,
    plot_figure1,
    plot_gap_heatmap,
    plot_scaling,
)
from harness.report.frame import GENERATIVE_TASKS
from harness.report.plots import (
    COLORS,
    GAP_CMAP,
    MARKERS,
    gap_heatmap_figure,
    human,
    scaling_figure,
    svg_text,
)
from harness.report.tables import DAGGER
from harness.results import ResultStore

SIZES = ("17m", "32m", "68m", "150m", "400m", "1b")
CASES = {
    "complete": dict(sizes=SIZES, archs=("encoder", "decoder"), tasks=("mnli", "sst2") + GENERATIVE_TASKS),
    "missing_sizes": dict(sizes=("17m", "400m"), archs=("encoder", "decoder"), tasks=("mnli", "sst2")),
    "encoder_only": dict(sizes=("32m", "150m"), archs=("encoder",), tasks=("mnli", "piqa")),
    "one_cell": dict(sizes=("17m",), archs=("decoder",), tasks=("sst2",)),
}


@pytest.fixture(scope="module", params=list(CASES))
def best(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    suite(root, base=0.3, **CASES[request.param])
    return best_scores(headline_frame(root))


def assert_png_and_pdf(paths):
    png, pdf = paths
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(pdf, "rb") as f:
        assert f.read(5) == b"%PDF-"
    with open(png, "rb") as f:
        assert len(f.read()) > 5000


def test_scaling_plot(best, tmp_path):
    assert_png_and_pdf(plot_scaling(best, tmp_path / "scaling"))


def test_figure1_plot(best, tmp_path):
    assert_png_and_pdf(plot_figure1(best, tmp_path / "figure1", load_reference()))


def test_gap_heatmap(best, tmp_path):
    assert_png_and_pdf(plot_gap_heatmap(comparison_table(best), tmp_path / "gap"))


def test_one_colour_per_architecture_and_readable_size_ticks():
    assert COLORS["encoder"] != COLORS["decoder"]
    assert GAP_CMAP(1.0)[:3] == pytest.approx(tuple(int(COLORS["encoder"][i:i + 2], 16) / 255 for i in (1, 3, 5)))
    assert GAP_CMAP(0.0)[:3] == pytest.approx(tuple(int(COLORS["decoder"][i:i + 2], 16) / 255 for i in (1, 3, 5)))
    assert [human(n) for n in (16_800_000, 149_000_000, 1_030_000_000, 139_843)] == ["17M", "150M", "1B", "140k"]


# --- what the figures must show (markers, offsets, shared heights, labels, significance) ----------------

def _best_of(root):
    return best_scores(headline_frame(root))


def _data_lines(ax):
    """(label, x, y, marker) of the drawn data lines of an axis (error bar caps left out)."""
    return [(c.get_label(), list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()), c.lines[0].get_marker())
            for c in ax.containers]


def test_encoder_and_decoder_of_one_size_stay_apart(tmp_path):
    for size in ("17m", "150m"):  # equal scores: the two marks would coincide without the offset
        for arch in ("encoder", "decoder"):
            put(tmp_path, arch, size, "sst2", 0.9)
    fig = scaling_figure(_best_of(tmp_path))
    lines = {label: (x, y, marker) for label, x, y, marker in _data_lines(fig.axes[0])}
    (ex, ey, em), (dx, dy, dm) = lines["encoder"], lines["decoder"]
    assert ey == dy and em != dm and {em, dm} == {MARKERS["encoder"], MARKERS["decoder"]}
    assert all(e < d for e, d in zip(ex, dx))  # encoder left of decoder
    assert all(0.9 < d / e < 1.15 for e, d in zip(ex, dx))  # but still at its size


def test_panels_of_one_family_share_the_height_of_their_y_range(tmp_path):
    for size, spread in (("17m", 0.0), ("150m", 1.0)):
        for arch, shift in (("encoder", 0.0), ("decoder", 0.01)):
            put(tmp_path, arch, size, "sst2", 0.60 + 0.30 * spread + shift)  # 30 points apart
            put(tmp_path, arch, size, "mnli", 0.80 + 0.02 * spread + shift)  # 2 points apart
            put(tmp_path, arch, size, "piqa", 0.60 + 0.05 * spread + shift)
            put(tmp_path, arch, size, "sciq", 0.70 + 0.01 * spread + shift)
            put(tmp_path, arch, size, "qnli", 0.97 + 0.01 * spread + shift)  # near the top of the scale
    fig = scaling_figure(_best_of(tmp_path))
    height = {ax.get_title(): ax.get_ylim()[1] - ax.get_ylim()[0] for ax in fig.axes if ax.get_visible()}
    assert height["SST-2"] == pytest.approx(height["MNLI"]) and height["SST-2"] > 31
    assert height["PIQA"] == pytest.approx(height["SciQ"]) and height["PIQA"] < height["SST-2"] / 3
    mnli = next(ax for ax in fig.axes if ax.get_title() == "MNLI")
    lo, hi = mnli.get_ylim()
    assert lo < 80 and hi > 83  # the panel is centred on its own data
    qnli = next(ax for ax in fig.axes if ax.get_title() == "QNLI")
    assert qnli.get_ylim()[1] == pytest.approx(100.5) and qnli.get_ylim()[0] < 97  # moved down, not past 100


def test_points_of_unrelated_models_sharing_an_axis_are_labelled(tmp_path):
    for size in ("17m", "150m"):
        put(tmp_path, "encoder", size, "sst2", 0.9)
    assert not [t for t in scaling_figure(_best_of(tmp_path)).axes[0].texts if t.get_text()]
    other = put(tmp_path, "encoder", "17m", "sst2", 0.85, lr=3e-5)
    ResultStore(tmp_path).write({**other, "cell_key": "minilm", "config_key": "minilm", "model": "local/minilm",
                                 "model_name": "all-MiniLM-L6-v2", "family": None, "variant": None, "size": None,
                                 "parameters": 22_700_000})
    labels = [t.get_text() for t in scaling_figure(_best_of(tmp_path)).axes[0].texts]
    assert labels == ["all-MiniLM-L6-v2"]  # the foreign model's point, not every Ettin point


def test_heatmap_marks_gaps_that_are_not_significant():
    table = pd.DataFrame({("sst2", "encoder"): [90.0, 92.0], ("sst2", "decoder"): [89.5, 85.0],
                          ("sst2", "gap"): [0.5, 7.0]}, index=["17m", "150m"])
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    sig = pd.DataFrame({"row": ["17m", "150m"], "task": ["sst2", "sst2"], "p_value": [0.4, 0.001],
                        "significant": [False, True]})
    ax = gap_heatmap_figure(table, sig).axes[0]
    cells = {t.get_text() for t in ax.texts}
    assert "+0.5" + DAGGER in cells and "+7.0" in cells
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_xy() == (-0.5, -0.5)  # the 17m cell only
    assert not [p for p in gap_heatmap_figure(table).axes[0].patches if p.get_hatch()]  # no test, no mark


def test_inline_svg_is_text_with_ids_of_its_own(best):
    a = svg_text(gap_heatmap_figure(comparison_table(best)), "one")
    b = svg_text(gap_heatmap_figure(comparison_table(best)), "two")
    assert a.startswith("<svg") and "<metadata>" not in a and "<text" in a
    ids_a = set(re.findall(r'id="([^"]+)"', a))
    assert ids_a and all(i.startswith("one-") for i in ids_a)
    assert not ids_a & set(re.findall(r'id="([^"]+)"', b))
    refs = re.findall(r'(?:href="#|url\(#)([^")]+)', a)
    assert all(r in ids_a for r in refs)
