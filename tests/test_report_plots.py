"""Every plot writes a non-empty PNG (and a PDF) for complete and for partial results."""

from __future__ import annotations

import pytest
from test_report_frame import suite

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
from harness.report.plots import COLORS, GAP_CMAP, human

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
