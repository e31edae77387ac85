"""--search asha (harness/search) on tiny models and a local Ray instance: rungs, stopping, the
records and their ``search`` fields, the report's labels, equality with grid cells, resume."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from harness import plan, tasks
from harness.models import ModelSpec
from harness.records import protocol_label
from harness.results import ResultStore
from harness.search import AshaSettings, asha_cells

os.environ.setdefault("RAY_worker_niceness", "0")  # as harness/search/driver.py starts its own Ray instance
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ettin-harness[ray]')")
pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install 'ettin-harness[ray]')")

LRS = "1e-4,1e-3,3e-3,1e-2"
EPOCHS = "1,2"


def asha_argv(tiny_pair, demo_data, out, *extra):
    return ["run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data, "--lr", LRS,
            "--epochs", EPOCHS, "--batch-size", "16", "--limit", "48", "--seeds", "2", "--search", "asha",
            "--output-path", out, "--quiet", *extra]


@pytest.fixture(scope="module")
def first_run(cluster, tiny_pair, demo_data, tmp_path_factory):
    """One local ASHA run (one trial at a time) of 8 configurations x 2 seeds, shared by the tests below."""
    out = tmp_path_factory.mktemp("asha")
    code = run_cli(*asha_argv(tiny_pair, demo_data, out))
    return code, out, {r["cell_key"]: r for r in ResultStore(out).records()}


def test_rungs_are_fractions_of_each_configurations_own_steps():
    asha = AshaSettings()  # R = 4, 3 rungs
    assert asha.fractions == [1 / 16, 1 / 4, 1] and asha.units == [1, 4, 16] and asha.max_t == 16
    assert asha.rung_steps(64) == {4: [1], 16: [4]}  # a 4-epoch run of 16 steps an epoch: inside epoch 1
    assert asha.rung_steps(4) == {1: [1, 4]}  # a short schedule: both rungs after its first step
    assert AshaSettings(3, 3).rung_steps(90) == {10: [1], 30: [3]}
    with pytest.raises(Exception, match="--asha-rungs must be at least 2"):
        AshaSettings(4, 1)


def test_one_experiment_per_model_and_task_one_trial_per_configuration_with_all_its_seeds(tiny_pair, demo_data):
    from harness.search.space import experiments, trial_order

    specs = tasks.select(["sst2", "rte"], tasks.load_tasks())
    model = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    cells = asha_cells(plan.classification_cells([model], specs, "paper", {"lr": (1e-5, 1e-4)}, seeds=2,
                                                 data_dir=demo_data))
    groups = experiments(cells)  # 2 tasks, each 2 lr x 4 wd x 2 bs x 4 epochs, 2 seeds
    assert len(groups) == 2 and all(len(g) == 64 for g in groups)
    assert all(len({c.task.name for trial in g for c in trial}) == 1 for g in groups)
    for trial in groups[0]:
        assert [c.seed for c in trial] == [0, 1] and len({c.config for c in trial}) == 1
    assert len({trial[0].config for trial in groups[0]}) == 64
    order = trial_order(groups[0])
    assert sorted(order) == list(range(64)) and order != list(range(64)) and order == trial_order(groups[0])


def test_an_asha_cell_is_never_a_grid_cell(tiny_pair, demo_data):
    specs = tasks.select(["sst2"], tasks.load_tasks())
    model = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    grid = plan.classification_cells([model], specs, "paper", {"lr": (1e-3, 2e-3)}, data_dir=demo_data)
    asha = asha_cells(grid)
    assert {c.key for c in grid}.isdisjoint({c.key for c in asha})
    assert len({c.protocol_key for c in asha}) == 1 and asha[0].protocol_key != grid[0].protocol_key
    assert asha[0].config.tunable() == grid[0].config.tunable()
    assert protocol_label(asha[0]) == "custom grid, asha search, local data"


def test_asha_stops_configurations_and_records_how_far_each_got(first_run):
    code, out, records = first_run
    assert code == 0 and len(records) == 16
    stopped = [r for r in records.values() if r["search"]["stopped_early"]]
    done = [r for r in records.values() if not r["search"]["stopped_early"]]
    assert stopped and done and len(done) <= 8
    by_config = {}
    for r in records.values():
        by_config.setdefault(r["config_key"], []).append(r)
    for pair in by_config.values():  # the seeds of a configuration go as far as each other, ranked by their mean
        assert sorted(r["seed"] for r in pair) == [0, 1]
        assert len({(r["search"]["stopped_early"], r["search"]["rung"]) for r in pair}) == 1
        assert pair[0]["search"]["configuration_score"] == pytest.approx(
            sum((r["search"]["final"] or r["search"]["history"][-1])["score"] for r in pair) / 2)
    for r in records.values():
        s = r["search"]
        assert s["method"] == "asha" and s["reduction_factor"] == 4 and s["rung_fractions"] == [0.0625, 0.25, 1.0]
        assert r["protocol"]["label"] == "custom grid, asha search, limit 48, local data"
        assert [h["asha_t"] for h in s["history"]] == [1, 4][:len(s["history"])]
    dev_tokens = {r["tokens_processed"] - r["train_tokens"] for r in done}  # a completed cell scores the dev split once
    assert len(dev_tokens) == 1 and dev_tokens.pop() > 0
    for r in records.values():  # and each rung scored it once more, beside training
        assert r["search"]["rung_eval_tokens"] == len(r["search"]["history"]) * (
            done[0]["tokens_processed"] - done[0]["train_tokens"])
    per_epoch = {r["search"]["full_train_tokens"] / r["hyperparameters"]["epochs"] for r in records.values()}
    assert len(per_epoch) == 1  # the grid's cost of a configuration: its epochs x the train split's tokens
    for r in done:  # exactly what a grid cell holds, plus ``search``
        assert r["search"]["progress"] == 1.0 and r["samples"] and r["train_tokens"] == r["search"]["full_train_tokens"]
        assert r["train_steps"] == r["search"]["final"]["step"] and set(r["metrics"]) == {"accuracy"}
    for r in stopped:
        assert r["search"]["progress"] < 1 and r["samples"] is None
        assert 0 < r["train_tokens"] < r["search"]["full_train_tokens"]
        assert r["search"]["rung"] == r["search"]["history"][-1]["asha_t"]


def test_a_completed_configuration_is_the_grid_cell(first_run, tiny_pair, demo_data, tmp_path):
    """Both seeds, trained in lockstep on one loaded model, give what each grid cell gives alone."""
    _, _, records = first_run
    first = next(r for r in records.values() if not r["search"]["stopped_early"])
    done = {r["seed"]: r for r in records.values() if r["config_key"] == first["config_key"]}
    hp = first["hyperparameters"]
    argv = ["run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data, "--lr", str(hp["lr"]),
            "--epochs", str(hp["epochs"]), "--batch-size", "16", "--limit", "48", "--seeds", "2",
            "--output-path", tmp_path, "--quiet"]
    assert run_cli(*argv) == 0
    grid = {r["seed"]: r for r in ResultStore(tmp_path).records()}
    assert sorted(grid) == sorted(done) == [0, 1]
    for seed in grid:
        for field in ("metrics", "train_loss", "train_tokens", "train_steps", "n_examples", "split", "input_format"):
            assert grid[seed][field] == done[seed][field], (seed, field)
        assert grid[seed]["cell_key"] != done[seed]["cell_key"] and grid[seed]["config_key"] != done[seed]["config_key"]


def test_seeds_in_lockstep_train_exactly_as_each_alone_dropout_included(tiny_pair, demo_data, tmp_path):
    """Interleaving seeds on one model must put back each seed's weights and random state: with
    dropout on, a seed that resumed with another's random state would draw other masks."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    from harness.adapters import classification
    from harness.adapters.base import RunOptions
    from harness.search import trial

    config = AutoConfig.from_pretrained(tiny_pair["encoder"])
    config.embedding_dropout = config.mlp_dropout = config.attention_dropout = 0.2
    AutoModelForMaskedLM.from_pretrained(tiny_pair["encoder"], config=config).save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(tiny_pair["encoder"]).save_pretrained(tmp_path / "m")
    specs = tasks.select(["sst2"], tasks.load_tasks())
    model = ModelSpec(model_id=str(tmp_path / "m"), architecture="encoder", name="dropout")
    cells = asha_cells(plan.classification_cells([model], specs, "small", {"lr": (1e-3,), "epochs": (2,)},
                                                 seeds=2, limit=48, data_dir=demo_data))
    settings = ("cpu", "fp32", "auto", None)
    reports = []
    trial.run_trial({"index": 0}, trials=[cells], settings=settings, asha=AshaSettings(), report=reports.append)
    assert [r["asha_t"] for r in reports] == [1, 4, 16]
    runner = trial.runner_for(settings)
    for cell in cells:
        alone = classification.run(cell, runner, RunOptions())
        together = reports[-1]["seeds"][cell.key]["cell_result"]
        assert together.metrics == alone.metrics and together.details["train_loss"] == alone.details["train_loss"]
    losses = [reports[-1]["seeds"][c.key]["cell_result"].details["train_loss"] for c in cells]
    assert losses[0] != losses[1]


def test_the_report_labels_asha_and_never_picks_a_stopped_configuration(first_run, capsys):
    from harness.report import build_report
    from harness.report.frame import best_scores, headline_frame

    _, out, records = first_run
    frame = headline_frame(out)
    best = best_scores(frame)
    seeds = {}
    for r in records.values():
        if not r["search"]["stopped_early"]:
            seeds.setdefault(r["config_key"], []).append(r["metrics"]["accuracy"])
    completed = {key: sum(v) / len(v) for key, v in seeds.items()}  # the report ranks by the seed mean
    assert all(len(v) == 2 for v in seeds.values())
    assert best["config"].iloc[0] in completed
    assert best["score"].iloc[0] == pytest.approx(max(completed.values()))
    assert best["configs"].iloc[0] == len(completed)
    text = build_report([out], n_boot=0).text()
    assert "asha search" in text and "configurations stopped early are never chosen" in text


def test_a_rerun_resumes_without_training_what_the_store_holds(first_run, tiny_pair, demo_data, tmp_path, capsys):
    import shutil

    _, out, records = first_run
    root = tmp_path / "resume"
    shutil.copytree(out, root)
    store = ResultStore(root)
    lost = [next(k for k, r in records.items() if not r["search"]["stopped_early"]),
            next(k for k, r in records.items() if r["search"]["stopped_early"])]
    for key in lost:  # as if the run had been killed before writing these two
        store.record_path(key).unlink()
    capsys.readouterr()
    assert run_cli(*asha_argv(tiny_pair, demo_data, root)) == 0
    out_text = capsys.readouterr().out
    # the lost completed seed trains alone beside its stored sibling; a stopped configuration with a
    # seed lost trains both seeds again, to the same rung
    assert "1 cells completed, 2 stopped early, 0 failed, 13 already in the store" in out_text
    again = {r["cell_key"]: r for r in store.records()}
    retrained = set(lost) | {k for k, r in records.items() if r["config_key"] == records[lost[1]]["config_key"]}
    for key, r in records.items():  # the same decisions and numbers; the others not rewritten
        assert again[key]["metrics"] == r["metrics"] and again[key]["search"]["progress"] == r["search"]["progress"]
        if key not in retrained:
            assert again[key]["timestamp"] == r["timestamp"]


def test_asha_on_a_ray_cluster_killed_and_resumed(first_run, cluster, tiny_pair, demo_data, tmp_path):
    """A CLI run on every slot of the test's Ray cluster (2 trials at a time), killed (-9) in the
    middle of its trials; the same command again finishes it without training what it finished."""
    _, _, local = first_run
    out = tmp_path / "killed"
    argv = [str(a) for a in asha_argv(tiny_pair, demo_data, out)]
    log = tmp_path / "log.txt"
    with open(log, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv, "--executor", "ray", "--address",
                                 ray.get_runtime_context().gcs_address], start_new_session=True, stdout=stdout,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "records").glob("*.json")):
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "2 CPUs, 0 GPU per trial" in log.read_text()
    before = {r["cell_key"]: r for r in ResultStore(out).records()}
    assert 1 <= len(before) < 16
    code = run_cli(*argv)
    after = {r["cell_key"]: r for r in ResultStore(out).records()}
    assert code == 0 and set(after) == set(local)
    for key, r in before.items():
        if not r["search"]["stopped_early"]:  # finished configurations are not trained again
            assert after[key]["timestamp"] == r["timestamp"]
    for key, r in after.items():  # which ones stop depends on the order trials report; the numbers do not
        if not r["search"]["stopped_early"] and not local[key]["search"]["stopped_early"]:
            assert r["metrics"] == local[key]["metrics"] and r["train_loss"] == local[key]["train_loss"]

def one_cell(tiny_pair, demo_data):
    specs = tasks.select(["sst2"], tasks.load_tasks())
    model = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    (cell,) = asha_cells(plan.classification_cells([model], specs, "small", {"lr": (1e-3,), "epochs": (1,)},
                                                   limit=48, data_dir=demo_data))
    return cell


def test_a_stored_configuration_is_replayed_not_trained(tiny_pair, demo_data, monkeypatch):
    from harness.search import trial

    cell = one_cell(tiny_pair, demo_data)
    monkeypatch.setattr(trial.classification, "run_steps", lambda *a, **k: pytest.fail("trained again"))
    history = [{"asha_t": 1, "score": 0.5, "rank": 0.5, "progress": 0.25, "step": 1, "train_tokens": 10, "metrics": {}}]
    final = {**history[0], "asha_t": 16, "progress": 1.0, "step": 4, "train_tokens": 40}
    reports = []
    trial.run_trial({"index": 0}, trials=[[cell]], stored={cell.key: {"history": history, "complete": True, "final": final}},
                    asha=AshaSettings(), report=reports.append)
    assert [r["asha_t"] for r in reports] == [1, 16] and all(r["replayed"] for r in reports)


def test_a_trial_that_will_fail_again_is_recorded_once_one_that_can_pass_is_retried(tiny_pair, demo_data, monkeypatch):
    import torch

    from harness.search import trial

    cell = one_cell(tiny_pair, demo_data)
    reports = []

    def broken(*a, **k):
        raise ValueError("could not convert 'x' to a label")

    monkeypatch.setattr(trial.classification, "run_steps", broken)
    trial.run_trial({"index": 0}, trials=[[cell]], settings=("cpu", "fp32", "auto", None), asha=AshaSettings(),
                    report=reports.append)
    assert len(reports) == 1 and reports[0]["error"] == "ValueError: could not convert 'x' to a label"
    assert "rank" not in reports[0] and not reports[0]["user_error"]  # ASHA ignores it; the recorder fails it

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(trial.classification, "run_steps", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # Tune runs it again, up to --retries times
        trial.run_trial({"index": 0}, trials=[[cell]], settings=("cpu", "fp32", "auto", None), asha=AshaSettings(),
                        report=reports.append)


def test_the_recorder_writes_failures_and_holds_back_user_errors(tiny_pair, demo_data, tmp_path):
    from harness.search.recorder import Recorder, Tally

    cell = one_cell(tiny_pair, demo_data)
    store, tally = ResultStore(tmp_path), Tally()
    recorder = Recorder([[cell]], store, AshaSettings(), {}, tally, "x")
    recorder.settle(cell, {"asha_t": 16, "error": "ValueError: bad", "user_error": False, "wall_time_s": 1.0}, [])
    assert store.get(cell.key)["status"] == "failed" and tally.failed == [cell.key]
    store.record_path(cell.key).unlink()
    recorder.settle(cell, {"asha_t": 16, "error": "column 'sentence' missing", "user_error": True}, [])
    assert store.get(cell.key) is None and tally.user_errors == ["column 'sentence' missing"]


def test_a_failing_trial_fails_only_its_live_seeds_and_an_unwritten_record_fails_the_run(tiny_pair, demo_data,
                                                                                           tmp_path, monkeypatch):
    from types import SimpleNamespace

    from harness.records import build_record
    from harness.adapters.base import CellResult
    from harness.search.recorder import Recorder, Tally

    specs = tasks.select(["sst2"], tasks.load_tasks())
    model = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    done, live = asha_cells(plan.classification_cells([model], specs, "small", {"lr": (1e-3,), "epochs": (1,)},
                                                      seeds=2, limit=48, data_dir=demo_data))
    store, tally = ResultStore(tmp_path), Tally()
    result = CellResult(metrics={"accuracy": 0.75}, headline_metric="accuracy", split="validation", n_examples=8)
    store.write(build_record(done, result, 1.0, "cpu", None))
    finished = store.get(done.key)
    recorder = Recorder([[done, live]], store, AshaSettings(), {}, tally, "x")
    trial = SimpleNamespace(config={"index": 0}, trial_id="t0", last_result={"time_total_s": 2.0},
                            get_error=lambda: RuntimeError("CUDA out of memory"))
    recorder.on_trial_error(0, [], trial)  # a fault that could pass, after --retries
    assert store.get(done.key) == finished and store.get(live.key)["status"] == "failed"
    assert tally.failed == [live.key] and tally.code == 1

    tally = Tally()
    recorder = Recorder([[live]], store, AshaSettings(), {}, tally, "x")
    monkeypatch.setattr(store, "write", lambda record: (_ for _ in ()).throw(OSError("disk full")))
    trial.last_result = {"asha_t": 16, "error": "ValueError: bad", "cells": [live.key]}
    recorder.on_trial_complete(0, [], trial)
    assert tally.unrecorded and "disk full" in tally.unrecorded[0] and tally.code == 1


def test_an_experiment_waits_for_cells_another_run_holds(tiny_pair, demo_data, tmp_path, monkeypatch):
    import threading

    from harness.execution import ExecutionSettings, RunnerSettings
    from harness.search.driver import AshaRun

    cell = one_cell(tiny_pair, demo_data)
    store = ResultStore(tmp_path)
    fits = []

    class Tuner:  # stands in for Ray Tune: notes that the experiment trained
        def __init__(self, *a, **k):
            pass

        def fit(self):
            fits.append(time.time())

    monkeypatch.setattr(ray.tune, "Tuner", Tuner)
    held = store.claim(cell.key)  # another run is training this configuration
    job = AshaRun(store, AshaSettings(), ExecutionSettings(quiet=True), RunnerSettings(device="cpu"))
    warm = type("Warm", (), {"init_paths": lambda self, g: {}, "checkpoint_paths": lambda self, g: {}})()
    thread = threading.Thread(target=job.experiment, args=([[cell]], warm, {"cpu": 1, "gpu": 0}, 1))
    thread.start()
    time.sleep(1.0)
    waited = not fits
    released = time.time()
    store.release(held)
    thread.join(30)
    assert waited and len(fits) == 1 and fits[0] >= released


def test_warm_starts_come_from_the_best_configuration_that_completed(tiny_pair, demo_data, tmp_path):
    from harness.adapters.base import CellResult
    from harness.records import build_record
    from harness.search.warm import AshaWarmStarts

    specs = tasks.select(["mnli", "rte"], tasks.load_tasks())
    model = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    cells = asha_cells(plan.classification_cells([model], specs, "small", {"lr": (1e-3, 2e-3, 3e-3)}, limit=48,
                                                 data_dir=demo_data))
    mnli = [c for c in cells if c.task.name == "mnli"]
    rte = [c for c in cells if c.task.name == "rte"]
    store = ResultStore(tmp_path)
    warm = AshaWarmStarts(store, cells)
    for cell, accuracy, stopped in zip(mnli, (0.6, 0.9, 0.5), (False, True, False)):  # the 0.9 is a partial score
        result = CellResult(metrics={"accuracy": accuracy}, headline_metric="accuracy", split="validation_matched",
                            n_examples=48, details={"search": {"method": "asha", "stopped_early": stopped}})
        store.write(build_record(cell, result, 1.0, "cpu", None))
        if not stopped:
            warm.path(cell.key).parent.mkdir(parents=True, exist_ok=True)
            warm.path(cell.key).write_bytes(b"weights")
    assert all(c.waiting for c in rte)
    resolved = warm.resolve(rte)
    assert {c.init_key for c in resolved} == {mnli[0].key}
    assert warm.init_paths(resolved) == {c.key: str(warm.path(mnli[0].key)) for c in resolved}
    assert sorted(p.stem for p in warm.path("x").parent.iterdir()) == [mnli[0].key]  # the others are pruned
    assert set(warm.checkpoint_paths(mnli)) == {c.key for c in mnli} and not warm.checkpoint_paths(resolved)


def test_a_seed_completed_under_other_rungs_is_not_ranked_with_its_final_score():
    """A seed the store holds complete is kept beside its retrained siblings only where it has a
    score at every rung of these settings; otherwise its final score would stand in for a rung
    score in the configuration's mean, so it trains again. When every seed is complete, the
    configuration is replayed at its end whatever the rungs."""
    from types import SimpleNamespace

    from harness.search.space import AshaSettings
    from harness.search.trial import kept_seeds, replay

    asha = AshaSettings(4, 3)
    cells = [SimpleNamespace(key=k) for k in ("a", "b", "c")]
    final = {"score": 0.9, "rank": 0.9}
    stored = {"a": {"complete": True, "final": final, "history": [{"asha_t": 1.0, "score": 0.5, "rank": 0.5},
                                                                  {"asha_t": 4.0, "score": 0.6, "rank": 0.6}]},
              "b": {"complete": True, "final": final, "history": []}}  # completed under other rungs
    assert set(kept_seeds(cells, stored, asha)) == {"a"}
    reports = []
    assert replay(cells, stored, asha, reports.append) == 0.0 and reports == []  # "c" has nothing stored
    stored["c"] = stored["b"]
    assert replay(cells, stored, asha, reports.append) == asha.max_t
    assert [r["asha_t"] for r in reports] == [asha.max_t] and reports[0]["score"] == 0.9
