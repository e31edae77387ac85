"""The Ray executor: every cell a Ray task on the GPUs (or CPUs) of a Ray cluster.

Workers only compute: each keeps one runner per process, so consecutive cells of a model on a
worker reuse the loaded weights and tokenized data, and hands the outcome back to the driver,
whose schedule writes the store. Warm-start checkpoints travel through ``shared_dir``, a folder
every node (driver included) reads.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import socket
import tempfile

from harness.errors import UserError, first_line
from harness.execution.work import Job, Outcome, execute

log = logging.getLogger(__name__)

_RUNNERS: dict[tuple, object] = {}  # in each worker process: runner settings -> Runner


def run_on_worker(job: Job, settings: tuple) -> Outcome:
    """One job on a Ray worker, on the worker's runner for these settings."""
    from harness.execution.settings import quiet_libraries
    from harness.runner import Runner

    if settings not in _RUNNERS:
        quiet_libraries()
        _RUNNERS[settings] = Runner(*settings)
    return execute(job, _RUNNERS[settings], worker=f"{socket.gethostname()}:{os.getpid()}")


def connect(address: str | None):
    """The ``ray`` module, connected to the cluster at ``address`` (a local one when None), and
    whether this process started it."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed; pip install 'ettin-harness[ray]'") from None
    if ray.is_initialized():
        return ray, False
    if address and address != "auto":
        _check_reachable(address)
    if address is None:
        _require_token_auth()
    try:
        # "local": a cluster of our own, never one that RAY_ADDRESS or Ray's current-cluster file points at
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    except ConnectionError as exc:
        raise UserError(f"no Ray cluster at --address {address} ({first_line(exc)}); start one with "
                        "'ray start --head' or leave --address out for a local cluster") from None
    return ray, True


def _require_token_auth() -> None:
    """Token authentication for the cluster this process starts.

    Its processes listen on every interface, and its dashboard agent runs a shell command on an HTTP
    request: without a token, anyone who reaches the machine runs code as this user. The token is a
    fresh one in a file only this user can read (0600 in a 0700 folder, removed at exit), unless
    the user gave one (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH); the processes Ray starts inherit it.
    """
    os.environ["RAY_AUTH_MODE"] = "token"  # also over an inherited "disabled"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        folder = tempfile.mkdtemp(prefix="ettin-ray-auth-")
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "auth_token")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_hex(32))
        os.environ["RAY_AUTH_TOKEN_PATH"] = path
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # Ray reads the mode once per process: make it read it again
    AuthenticationTokenLoader.instance().reset_cache()


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (ray.init retries an unreachable address for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot reach a Ray cluster at --address {address} ({exc}); give the head node's "
                        "HOST:PORT (printed by 'ray start --head'), auto, or leave --address out") from None


class RayExecutor:
    def __init__(self, settings: tuple = ("auto", "auto", "auto", None), address: str | None = None,
                 gpus_per_cell: float | None = None, work=run_on_worker):
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
        self.address = address
        # max_retries=0: a lost worker comes back as an error and the schedule's policy retries it
        self.remote = self.ray.remote(num_gpus=self.gpus_per_cell, num_cpus=1, max_retries=0)(work)
        self.running: dict = {}  # ObjectRef -> job

    def describe(self) -> str:
        per_cell = f"{self.gpus_per_cell:g} GPU" if self.gpus_per_cell else "1 CPU"
        return (f"Ray cluster {self.address or '(local)'}: {self.gpus:g} GPUs, {per_cell} per cell, "
                f"{self.slots} cells at a time")

    def has_room(self) -> bool:
        return len(self.running) < self.slots

    def idle(self) -> bool:
        return not self.running

    def submit(self, job: Job) -> None:
        job.progress = False
        self.running[self.remote.remote(job, self.settings)] = job

    def next_outcome(self) -> tuple[Job, Outcome]:
        [ref], _ = self.ray.wait(list(self.running), num_returns=1)
        job = self.running.pop(ref)
        try:
            return job, self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker, its node or the object was lost
            return job, Outcome(error=getattr(exc, "cause", None) or exc)

    def cancel_all(self) -> None:
        for ref in self.running:  # interrupted: those cells run again next time
            self.ray.cancel(ref, force=True)
        self.running.clear()

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
