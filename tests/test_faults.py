"""Real processes: a run killed with SIGKILL resumes without recomputing a finished cell, and
two runs into one folder at once leave a complete store with every cell computed once."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import run_cli
from harness.results import ResultStore


def command(tiny_pair, demo_data, out, lrs="1e-3,2e-3,3e-3"):
    # MNLI then RTE warm-started from the best MNLI checkpoint: the kill may hit between them
    return ["run", "--model", tiny_pair["encoder"], "--tasks", "mnli,rte", "--data-dir", demo_data, "--lr", lrs,
            "--epochs", "1", "--limit", "48", "--output-path", str(out), "--quiet"]


def start(argv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def readable_records(out) -> dict[str, dict]:
    """Every record file parsed: a half-written one would raise here."""
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def test_sigkill_then_the_same_command_recomputes_no_finished_cell(tiny_pair, demo_data, tmp_path, monkeypatch,
                                                                   capsys):
    out = tmp_path / "run"
    proc = start(command(tiny_pair, demo_data, out))
    deadline = time.monotonic() + 60
    while len(list((out / "records").glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {k: r["timestamp"] for k, r in readable_records(out).items() if r["status"] == "ok"}
    assert 2 <= len(before) < 6, "the run finished before it could be killed"

    from test_executors import counting

    calls = counting(monkeypatch)
    assert run_cli(*command(tiny_pair, demo_data, out)) == 0
    after = readable_records(out)
    assert len(after) == 6 and all(r["status"] == "ok" for r in after.values())
    assert sorted(calls) == sorted(set(after) - set(before))  # each missing cell once, no finished one again
    assert all(after[k]["timestamp"] == t for k, t in before.items())
    assert f"{6 - len(before)} cells run, {len(before)} already in the store, 0 failed; 1 model loads" \
        in capsys.readouterr().out
    rte = [r for r in after.values() if r["task"] == "rte"]
    best_mnli = {r["hyperparameters"]["init_from"] for r in rte}
    assert len(best_mnli) == 1 and [p.stem for p in (out / "checkpoints").iterdir()] == list(best_mnli)


def test_two_runs_into_one_folder_compute_each_cell_once(tiny_pair, demo_data, tmp_path):
    out = tmp_path / "shared"
    argv = command(tiny_pair, demo_data, out, lrs="1e-3,2e-3,3e-3,4e-3")
    procs = [start(argv) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    records = readable_records(out)
    assert len(records) == 8 and all(r["status"] == "ok" for r in records.values())
    runs = [re.search(r"(\d+) cells run, (\d+) already in the store", o).groups() for o, _ in outputs]
    assert sum(int(ran) for ran, _ in runs) == 8, outputs
    assert len(ResultStore(out).records()) == 8
