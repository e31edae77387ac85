"""The leaderboard CSV: documented, stable columns; re-export updates rows instead of duplicating them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from test_report_frame import put

from harness.cli import main
from harness.models import PARAMETERS
from harness.report import LEADERBOARD_COLUMNS, write_leaderboard
from harness.report.frame import RETRIEVAL_TASKS

README = Path(__file__).resolve().parents[1] / "README.md"


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_row_per_model_with_the_documented_columns(tmp_path, capsys):
    res = tmp_path / "res"
    put(res, "encoder", "17m", "sst2", 0.90, seed=0, timestamp="2025-07-01T10:00:00+00:00")
    put(res, "encoder", "17m", "sst2", 0.92, seed=1, timestamp="2025-07-03T10:00:00+00:00")
    put(res, "encoder", "17m", "mnli", 0.795, seed=0)
    put(res, "decoder", "17m", "piqa", 0.5771)
    board = tmp_path / "out" / "board.csv"
    assert main(["export", str(res), "--leaderboard", str(board)]) == 0
    assert "2 models" in capsys.readouterr().out
    rows = read(board)
    with open(board) as f:
        header = f.readline().strip().split(",")
    assert header == list(LEADERBOARD_COLUMNS)
    enc = next(r for r in rows if r["architecture"] == "encoder")
    assert enc["model"] == "jhu-clsp/ettin-encoder-17m" and enc["revision"] == ""
    assert enc["parameters"] == str(PARAMETERS["17m"]) and enc["size"] == "17m" and enc["variant"] == "encoder"
    assert float(enc["sst2"]) == pytest.approx(91.0) and float(enc["mnli"]) == pytest.approx(79.5)
    assert enc["seeds"] == "1"  # the fewest seeds behind any score (mnli has one)
    assert enc["date"] == "2025-07-03" and enc["harness_version"] == "0.1.0"
    assert enc["glue_avg"] == "" and enc["cola"] == ""
    dec = next(r for r in rows if r["architecture"] == "decoder")
    assert float(dec["piqa"]) == pytest.approx(57.71)


def test_reexport_updates_rows_and_keeps_others(tmp_path):
    board = tmp_path / "board.csv"
    put(tmp_path / "a", "encoder", "17m", "sst2", 0.90)
    put(tmp_path / "b", "decoder", "150m", "sst2", 0.80)
    write_leaderboard([tmp_path / "a"], board)
    write_leaderboard([tmp_path / "b"], board)  # another run's folder: its model is added
    assert [r["model"] for r in read(board)] == ["jhu-clsp/ettin-encoder-17m", "jhu-clsp/ettin-decoder-150m"]
    put(tmp_path / "a", "encoder", "17m", "sst2", 0.94, seed=1)  # more runs of a model already listed
    put(tmp_path / "a", "encoder", "17m", "rte", 0.70)
    put(tmp_path / "a", "encoder", "17m", "sst2", 0.50, revision="step599525")  # another checkpoint: a new row
    put(tmp_path / "a", "encoder", "17m", "my_task", 0.40)  # a task outside the fixed schema: appended column
    write_leaderboard([tmp_path / "a"], board)
    write_leaderboard([tmp_path / "a"], board)
    rows = read(board)
    keys = [(r["model"], r["revision"]) for r in rows]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 3
    enc = next(r for r in rows if r["model"].endswith("encoder-17m") and r["revision"] == "")
    assert float(enc["sst2"]) == pytest.approx(92.0) and float(enc["rte"]) == pytest.approx(70.0)
    dec = next(r for r in rows if r["model"].endswith("decoder-150m"))
    assert float(dec["sst2"]) == pytest.approx(80.0)
    with open(board) as f:
        header = f.readline().strip().split(",")
    assert header == list(LEADERBOARD_COLUMNS) + ["my_task"]


def test_a_csv_that_is_not_a_leaderboard_is_refused(tmp_path, capsys):
    put(tmp_path / "res", "encoder", "17m", "sst2", 0.9)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["export", str(tmp_path / "res"), "--leaderboard", str(other)]) == 2
    assert "not a leaderboard CSV" in capsys.readouterr().err
    assert other.read_text() == "a,b\n1,2\n"


def test_readme_documents_every_leaderboard_column():
    text = README.read_text()
    section = text.split("<!-- section: reports -->")[1].split("<!-- section:")[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`", section, flags=re.M))
    fixed = [c for c in LEADERBOARD_COLUMNS if c not in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli",
                                                          "rte", "wnli", "arc_challenge", "hellaswag",
                                                          "lambada_openai", "openbookqa", "piqa", "sciq",
                                                          "social_iqa", "triviaqa", "winogrande", "wsc273")
             and c not in RETRIEVAL_TASKS]
    assert set(fixed) <= documented
    for task in ("cola", "wnli", "arc_challenge", "wsc273", *RETRIEVAL_TASKS):
        assert f"`{task}`" in section


def test_a_smoke_run_of_another_protocol_keeps_the_paper_row_and_the_write_is_atomic(tmp_path, monkeypatch):
    import harness.report.leaderboard as leaderboard

    board = tmp_path / "board.csv"
    put(tmp_path / "paper", "encoder", "17m", "sst2", 0.90)
    write_leaderboard([tmp_path / "paper"], board)
    put(tmp_path / "smoke", "encoder", "17m", "sst2", 0.50, limit=48)  # a --limit run: another protocol
    write_leaderboard([tmp_path / "smoke"], board)
    rows = read(board)
    assert len(rows) == 2 and len({r["protocol"] for r in rows}) == 2
    assert sorted(float(r["sst2"]) for r in rows) == [50.0, 90.0]

    before = board.read_text()
    monkeypatch.setattr(leaderboard.pd.DataFrame, "to_csv", lambda *a, **k: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        write_leaderboard([tmp_path / "paper"], board)
    assert board.read_text() == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
