import json
import os
import subprocess
import sys

import pytest

from conftest import run_cli
from harness.results import ResultStore


def quick_run(tiny_pair, demo_data, out, *extra):
    return run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--tasks", "sst2,rte",
                   "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "1", "--limit", "48",
                   "--output-path", out, "--quiet", *extra)


def test_rerun_recomputes_no_finished_cell(tiny_pair, demo_data, tmp_path, capsys, monkeypatch):
    assert quick_run(tiny_pair, demo_data, tmp_path) == 0
    first = {r["cell_key"]: r["timestamp"] for r in ResultStore(tmp_path).records()}
    assert len(first) == 4
    assert "4 cells run" in capsys.readouterr().out

    # A run killed after some cells: drop one record, the rerun computes that cell only.
    victim = sorted(first)[0]
    (tmp_path / "records" / f"{victim}.json").unlink()
    from test_executors import counting

    calls = counting(monkeypatch)
    assert quick_run(tiny_pair, demo_data, tmp_path) == 0
    out = capsys.readouterr().out
    assert list(calls) == [victim]
    assert "1 cells run, 3 already in the store" in out
    after = {r["cell_key"]: r["timestamp"] for r in ResultStore(tmp_path).records()}
    assert set(after) == set(first)
    assert all(after[k] == first[k] for k in first if k != victim)

    calls.clear()
    assert quick_run(tiny_pair, demo_data, tmp_path) == 0
    assert calls == {} and "0 cells run, 4 already in the store, 0 failed; 0 model loads" in capsys.readouterr().out


def test_a_failed_cell_is_recorded_and_the_others_finish(tiny_pair, demo_data, tmp_path, monkeypatch, capsys):
    from test_executors import counting

    counting(monkeypatch, lambda cell, n: RuntimeError("bad row") if cell.task.name == "sst2" and
             cell.model.architecture == "decoder" else None)
    assert quick_run(tiny_pair, demo_data, tmp_path) == 1
    store = ResultStore(tmp_path)
    assert len(store.records()) == 3
    failed = [r for r in store.records(include_failed=True) if r["status"] == "failed"]
    assert len(failed) == 1 and "bad row" in failed[0]["error"]
    assert "1 failed" in capsys.readouterr().out


BAD_INPUTS = [
    (["run", "--sizes", "17m,99m", "--tasks", "glue"], "unknown size '99m'"),
    (["run", "--model", "./no/such/model", "--tasks", "sst2"], "does not exist"),
    (["run", "--sizes", "17m", "--tasks", "sst2,nosuchtask"], "unknown task 'nosuchtask'"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--grid", "huge"], "unknown --grid 'huge'"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--lr", "fast"], "--lr takes comma-separated numbers"),
    (["run", "--sizes", "17m", "--arch", "both", "--tasks", "sst2"], "HF_HUB_OFFLINE=1"),
    (["run", "--tasks", "sst2"], "no model to run"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--seeds", "0"], "--seeds must be at least 1"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--data-dir", "/no/such/dir"], "is not a folder"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--bogus"], "unrecognized arguments: --bogus"),
    (["export", "/no/such/results", "--tidy", "x.csv"], "does not exist"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--lr", "nan"], "--lr values must be finite numbers"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--weight-decay", "inf"], "--weight-decay values must be finite"),
    (["run", "--sizes", "17m", "--tasks", "sst2", "--lr", "0"], "--lr values must be above 0"),
    (["run", "--model", "./x:encodr", "--tasks", "sst2"], "unknown suffix ':encodr'"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) if "--bogus" in argv else _no_raise() as exc:
        code = run_cli(*argv)
    code = exc.value.code if "--bogus" in argv else code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_bad_task_yaml_and_data_columns_keep_existing_results(tiny_pair, demo_data, tmp_path, capsys):
    out = tmp_path / "results"
    assert quick_run(tiny_pair, demo_data, out) == 0
    before = sorted(p.name for p in (out / "records").iterdir())

    bad_yaml = tmp_path / "bad_tasks"
    bad_yaml.mkdir()
    (bad_yaml / "mytask.yaml").write_text("adapter: classification\ntask: mytask\ntext_fields: [sentence]\n")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "mytask", "--include-path", bad_yaml,
                   "--output-path", out, "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "lacks field(s) dataset_path" in err and len(err.strip().splitlines()) == 1

    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text(json.dumps({"text": "good", "label": 1}) + "\n")
    (data / "validation.jsonl").write_text(json.dumps({"text": "bad", "label": 0}) + "\n")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", tmp_path / "data",
                   "--output-path", out, "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "lacks column(s) sentence" in err and "has: text, label" in err

    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "mrpc", "--data-dir", tmp_path / "data",
                   "--output-path", out, "--quiet")
    assert code == 2 and "no file for task 'mrpc' split 'train'" in capsys.readouterr().err

    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--output-path", out, "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "--data-dir" in err and "nyu-mll/glue" in err

    assert sorted(p.name for p in (out / "records").iterdir()) == before


def test_console_script_exit_code(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ettin-eval"), "run", "--sizes", "2m",
                           "--tasks", "glue"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ettin-eval: error: unknown size '2m' in --sizes; choose from 17m, 32m, 68m, 150m, 400m, 1b"


def test_models_and_tasks_listings(capsys):
    assert run_cli("models") == 0
    out = capsys.readouterr().out
    assert "jhu-clsp/ettin-encoder-17m" in out and "jhu-clsp/ettin-dec-from-enc-1b" in out
    assert "aliases: jhu-clsp/ettin-decoder-from-encoder-1b" in out
    assert run_cli("tasks") == 0
    out = capsys.readouterr().out
    assert "glue: " in out and "mnli" in out and "validation_mismatched" in out
    assert "hellaswag" in out and "arc_challenge_local" in out and "generative_demo" in out


def test_help_lists_every_run_flag(capsys):
    with pytest.raises(SystemExit):
        run_cli("run", "--help")
    out = capsys.readouterr().out
    for flag in ("--sizes", "--arch", "--model", "--revision", "--tasks", "--grid", "--seeds", "--device", "--dtype",
                 "--output-path", "--data-dir", "--limit", "--no-mnli-warm-start", "--include-path"):
        assert flag in out


def test_demo_completes(tmp_path, capsys):
    assert run_cli("demo", "--output-path", tmp_path, "--quiet") == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "stand-ins" in out and "ettin-eval run --sizes" in out
    tasks = {r["task"] for r in ResultStore(tmp_path).records()}
    assert {"sst2", "mnli", "rte", "stsb"} <= tasks


def test_output_paths_that_cannot_hold_results_are_one_line(tiny_pair, demo_data, tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    for out, says in ((afile, "is a file"), (afile / "under", "lies under the file")):
        code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "sst2", "--data-dir", demo_data,
                       "--output-path", out, "--quiet")
        err = capsys.readouterr().err
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert afile.read_text() == "keep me"
    assert run_cli("report", str(tmp_path), "--out", str(afile / "rep")) == 2
    assert "lies under the file" in capsys.readouterr().err


def test_a_model_path_to_a_file_names_the_folder(tiny_pair, capsys):
    code = run_cli("run", "--model", os.path.join(tiny_pair["encoder"], "config.json"), "--tasks", "sst2")
    err = capsys.readouterr().err
    assert code == 2 and "is a file; give the folder that holds config.json" in err


def test_a_classification_yaml_missing_fields_names_them(tiny_pair, tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text("adapter: classification\ntask: mine\ndataset_path: x\ntrain_split: train\n"
                                       "eval_splits: [validation]\nmetrics: [accuracy]\n")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "mine", "--include-path", tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "lacks field(s) text_fields, label_type" in err and "unknown task" not in err


def test_progress_in_a_log_file_is_one_plain_line_per_cell(tiny_pair, demo_data, tmp_path):
    log = tmp_path / "run.log"
    argv = [os.path.join(os.path.dirname(sys.executable), "ettin-eval"), "run", "--model", tiny_pair["encoder"],
            "--tasks", "sst2,generative_demo", "--data-dir", demo_data, "--lr", "1e-3,2e-3", "--epochs", "1",
            "--limit", "24", "--output-path", str(tmp_path / "out")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with open(log, "w") as f:
        assert subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env).returncode == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3", "[3/3"]
    assert all(" ok " in line for line in lines) and "it/s" not in text and "WARNING" not in text


def run_in_terminal(argv: list[str]) -> str:
    """What a person sees in a terminal (a pseudo-terminal, so tqdm draws its bars)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column window
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "120"}
    proc = subprocess.Popen(argv, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_quiet_silences_every_bar_in_a_terminal(tiny_pair, tmp_path):
    argv = [os.path.join(os.path.dirname(sys.executable), "ettin-eval"), "run", "--model", tiny_pair["decoder"],
            "--tasks", "generative_demo"]
    shown = run_in_terminal(argv + ["--output-path", str(tmp_path / "a")])
    assert "cells:" in shown and "it/s" in shown  # in a terminal the run shows bars, lm-eval's among them
    quiet = run_in_terminal(argv + ["--output-path", str(tmp_path / "b"), "--quiet"])
    assert "it/s" not in quiet and "%|" not in quiet and "1 cells run" in quiet
