"""notebooks/analysis.ipynb is stored without outputs and runs top to bottom on a results folder
shaped like the demo's (tiny pair on sst2, mnli, rte, stsb, per-example outputs kept)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from test_report_frame import put

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


def demo_like_results(root: Path) -> None:
    for arch, right in (("encoder", 8), ("decoder", 6)):
        for task in ("sst2", "mnli", "rte"):
            split = "validation_matched" if task == "mnli" else "validation"
            rows = [{"split": split, "idx": i, "pred": int(i % 10 < right), "label": 1} for i in range(60)]
            put(root, arch, "tiny", task, right / 10, samples=rows, split=split)
        rows = [{"split": "validation", "idx": i, "pred": float(i % 5 + (arch == "decoder") * (i % 3)),
                 "label": float(i % 5)} for i in range(60)]
        put(root, arch, "tiny", "stsb", 0.9, samples=rows)


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def run_notebook(tmp_path: Path, monkeypatch, n_boot: int):
    """The notebook executed top to bottom on ``tmp_path/results``, writing into ``tmp_path/report``."""
    monkeypatch.setenv("ETTIN_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ETTIN_REPORT_OUT", str(tmp_path / "report"))
    monkeypatch.setenv("ETTIN_BOOTSTRAP", str(n_boot))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def trajectory_results(root: Path) -> None:
    """A pair at two checkpoints named as a local run names them: the decoder leads first, the encoder later."""
    for rev, (enc, dec) in (("checkpoint-10", (0.5, 0.7)), ("checkpoint-20", (0.8, 0.6))):
        put(root, "encoder", "17m", "sst2", enc, revision=rev)
        put(root, "decoder", "17m", "sst2", dec, revision=rev)


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    demo_like_results(tmp_path / "results")
    nb = run_notebook(tmp_path, monkeypatch, n_boot=200)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3
    assert (tmp_path / "report" / "plots" / "gap_heatmap.pdf").stat().st_size > 0
    assert (tmp_path / "report" / "significance.csv").read_text().count("\n") == 1 + 4


def test_notebook_shows_a_trajectory(tmp_path, monkeypatch):
    trajectory_results(tmp_path / "results")
    nb = run_notebook(tmp_path, monkeypatch, n_boot=0)
    last = nb.cells[-1]
    text = "".join(o.get("data", {}).get("text/plain", "") for o in last.outputs if o.output_type == "display_data")
    assert "checkpoint-10" in text and "checkpoint-20" in text
    assert any("image/png" in o.get("data", {}) for o in last.outputs)  # the curves were drawn
