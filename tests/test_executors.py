"""The schedule's fault handling on the local executor: the retry policy, failed cells, unreadable
records, claims, warm starts and resume."""

import sys
import threading

import pytest
import torch

from conftest import run_cli
from harness import plan, tasks
from harness.adapters.base import CellResult
from harness.execution import ExecutionSettings, Summary, run_cells
from harness.execution.local import LocalExecutor
from harness.models import ModelSpec
from harness.records import build_record
from harness.results import ResultStore
from harness.runner import Runner


def tiny_cells(tiny_pair, demo_data, task_names=("sst2",), lrs=(1e-3,), archs=("encoder",)):
    specs = tasks.select(list(task_names), tasks.load_tasks())
    models = [ModelSpec(model_id=tiny_pair[a], architecture=a, name=a) for a in archs]
    return plan.classification_cells(models, specs, "small", {"lr": lrs, "epochs": (1,)}, seeds=1, limit=48,
                                     data_dir=demo_data)


def run_local(cells, root, runner=None, retries=2) -> Summary:
    runner = runner or Runner("cpu", "fp32")
    return run_cells(cells, ResultStore(root), ExecutionSettings(retries=retries, quiet=True), LocalExecutor(runner))


def counting(monkeypatch, fail=lambda cell, attempt: None):
    """Wrap every adapter: count runs per cell, raise the exception ``fail`` returns."""
    from harness.execution import work

    calls: dict[str, int] = {}
    real = work.adapter_for

    def adapter_for(name):
        run = real(name)

        def counted(cell, *a, **k):
            calls[cell.key] = calls.get(cell.key, 0) + 1
            error = fail(cell, calls[cell.key])
            if error is not None:
                raise error
            return run(cell, *a, **k)

        return counted

    monkeypatch.setattr(work, "adapter_for", adapter_for)
    return calls


def test_faults_that_can_pass_are_retried_errors_that_recur_are_not(tiny_pair, demo_data, tmp_path, monkeypatch):
    flaky, broken, fine = tiny_cells(tiny_pair, demo_data, lrs=(1e-3, 2e-3, 3e-3))

    def fail(cell, n):
        if cell.key == flaky.key and n == 1:
            return torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")  # can pass: retried
        if cell.key == broken.key:
            return ValueError("bad row in sst2")  # will recur: failed at once
        return None

    calls = counting(monkeypatch, fail)
    runner = Runner("cpu", "fp32")
    summary = run_local([flaky, broken, fine], tmp_path, runner, retries=2)
    assert calls == {flaky.key: 2, broken.key: 1, fine.key: 1}
    assert sorted(summary.done) == sorted([flaky.key, fine.key]) and summary.failed == [broken.key]
    assert runner.loads == summary.loads == 1  # retries reuse the loaded model
    record = ResultStore(tmp_path).get(broken.key)
    assert record["status"] == "failed" and record["error"] == "ValueError: bad row in sst2"

    calls.clear()  # the next run runs only the failed cell
    summary = run_local([flaky, broken, fine], tmp_path, runner, retries=0)
    assert calls == {broken.key: 1} and len(summary.skipped) == 2 and summary.failed == [broken.key]


def test_a_metric_that_is_not_a_number_makes_a_failed_cell_rerun_next_time(tiny_pair, demo_data, tmp_path,
                                                                             monkeypatch):
    from harness.adapters import classification

    (cell,) = tiny_cells(tiny_pair, demo_data)
    real = classification.evaluate

    def nan_scores(*a, **k):
        scores, samples, n = real(*a, **k)
        return {**scores, "accuracy": float("nan")}, samples, n

    monkeypatch.setattr(classification, "evaluate", nan_scores)
    summary = run_local([cell], tmp_path)
    record = ResultStore(tmp_path).get(cell.key)
    assert summary.failed == [cell.key] and record["status"] == "failed" and "accuracy" in record["error"]
    assert record["metrics"] == {}
    monkeypatch.setattr(classification, "evaluate", real)
    assert run_local([cell], tmp_path).done == [cell.key]


def test_failed_cells_exit_1_and_show_as_missing_in_the_report(tiny_pair, demo_data, tmp_path, monkeypatch, capsys):
    calls = counting(monkeypatch, lambda cell, n: RuntimeError("worker lost") if cell.model.architecture == "decoder"
                     else None)
    code = run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--tasks", "sst2",
                   "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "1", "--limit", "48", "--retries", "1",
                   "--output-path", tmp_path, "--quiet")
    out = capsys.readouterr().out
    assert code == 1 and sorted(calls.values()) == [1, 1]
    assert "1 cells run, 0 already in the store, 1 failed" in out and "1 cells failed" in out
    assert "RuntimeError: worker lost" in out

    from harness.report import build_report

    table = build_report([tmp_path], n_boot=0).table
    assert table[("sst2", "decoder")].isna().all() and table[("sst2", "encoder")].notna().any()


def test_an_unreadable_record_is_reported_never_overwritten(tiny_pair, demo_data, tmp_path, capsys):
    cells = tiny_cells(tiny_pair, demo_data, lrs=(1e-3, 2e-3))
    truncated = tmp_path / "records" / f"{cells[0].key}.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text('{"cell_key": "x", "metr')
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data,
                   "--lr", "1e-3,2e-3", "--epochs", "1", "--limit", "48", "--output-path", tmp_path, "--quiet")
    first = capsys.readouterr()
    assert code == 1 and "1 cells run, 0 already in the store, 0 failed, 1 blocked" in first.out
    assert truncated.read_text() == '{"cell_key": "x", "metr'
    assert run_cli("report", tmp_path, "--bootstrap", "0") == 0
    second = capsys.readouterr()
    assert "SST-2" in second.out
    notices = [line for line in (first.err + second.err).splitlines() if str(truncated) in line]
    assert len(notices) == 1 and notices[0].startswith("ettin-eval: skipping unreadable record")


def test_a_cell_another_run_holds_is_waited_for_not_recomputed(tiny_pair, demo_data, tmp_path, monkeypatch):
    held, free = tiny_cells(tiny_pair, demo_data, lrs=(1e-3, 2e-3))
    store = ResultStore(tmp_path)
    claim = store.claim(held.key)  # "another run" is computing this cell

    def other_run_finishes():
        result = CellResult(metrics={"accuracy": 0.5}, headline_metric="accuracy", split="validation", n_examples=48)
        store.write(build_record(held, result, 1.0, "cpu", None))
        store.release(claim)

    timer = threading.Timer(1.0, other_run_finishes)
    timer.start()
    calls = counting(monkeypatch)
    summary = run_local([held, free], tmp_path)
    timer.join()
    assert calls == {free.key: 1} and summary.skipped == [held.key] and summary.done == [free.key]


def test_summary_line():
    s = Summary(done=["a"], skipped=["b", "c"], failed=["d"], blocked=["e"])
    assert s.line() == "1 cells run, 2 already in the store, 1 failed, 1 blocked by unreadable record files"


BAD_FLAGS = [
    (["--executor", "slurm"], "unknown --executor 'slurm'; use local"),
    (["--retries", "-1"], "--retries must be 0 or more"),
    (["--address", "auto"], "--address only apply to --executor ray"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at --address 127.0.0.1:1"),
    (["--executor", "ray", "--gpus-per-cell", "-1"], "--gpus-per-cell must be 0 (CPU) or more"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS)
def test_bad_execution_flags_are_one_line_and_exit_code_2(flags, message, tiny_pair, demo_data, tmp_path, capsys):
    if "ray" in flags:
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'ettin-harness[ray]')")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data,
                   "--output-path", tmp_path, "--quiet", *flags)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "records").exists()


def test_ray_executor_without_ray_installed(tiny_pair, demo_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data,
                   "--output-path", tmp_path, "--executor", "ray", "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'ettin-harness[ray]'" in err and len(err.strip().splitlines()) == 1


def test_resume_of_warm_started_cells(tiny_pair, demo_data, tmp_path, monkeypatch):
    cells = tiny_cells(tiny_pair, demo_data, ("mnli", "rte"), lrs=(1e-3, 3e-3), archs=("encoder", "decoder"))
    store = ResultStore(tmp_path)
    first = run_local(cells, tmp_path)
    assert len(first.done) == 8
    rte = {r["model_name"]: r for r in store.records() if r["task"] == "rte"}
    kept = sorted(p.stem for p in (tmp_path / "checkpoints").iterdir())
    assert kept == sorted({r["hyperparameters"]["init_from"] for r in rte.values()}) and len(kept) == 2

    # the decoder's RTE records are lost: only they run again, from the kept MNLI checkpoint
    for r in store.records():
        if r["task"] == "rte" and r["architecture"] == "decoder":
            store.record_path(r["cell_key"]).unlink()
    calls = counting(monkeypatch)
    summary = run_local(cells, tmp_path)
    assert len(calls) == 2 and len(summary.skipped) == 6 and summary.loads == 1

    # the encoder's MNLI checkpoint is deleted by hand: that MNLI cell is fine-tuned again for its
    # weights (same seed, same record), then the encoder's RTE cells that were lost run from it
    encoder_best = rte["encoder"]["hyperparameters"]["init_from"]
    (tmp_path / "checkpoints" / f"{encoder_best}.safetensors").unlink()
    for r in store.records():
        if r["task"] == "rte" and r["architecture"] == "encoder":
            store.record_path(r["cell_key"]).unlink()
    before = store.get(encoder_best)
    calls.clear()
    run_local(cells, tmp_path)
    assert list(calls)[0] == encoder_best and len(calls) == 3
    assert store.get(encoder_best) == before  # its finished record is kept, only the checkpoint written
    assert sorted(p.stem for p in (tmp_path / "checkpoints").iterdir()) == kept


def test_help_lists_the_execution_flags(capsys):
    with pytest.raises(SystemExit):
        run_cli("run", "--help")
    out = capsys.readouterr().out
    for flag in ("--executor", "--address", "--gpus-per-cell", "--retries", "--shared-dir"):
        assert flag in out


def test_a_checkpoint_write_that_breaks_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    import os

    import safetensors.torch

    from harness.execution.warm_start import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoints" / "cell.safetensors"
    save_checkpoint({"w": torch.ones(2)}, path)

    def breaks(state, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", breaks)
    with pytest.raises(OSError):
        save_checkpoint({"w": torch.zeros(2)}, path)
    assert os.listdir(path.parent) == [path.name] and torch.equal(load_checkpoint(path)["w"], torch.ones(2))


@pytest.mark.parametrize("where", ["loss", "logits"])
def test_a_diverged_fine_tune_is_a_failed_cell_not_a_number(where, tiny_pair, demo_data, tmp_path, monkeypatch):
    from harness.adapters import classification

    (cell,) = tiny_cells(tiny_pair, demo_data)
    if where == "loss":  # the weights blow up during training
        real = Runner.forward_logits
        monkeypatch.setattr(Runner, "forward_logits", staticmethod(lambda m, b: real(m, b) * float("inf")))
    else:  # training ends, but the model's outputs are not numbers
        real = classification.finetune.predict
        monkeypatch.setattr(classification.finetune, "predict", lambda *a: real(*a) * float("nan"))
    summary = run_local([cell], tmp_path)
    assert summary.failed == [cell.key] and ResultStore(tmp_path).records() == []
    assert "FloatingPointError" in summary.errors[cell.key] and "\n" not in summary.errors[cell.key]
