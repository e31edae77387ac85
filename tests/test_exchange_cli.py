"""``ettin-eval export --format`` and ``ettin-eval import`` on the command line: bad input is one
line naming the problem and the fix (exit 2), nothing already written is lost, and an import
never replaces a result the store holds. Folders here are written by hand (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

MODEL = "jhu-clsp/ettin-decoder-17m"


def lm_eval_folder(root: Path, acc: float = 0.5, date: str = "2025-01-02T03-04-05.000006", **extra) -> Path:
    """A minimal results file as lm-eval writes it, for an Ettin decoder on arc_easy."""
    folder = root / "jhu-clsp__ettin-decoder-17m"
    folder.mkdir(parents=True, exist_ok=True)
    body = {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": acc, "acc_stderr,none": 0.01,
                                     "acc_norm,none": acc + 0.1, "acc_norm_stderr,none": 0.01}},
            "configs": {"arc_easy": {"task": "arc_easy", "test_split": "test", "dataset_path": "allenai/ai2_arc",
                                     "dataset_name": "ARC-Easy", "output_type": "multiple_choice"}},
            "versions": {"arc_easy": 1.0}, "n-shot": {"arc_easy": 0},
            "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}},
            "config": {"model": "hf", "model_args": f"pretrained={MODEL},dtype=bfloat16", "model_revision": "main",
                       "limit": None, "random_seed": 0}, "lm_eval_version": "0.4.9", "transformers_version": "4.56.0",
            **extra}
    (folder / f"results_{date}.json").write_text(json.dumps(body))
    return root


def records(root) -> list[dict]:
    from harness.results import ResultStore

    return ResultStore(root).records()


def cli(*argv) -> int:
    """run_cli, with argparse's own refusals (SystemExit) as exit codes."""
    try:
        return run_cli(*argv)
    except SystemExit as exc:
        return exc.code


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_imported_ettin_run_lands_in_its_size_row(tmp_path, capsys):
    from harness.report import build_report

    assert run_cli("import", lm_eval_folder(tmp_path / "lm"), "--output-path", tmp_path / "store") == 0
    (record,) = records(tmp_path / "store")
    assert record["architecture"] == "decoder" and record["size"] == "17m" and record["family"] == "ettin"
    assert record["metrics"]["acc_norm"] == pytest.approx(0.6) and record["protocol"]["label"] == "imported"
    assert record["versions"]["lm_eval"] == "0.4.9" and record["dataset"]["id"] == "allenai/ai2_arc"
    assert record["samples"] is None  # no samples file: the score shows, without paired tests
    best = build_report([str(tmp_path / "store")], n_boot=0).best
    assert best[["row", "architecture", "task"]].values.tolist() == [["17m", "decoder", "arc_easy"]]


def test_import_never_replaces_a_result_the_store_holds(tmp_path, capsys):
    store = tmp_path / "store"
    assert run_cli("import", lm_eval_folder(tmp_path / "a", acc=0.5), "--output-path", store) == 0
    capsys.readouterr()
    # the same run's file with other numbers: the same key, so the store keeps what it has
    assert run_cli("import", lm_eval_folder(tmp_path / "b", acc=0.9), "--output-path", store) == 0
    assert "1 already there, kept as they were" in capsys.readouterr().out
    (record,) = records(store)
    assert record["metrics"]["acc"] == 0.5


def test_the_newest_of_two_runs_with_the_same_settings_is_imported(tmp_path):
    lm_eval_folder(tmp_path / "lm", acc=0.3, date="2025-01-01T00-00-00.000001")
    lm_eval_folder(tmp_path / "lm", acc=0.4, date="2025-02-01T00-00-00.000001")
    assert run_cli("import", tmp_path / "lm", "--output-path", tmp_path / "store") == 0
    (record,) = records(tmp_path / "store")
    assert record["metrics"]["acc"] == 0.4


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), "is not an lm-eval output folder (no results_*.json under it) nor an MTEB results folder"),
    (lambda p: None, "is not a folder"),
    (lambda p: (p / "m").mkdir(parents=True) or (p / "m" / "results_2025-01-01T00-00-00.1.json").write_text("{"),
     "is not a readable lm-eval results file"),
    (lambda p: lm_eval_folder(p, acc=float("nan")), "metrics acc, acc_norm are not finite numbers"),
])
def test_a_folder_that_is_not_a_results_folder_is_one_line(tmp_path, capsys, make, words):
    store = tmp_path / "store"
    assert run_cli("import", lm_eval_folder(tmp_path / "good"), "--output-path", store) == 0
    before = {p.name: p.read_text() for p in (store / "records").iterdir()}
    make(tmp_path / "bad")
    capsys.readouterr()
    # a good folder first, the bad one second: nothing of either is written
    assert run_cli("import", lm_eval_folder(tmp_path / "good2", acc=0.7, date="2025-03-03T00-00-00.1"),
                   tmp_path / "bad", "--output-path", store) == 2
    line = one_error_line(capsys)
    assert words in line and str(tmp_path / "bad") in line
    assert {p.name: p.read_text() for p in (store / "records").iterdir()} == before


def test_a_result_key_that_names_a_path_is_refused(tmp_path, capsys):
    """An exported file carries its records' keys; one that would write outside the store stops the import."""
    record = {"cell_key": "../../escape", "status": "ok", "model": MODEL, "task": "arc_easy",
              "metrics": {"acc": 0.5, "acc_norm": 0.6}, "seed": 0}
    lm_eval_folder(tmp_path / "lm")
    path = next((tmp_path / "lm").rglob("results_*.json"))
    body = json.loads(path.read_text())
    body["configs"]["arc_easy"]["metadata"] = {"ettin_eval": {"records": [record]}}
    path.write_text(json.dumps(body))
    assert run_cli("import", tmp_path / "lm", "--output-path", tmp_path / "store") == 2
    assert "result key '../../escape' is not allowed" in one_error_line(capsys)
    assert not (tmp_path / "escape.json").exists() and not (tmp_path / "store" / "records").exists()


def test_unknown_formats_and_missing_flags_are_one_line(tmp_path, capsys):
    assert run_cli("import", lm_eval_folder(tmp_path / "lm"), "--output-path", tmp_path / "store") == 0
    store = tmp_path / "store"
    cases = [(["export", store, "--format", "html", "--out", tmp_path / "x"], "invalid choice: 'html'"),
             (["export", store, "--format", "lm-eval"], "add --out DIR"),
             (["export", store, "--format", "lm-eval", "--out", tmp_path / "x", "--tidy", tmp_path / "t.csv"],
              "--tidy and --leaderboard write CSV files"),
             (["export", store], "nothing to export; add --out DIR"),
             (["import", tmp_path / "lm", "--output-path", store, "--format", "csv"], "invalid choice: 'csv'"),
             (["import", tmp_path / "lm", "--output-path", store, "--arch", "both"], "unknown --arch 'both'")]
    for argv, words in cases:
        capsys.readouterr()
        assert cli(*argv) == 2, argv
        assert words in one_error_line(capsys), argv
    assert not (tmp_path / "x").exists()


def test_nothing_exportable_is_one_line_and_writes_nothing(tmp_path, capsys):
    from harness.results import ResultStore

    store = ResultStore(tmp_path / "store")
    store.write({"cell_key": "other-kind", "status": "ok", "model": MODEL, "task": "my_task",
                 "adapter": "my_kind", "metrics": {"score": 0.5}, "headline_metric": "score"})  # no format for it
    assert run_cli("export", tmp_path / "store", "--format", "lm-eval", "--out", tmp_path / "x") == 2
    assert "nothing to export as lm-eval results" in one_error_line(capsys)
    assert not list((tmp_path / "x").rglob("*.json"))
    (tmp_path / "empty").mkdir()
    assert run_cli("export", tmp_path / "empty", "--format", "lm-eval", "--out", tmp_path / "y") == 2
    assert "no finished results" in one_error_line(capsys)


def test_a_format_missing_from_this_install_is_one_line(tmp_path, capsys, monkeypatch):
    from harness import exchange

    monkeypatch.setitem(exchange.EXPORTERS, "mteb", "harness.exchange.not_here")
    assert run_cli("import", lm_eval_folder(tmp_path / "lm"), "--output-path", tmp_path / "store") == 0
    capsys.readouterr()
    assert run_cli("export", tmp_path / "store", "--format", "mteb", "--out", tmp_path / "x") == 2
    assert "--format mteb is not available in this install" in one_error_line(capsys)


def test_csv_stays_the_default_export(tmp_path, capsys):
    assert run_cli("import", lm_eval_folder(tmp_path / "lm"), "--output-path", tmp_path / "store") == 0
    assert run_cli("export", tmp_path / "store", "--out", tmp_path / "out") == 0
    board = (tmp_path / "out" / "leaderboard.csv").read_text()
    assert "ettin-decoder-17m" in board
    assert run_cli("export", tmp_path / "store", "--tidy", tmp_path / "tidy.csv") == 0
    assert "arc_easy" in (tmp_path / "tidy.csv").read_text()


def test_mteb_folders_go_through_the_same_commands(tiny_pair, tmp_path, capsys):
    """export --format mteb, import and report reach harness/exchange/mteb.py through the dispatch."""
    from harness.demo_data import write_retrieval
    from harness.report import build_report

    data = write_retrieval(tmp_path / "data")
    assert run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "retrieval_demo", "--data-dir", data,
                   "--zero-shot", "--quiet", "--output-path", tmp_path / "run") == 0
    assert run_cli("export", tmp_path / "run", "--format", "mteb", "--out", tmp_path / "mteb") == 0
    assert run_cli("import", tmp_path / "mteb", "--output-path", tmp_path / "back") == 0
    (original,), (back,) = records(tmp_path / "run"), records(tmp_path / "back")
    assert back["metrics"][back["headline_metric"]] == original["metrics"][original["headline_metric"]]
    one = build_report([str(tmp_path / "run")], n_boot=0).text()
    capsys.readouterr()
    assert run_cli("report", tmp_path / "mteb", "--bootstrap", 0) == 0  # the MTEB folder, read directly
    shown = capsys.readouterr().out.strip()
    assert shown == one.strip(), (shown, one)
