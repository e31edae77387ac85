"""Running ASHA: one Ray Tune experiment per (model, task, data, protocol) whose trials are the
grid's configurations (each with all its seeds), on a local Ray instance (``--executor local``: one trial at a time)
or on every CPU/GPU slot of a Ray cluster (``--executor ray``, ``--address``)."""

from __future__ import annotations

import logging
import os

from harness.execution import ExecutionSettings, RunnerSettings, make_executor, run_cells
from harness.execution.ray import connect
from harness.plan import Cell
from harness.results import ResultStore
from harness.search.space import AshaConfig, AshaSettings, experiments, trial_order
from harness.search.trial import run_trial
from harness.search.warm import AshaWarmStarts

log = logging.getLogger(__name__)
TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # records are the harness's; no CSV/JSON/TensorBoard logs
            "RAY_AIR_NEW_OUTPUT": "0",  # verbose=0 then prints nothing
            "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C stops the run as it stops a grid run
            "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000000",
            # a Ray instance this run starts runs trials at normal priority, as the local executor runs
            # cells (Ray's default niceness 15 for workers starves them on a busy machine)
            "RAY_worker_niceness": "0"}


def say(text: str) -> None:
    print(text, flush=True)


def trial_resources(ray, execution: ExecutionSettings, runner: RunnerSettings) -> tuple[dict, int | None]:
    """Resources of one trial and how many trials run at once (None: as many as fit)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    per_trial = execution.gpus_per_cell
    if per_trial is None:
        per_trial = 1 if gpus and runner.device != "cpu" else 0
    if per_trial > gpus:
        from harness.errors import UserError

        raise UserError(f"--gpus-per-cell {per_trial:g} but the Ray cluster has {gpus:g} GPUs; use --gpus-per-cell 0 "
                        "for CPU trials or add GPU nodes")
    concurrency = 1 if execution.executor == "local" else None
    return {"cpu": 1, "gpu": per_trial}, concurrency


def experiment_name(trials: list[list[Cell]]) -> str:
    cell = trials[0][0]
    return f"{cell.key.split('__')[0]}__{cell.task.name}__{cell.protocol_key[:10]}"


class AshaRun:
    """Every experiment of a plan, one after another, each trial's record written as it ends."""

    def __init__(self, store: ResultStore, asha: AshaSettings, execution: ExecutionSettings, runner: RunnerSettings):
        self.store, self.asha, self.execution = store, asha, execution
        device, *rest = runner.as_tuple()
        self.settings = ("cuda" if str(device).startswith("cuda") else device, *rest)
        from harness.search.recorder import Tally

        self.tally = Tally()

    def experiment(self, trials: list[list[Cell]], warm: AshaWarmStarts, resources: dict, concurrency) -> None:
        group = [c for trial in trials for c in trial]
        # claimed as a grid run claims its cells (in one order, so two runs never hold each other's):
        # a second run into this folder waits, then replays what the first one recorded
        claims = [self.store.claim(key, wait=True) for key in sorted({c.key for c in group})]
        try:
            self._experiment(trials, group, warm, resources, concurrency)
        finally:
            for claim in claims:
                self.store.release(claim)

    def _experiment(self, trials, group, warm, resources, concurrency) -> None:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        from harness.search.recorder import Recorder, stored_trials

        stored = stored_trials(self.store, group, self.asha)
        name = experiment_name(trials)
        recorder = Recorder(trials, self.store, self.asha, stored, self.tally, name)
        if all(c.key in stored for c in group):  # every configuration settled (completed or stopped) already
            for c in group:
                recorder.settle(c, {"replayed": True}, [])
            return
        trainable = tune.with_parameters(run_trial, trials=trials, stored=stored, settings=self.settings,
                                         asha=self.asha, init_paths=warm.init_paths(group),
                                         checkpoint_paths=warm.checkpoint_paths(group))
        scheduler = ASHAScheduler(time_attr="asha_t", metric="rank", mode="max", max_t=self.asha.max_t,
                                  grace_period=1, reduction_factor=self.asha.reduction_factor)
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"index": tune.grid_search(trial_order(trials))},
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True, max_concurrent_trials=concurrency),
            run_config=tune.RunConfig(name=name, storage_path=os.path.abspath(self.store.root / ".tune"),
                                      callbacks=[recorder], verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=self.execution.retries)))
        tuner.fit()


def run(cells: list[Cell], execution: ExecutionSettings, runner: RunnerSettings, output_path: str,
        asha: AshaSettings) -> int:
    """ASHA over the fine-tuning cells of ``cells`` (the others, lm-eval scoring, run as usual);
    returns the exit code (1 when a configuration failed)."""
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    logging.getLogger("ray.train").setLevel(logging.ERROR)
    store = ResultStore(output_path)
    tuned = [c for c in cells if isinstance(c.config, AshaConfig)]
    others = [c for c in cells if not isinstance(c.config, AshaConfig)]
    groups = experiments(tuned)
    ray, started = connect(execution.address if execution.executor == "ray" else None)
    job = AshaRun(store, asha, execution, runner)
    try:
        resources, concurrency = trial_resources(ray, execution, runner)
        where = "one trial at a time" if concurrency == 1 else f"{ray.cluster_resources().get('CPU', 0):g} CPUs"
        say(f"ettin-eval: {asha.describe()}: {sum(map(len, groups))} configurations ({len(tuned)} cells) in "
            f"{len(groups)} experiment{'s' if len(groups) != 1 else ''} -> "
            f"{output_path} on Ray ({execution.address or 'local'}, {where}, {resources['gpu']:g} GPU per trial)")
        warm = AshaWarmStarts(store, tuned, execution.shared_dir)
        for i, trials in enumerate(groups, 1):
            job.experiment(warm.resolve_trials(trials), warm, resources, concurrency)
            if job.tally.user_errors:  # the user's to fix (bad data, a missing column): stop, as a grid run does
                from harness.errors import UserError

                raise UserError(job.tally.user_errors[0])
            if not execution.quiet:
                first = trials[0][0]
                say(f"[{i}/{len(groups)}] {first.model.name} {first.task.name} done; so far: {job.tally.line()}")
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    tally = job.tally
    say(f"ettin-eval: ASHA: {tally.line()}")
    for key in tally.failed[:10]:
        say(f"  failed: {key}: {tally.errors.get(key)}")
    for line in tally.unrecorded[:10]:
        say(f"  not recorded: {line}")
    code = tally.code
    if others:
        executor = make_executor(execution, runner)
        try:
            summary = run_cells(others, store, execution, executor)
        finally:
            executor.close()
        say(f"ettin-eval: scoring cells: {summary.line()}")
        code = max(code, 1 if summary.failed or summary.blocked else 0)
    return code
