"""A Ray cluster the harness starts for itself runs nobody else's code: an unauthenticated request
to its dashboard agent's job endpoint (which runs a shell command) is refused while a run is going."""

import os
import stat

import pytest

from harness.execution import ExecutionSettings, run_cells
from harness.results import ResultStore
from test_executors import tiny_cells

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ettin-harness[ray]')")


def test_a_cluster_the_harness_starts_refuses_unauthenticated_jobs(tiny_pair, demo_data, tmp_path, monkeypatch):
    from harness.execution.ray import RayExecutor, run_on_worker

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    # an inherited opt-out and a current cluster elsewhere do not change the cluster the harness starts
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    marker = tmp_path / "ran"
    port_file = tmp_path / "port"

    def work(job, *args):  # pickled by value and run on a worker, while the run is going
        import json
        import time
        import urllib.error
        import urllib.request

        # a job for the dashboard agent on loopback, without a token; the agent may still be
        # starting when the first cell runs, so a refused connection is tried again for a while
        request = urllib.request.Request(f"http://127.0.0.1:{port_file.read_text()}/api/job_agent/jobs/",
                                         data=json.dumps({"entrypoint": f"touch {marker}"}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        status, deadline = None, time.monotonic() + 90
        while status is None:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, ConnectionError) as exc:
                if time.monotonic() > deadline:
                    status = f"unreachable: {exc}"
                else:
                    time.sleep(1)
        (tmp_path / f"status.{job.cell.key}").write_text(str(status))
        return run_on_worker(job, *args)

    try:
        executor = RayExecutor(settings=("cpu", "fp32", "auto", None), work=work)
    except Exception as exc:  # e.g. no /dev/shm or no free ports in a sandbox
        pytest.skip(f"a local Ray cluster cannot start here: {type(exc).__name__}: {exc}")
    try:
        assert executor.started
        node = ray._private.worker.global_worker.node
        # Ray's default install (ettin-harness[ray], and the dev extra) runs the dashboard agent
        assert node.dashboard_agent_listen_port, "no dashboard agent: install ray[default] (the dev extra has it)"
        port_file.write_text(str(node.dashboard_agent_listen_port))
        token = os.environ.get("RAY_AUTH_TOKEN_PATH")
        (cell,) = tiny_cells(tiny_pair, demo_data)
        summary = run_cells([cell], ResultStore(tmp_path / "out"), ExecutionSettings(quiet=True), executor)
    finally:
        executor.close()
    assert (tmp_path / f"status.{cell.key}").read_text() == "401"
    assert not marker.exists()
    assert summary.done == [cell.key], summary.errors  # the cluster works for the harness
    assert token and stat.S_IMODE(os.stat(token).st_mode) == 0o600  # the harness's own token, private
