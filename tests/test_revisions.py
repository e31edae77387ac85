"""--revisions: a model's checkpoints as one axis of the plan, in training order."""

import glob
import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from harness.errors import UserError
from harness.revisions import in_training_order, phase_of, select, tokens_seen


def test_revisions_sort_in_training_order_across_phases():
    mixed = ["decay100", "step200", "ext1000", "step10", "my-snapshot", "decay50", "ext20", "step9"]
    assert in_training_order(mixed) == ["step9", "step10", "step200", "ext20", "ext1000", "decay50", "decay100",
                                        "my-snapshot"]
    assert [phase_of(r) for r in ("step9", "ext20", "decay50", "checkpoint-500", "my-snapshot")] == \
        ["pretraining", "extension", "decay", "training", None]


def test_names_globs_all_and_every():
    revs = [f"step{i * 100}" for i in range(1, 11)] + ["ext10", "ext20", "decay5", "decay10"]
    assert select("decay*", revs) == ["decay5", "decay10"]
    assert select("step300,decay10,step100", revs) == ["step100", "step300", "decay10"]
    assert select("all", revs) == in_training_order(revs)
    assert select("every:5", revs) == ["step100", "step600", "ext10", "decay10"]  # the last one always kept
    assert select("step*,every:4", revs) == ["step100", "step500", "step900", "step1000"]
    with pytest.raises(UserError, match="'step7' names no revision"):
        select("step7", revs)
    with pytest.raises(UserError, match="K must be a whole number"):
        select("every:0", revs)


@pytest.fixture()
def run_folder(tiny_pair, tmp_path):
    """A local training run: the tiny encoder saved as three checkpoints, with the tokens each had seen."""
    run = tmp_path / "run"
    for rev, tokens in (("step200", 2000), ("step100", 1000), ("decay10", 3000)):
        shutil.copytree(tiny_pair["encoder"], run / rev)
        (run / rev / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": tokens}))
    return run


def test_a_trajectory_runs_resumes_and_records_its_place(run_folder, demo_data, tmp_path, capsys):
    assert tokens_seen(str(run_folder / "step100"), "step100") == 1000
    out = tmp_path / "out"
    base = ["run", "--model", run_folder, "--tasks", "sst2", "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "1",
            "--limit", "32", "--max-length", "64", "--output-path", out, "--quiet"]
    assert run_cli(*base, "--revisions", "step100") == 0
    capsys.readouterr()
    assert run_cli(*base, "--revisions", "all") == 0  # resumes: only the two new checkpoints run
    assert "2 cells run, 1 already in the store" in capsys.readouterr().out
    records = sorted((json.loads(Path(p).read_text()) for p in glob.glob(f"{out}/records/*.json")),
                     key=lambda r: r["trajectory"]["tokens_seen"])
    assert [r["revision"] for r in records] == ["step100", "step200", "decay10"]
    assert [r["trajectory"]["phase"] for r in records] == ["pretraining", "pretraining", "decay"]
    assert len({r["model_name"] for r in records}) == 1 and len({r["cell_key"] for r in records}) == 3


def test_the_bill_prices_every_revision(run_folder, demo_data, capsys):
    assert run_cli("plan", "--model", run_folder, "--revisions", "step*", "--tasks", "sst2",
                   "--data-dir", demo_data, "--limit", "32") == 0
    out = capsys.readouterr().out
    assert "run@step100" in out and "run@step200" in out and "run@decay10" not in out  # a line per revision
    assert run_cli("plan", "--model", run_folder, "--revisions", "step*", "--revision", "step100", "--tasks", "sst2",
                   "--data-dir", demo_data) == 2
