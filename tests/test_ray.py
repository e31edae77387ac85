"""The ray executor on a local CPU-only Ray cluster of 2 workers (started once for this file)."""

import os

import pytest

from harness.execution import ExecutionSettings, run_cells
from harness.results import ResultStore
from test_executors import run_local, tiny_cells

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ettin-harness[ray]')")

COMPARED = ("cell_key", "metrics", "train_loss", "train_steps", "n_examples", "hyperparameters", "tokens_processed",
            "status", "device")


def ray_executor(**kw):
    from harness.execution.ray import RayExecutor

    return RayExecutor(settings=("cpu", "fp32", "auto", None), **kw)


def run_ray(cells, root, executor=None, retries=2):
    return run_cells(cells, ResultStore(root), ExecutionSettings(retries=retries, quiet=True),
                     executor or ray_executor())


def test_ray_writes_the_records_a_local_run_writes(cluster, tiny_pair, demo_data, tmp_path):
    # both architectures, a grid, and RTE warm-started from the best MNLI cell of each model
    cells = tiny_cells(tiny_pair, demo_data, ("sst2", "mnli", "rte"), lrs=(1e-3, 3e-3), archs=("encoder", "decoder"))
    local = run_local(cells, tmp_path / "local")
    executor = ray_executor()
    assert executor.slots == 2 and executor.gpus_per_cell == 0
    remote = run_ray(cells, tmp_path / "ray", executor)
    assert len(remote.done) == len(local.done) == 12 and not remote.failed
    assert remote.loads <= 2 * 2  # each worker loads each model at most once, whatever the cell count

    def records(name):
        return {r["cell_key"]: r for r in ResultStore(tmp_path / name).records()}

    mine, theirs = records("local"), records("ray")
    assert set(mine) == set(theirs)
    for key in mine:
        assert {f: mine[key][f] for f in COMPARED} == {f: theirs[key][f] for f in COMPARED}, key
        assert (tmp_path / "ray" / theirs[key]["samples"]).read_text() == \
            (tmp_path / "local" / mine[key]["samples"]).read_text()
    assert sorted(p.name for p in (tmp_path / "ray" / "checkpoints").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "checkpoints").iterdir())

    again = run_ray(cells, tmp_path / "ray")  # resume: nothing left to do
    assert again.done == [] and len(again.skipped) == 12 and again.loads == 0


def test_a_lost_worker_is_retried_and_a_broken_cell_recorded_as_failed(cluster, tiny_pair, demo_data, tmp_path):
    from harness.execution.ray import run_on_worker

    cells = tiny_cells(tiny_pair, demo_data, lrs=(1e-3, 2e-3, 3e-3))
    dies_once, broken, fine = cells
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def work(job, *args):  # pickled by value and run on the workers
        cell = job.cell
        n = len([p for p in os.listdir(attempts) if p.startswith(cell.key)])
        open(os.path.join(attempts, f"{cell.key}.{n}"), "w").close()
        if cell.key == dies_once.key and n == 0:
            os._exit(1)  # the worker process dies under Ray's feet
        if cell.key == broken.key:
            raise ValueError("could not convert 'x' to a label")
        return run_on_worker(job, *args)

    summary = run_ray(cells, tmp_path / "out", ray_executor(work=work), retries=1)
    tries = {c.key: len([p for p in os.listdir(attempts) if p.startswith(c.key)]) for c in cells}
    # the lost worker can pass: retried; the bad value will recur: failed at once
    assert tries == {dies_once.key: 2, broken.key: 1, fine.key: 1}
    assert sorted(summary.done) == sorted([dies_once.key, fine.key]) and summary.failed == [broken.key]
    store = ResultStore(tmp_path / "out")
    assert store.get(broken.key)["error"] == "ValueError: could not convert 'x' to a label"
    assert [r["cell_key"] for r in store.records()] == sorted([dies_once.key, fine.key])


def test_the_cli_runs_on_ray_and_resumes_locally(cluster, tiny_pair, demo_data, tmp_path, capsys):
    from conftest import run_cli

    argv = ["run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data, "--lr", "1e-3,2e-3",
            "--epochs", "1", "--limit", "48", "--output-path", tmp_path, "--quiet"]
    assert run_cli(*argv, "--executor", "ray") == 0
    out = capsys.readouterr().out
    assert "on Ray cluster (local): 0 GPUs, 1 CPU per cell, 2 cells at a time" in out and "2 cells run" in out
    assert run_cli(*argv) == 0  # the local executor reads what the Ray run wrote
    assert "0 cells run, 2 already in the store, 0 failed; 0 model loads" in capsys.readouterr().out


def test_retrieval_cells_on_ray_equal_local_ones(cluster, tiny_pair, tmp_path):
    from harness import plan
    from harness.configs import EmbeddingConfig
    from harness.demo_data import write_retrieval
    from harness.models import ModelSpec
    from harness.retrieval.spec import load_retrieval_tasks

    data = write_retrieval(tmp_path / "data")
    spec = load_retrieval_tasks()["retrieval_demo"]
    source = plan.data_source(str(data), [spec.name], None)
    models = [ModelSpec(model_id=tiny_pair[a], architecture=a, name=a) for a in ("encoder", "decoder")]
    cells = plan.retrieval_cells(models, [spec], EmbeddingConfig(), {"lr": (3e-3,), "batch_size": (16,),
                                 "epochs": (2,)}, sources={spec.name: source})
    cells += plan.retrieval_cells(models, [spec], EmbeddingConfig(protocol="zero-shot"), sources={spec.name: source})
    local = run_local(cells, tmp_path / "local")
    remote = run_ray(cells, tmp_path / "ray")
    assert len(remote.done) == len(local.done) == 4 and not remote.failed

    def records(name):
        return {r["cell_key"]: r for r in ResultStore(tmp_path / name).records()}

    mine, theirs = records("local"), records("ray")
    for key in mine:  # the same numbers wherever a cell runs: training is seeded, scoring deterministic
        assert mine[key]["metrics"] == pytest.approx(theirs[key]["metrics"], abs=1e-6), key
        assert mine[key].get("training", {}).get("train_loss") == \
            pytest.approx(theirs[key].get("training", {}).get("train_loss"), abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "ray" / "checkpoints").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "checkpoints").iterdir())
