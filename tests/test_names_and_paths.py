"""Names and paths from users stay inside the results folder: unsafe task names are refused at the
edge, a record's samples path is resolved under samples/, LaTeX and plot labels show names as text."""

import os

import pytest
from test_report_frame import put

from conftest import run_cli
from harness.report.drilldown import examples_of
from harness.report.tables import long_latex
from harness.results import ResultStore

YAML = ("adapter: classification\ntask: '{name}'\ndataset_path: x\ntrain_split: train\neval_splits: [validation]\n"
        "text_fields: [sentence]\nlabel_type: classification\nmetrics: [accuracy]\n")


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden"])
def test_an_unsafe_task_name_is_refused_in_one_line(name, tiny_pair, tmp_path, capsys):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mine.yaml").write_text(YAML.format(name=name))
    out = tmp_path / "deep" / "er" / "out"
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", name, "--include-path", specs,
                   "--output-path", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "task name" in err[0] and "not allowed" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs"]


def test_a_samples_path_outside_samples_is_not_read(tmp_path, capsys):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"idx": 0, "pred": 1, "label": 1, "input": "private"}\n')
    root = tmp_path / "res"
    record = put(root, "encoder", "17m", "sst2", 0.5, samples=[{"split": "validation", "idx": 0, "pred": 1, "label": 1}])
    store = ResultStore(root)
    record = {**store.get(record["cell_key"]), "samples": os.path.join("..", "secret.jsonl")}
    assert store.read_samples(record) == []
    assert examples_of({**record, "results_dir": str(root)}) is None
    assert "not under" in capsys.readouterr().err


def test_latex_escapes_every_special_character():
    import re

    import pandas as pd

    tex = long_latex(pd.DataFrame({"model": ["a^^5cb $x$ ~{y} 50% #1 & c_d \\"]}))
    (body,) = [line for line in tex.splitlines() if line.startswith("a")]
    assert body == (r"a\textasciicircum{}\textasciicircum{}5cb \$x\$ \textasciitilde{}\{y\} 50\% \#1 \& c\_d "
                    r"\textbackslash{} \\")
    assert not re.search(r"(?<!\\)[$~^&%#_]", body.replace(r"\textasciicircum{}", "").replace(r"\textasciitilde{}", ""))


def test_a_dollar_in_a_name_is_drawn_as_text(tmp_path):
    from dataclasses import replace

    import test_report_frame

    from harness.report import build_report, write_report

    real = test_report_frame.model_spec

    def odd(variant, size, revision=None):
        spec = real(variant, size, revision)
        return replace(spec, name=f"my$model_{variant}", pair="p$\\alpha_$", family="mine")

    test_report_frame.model_spec = odd
    try:
        for arch in ("encoder", "decoder"):
            put(tmp_path, arch, "17m", "sst2", 0.7)
    finally:
        test_report_frame.model_spec = real
    paths = write_report([tmp_path], tmp_path / "out", report=build_report([tmp_path], n_boot=0))
    assert "index.html" in paths and "p$\\alpha_$" in (tmp_path / "out" / "comparison.md").read_text()
