"""The ``ray`` executor: every cell a Ray task on the GPUs (or CPUs) of a Ray cluster.

This process, the driver, decides which cell starts next (the same ``Schedule`` as a local run)
and writes every record and samples file as cells finish, so a Ray run fills the same store as
a local one and resumes the same way. Workers only compute: each keeps one ``Runner`` per
process, so consecutive cells of a model on a worker reuse the loaded weights and tokenized data.
Warm-start checkpoints travel through ``--shared-dir``, a folder every node (driver included) reads.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from tqdm.auto import tqdm

from harness.cells import checkpoint_path, run_cell, save_checkpoint
from harness.errors import UserError
from harness.executors import DEFAULT_RETRIES, Schedule, Summary, WarmStarts
from harness.plan import Cell
from harness.results import ResultStore
from harness.tasks import TaskSpec

log = logging.getLogger(__name__)

_RUNNERS: dict[tuple, object] = {}  # in each worker process: runner settings -> Runner


class _WorkerStore(ResultStore):
    """The store as a worker sees it: checkpoints under the shared folder; samples kept in
    memory and handed to the driver, which writes them next to the record."""

    def __init__(self, shared_dir: str):
        super().__init__(shared_dir)
        self.rows: list[dict] | None = None

    def write_samples(self, key: str, rows: list[dict]) -> str:
        self.rows = rows
        return str(Path("samples") / f"{key}.jsonl")


def run_on_worker(cell: Cell, spec: TaskSpec | None, settings: tuple, shared_dir: str, keep_state: bool,
                  log_samples: bool) -> dict:
    """One cell on a Ray worker: its record, its samples, and how many models it had to load."""
    from harness.runner import Runner

    if settings not in _RUNNERS:
        from harness.commands import quiet_libraries

        quiet_libraries()
        _RUNNERS[settings] = Runner(*settings)
    runner = _RUNNERS[settings]
    store = _WorkerStore(shared_dir)
    loads = runner.loads
    record, state = run_cell(cell, spec, runner, store, keep_state=keep_state, progress=False, log_samples=log_samples)
    if state is not None:  # every candidate is saved; the driver keeps the best once its record is written
        save_checkpoint(state, checkpoint_path(store, cell.key))
    return {"record": record, "samples": store.rows, "loads": runner.loads - loads,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def connect(address: str | None):
    """The ``ray`` module, connected to the cluster at ``address`` (a local one when None)."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed; pip install 'ettin-harness[ray]'") from None
    if ray.is_initialized():
        return ray, False
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise UserError(f"no Ray cluster at --address {address} ({str(exc).splitlines()[0]}); start one with "
                        "'ray start --head' or leave --address out for a local cluster") from None
    return ray, True


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (ray.init retries an unreachable address for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot reach a Ray cluster at --address {address} ({exc}); give the head node's "
                        "HOST:PORT (printed by 'ray start --head'), auto, or leave --address out") from None


class RayExecutor:
    def __init__(self, store: ResultStore, tasks: dict[str, TaskSpec], settings: tuple = ("auto", "auto", "auto", None),
                 address: str | None = None, gpus_per_cell: float | None = None, shared_dir: str | None = None,
                 progress: bool = True, log_samples: bool = False, retries: int = DEFAULT_RETRIES,
                 work=run_on_worker):
        if gpus_per_cell is not None and gpus_per_cell < 0:
            raise UserError(f"--gpus-per-cell must be 0 (CPU) or more, not {gpus_per_cell}")
        self.ray, self.started = connect(address)
        resources = self.ray.cluster_resources()
        self.gpus = resources.get("GPU", 0)
        wants_gpu = self.gpus and settings[0] != "cpu"
        self.gpus_per_cell = (1 if wants_gpu else 0) if gpus_per_cell is None else gpus_per_cell
        if self.gpus_per_cell > self.gpus:
            self.close()
            raise UserError(f"--gpus-per-cell {self.gpus_per_cell:g} but the Ray cluster has {self.gpus:g} GPUs; "
                            "use --gpus-per-cell 0 for CPU cells or add GPU nodes")
        self.slots = max(1, int(self.gpus // self.gpus_per_cell) if self.gpus_per_cell
                         else int(resources.get("CPU", 1)))
        # Ray gives each cell its own GPU(s) through CUDA_VISIBLE_DEVICES: "cuda:N" means "cuda" there
        device, *rest = settings
        self.settings = ("cuda" if str(device).startswith("cuda") else device, *rest)
        self.store = store
        self.tasks = tasks
        self.address = address
        self.shared_dir = Path(shared_dir or store.root).absolute()
        self.progress = progress
        self.log_samples = log_samples
        self.retries = retries
        # max_retries=0: a lost worker comes back as an error and counts against --retries like any other
        self.remote = self.ray.remote(num_gpus=self.gpus_per_cell, num_cpus=1, max_retries=0)(work)

    def describe(self) -> str:
        per_cell = f"{self.gpus_per_cell:g} GPU" if self.gpus_per_cell else "1 CPU"
        return (f"Ray cluster {self.address or '(local)'}: {self.gpus:g} GPUs, {per_cell} per cell, "
                f"{self.slots} cells at a time, checkpoints in {self.shared_dir}")

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, cells: list[Cell]) -> Summary:
        summary = Summary()
        warm = WarmStarts(self.store, cells, self.shared_dir)
        schedule = Schedule(cells, self.store, warm, summary)
        running: dict = {}  # ObjectRef -> (cell, attempt, start time)
        stop: UserError | None = None
        bar = tqdm(total=len(cells), desc="cells", disable=not self.progress)
        try:
            while True:
                while stop is None and len(running) < self.slots:
                    cell = schedule.take(wait=not running)
                    if cell is None:
                        break
                    running[self._submit(cell, warm)] = (cell, 0, time.perf_counter())
                if not running:
                    break
                [ref], _ = self.ray.wait(list(running), num_returns=1)
                cell, attempt, start = running.pop(ref)
                try:
                    out = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:
                    error = getattr(exc, "cause", None) or exc
                    if isinstance(error, UserError):  # the user's to fix: finish what runs, then stop
                        stop = stop or error
                        schedule.drop(cell)
                    elif attempt < self.retries and stop is None:
                        log.warning("cell %s failed (attempt %d of %d): %s: %s", cell.key, attempt + 1,
                                    self.retries + 1, type(error).__name__, str(error).splitlines()[0])
                        running[self._submit(cell, warm)] = (cell, attempt + 1, start)
                    else:
                        log.error("cell %s failed: %s", cell.key, error)
                        schedule.finish(cell, error=error, wall_time=time.perf_counter() - start)
                else:
                    record = out["record"]
                    if out["samples"] is not None:
                        record["samples"] = self.store.write_samples(cell.key, out["samples"])
                    schedule.finish(cell, record)
                    summary.loads += out["loads"]
                    log.debug("cell %s done on %s", cell.key, out["worker"])
                bar.update(summary.settled - bar.n)
        finally:
            for ref in running:  # interrupted: those cells run again next time
                self.ray.cancel(ref, force=True)
            schedule.close()
            bar.close()
        if stop is not None:
            raise stop
        return summary

    def _submit(self, cell: Cell, warm: WarmStarts):
        return self.remote.remote(cell, self.tasks.get(cell.task), self.settings, str(self.shared_dir),
                                  warm.keeps_state(cell), self.log_samples)
