"""The leaderboard CSV: one row per (model, revision), a stable column schema (README, "Reports"),
updated by re-exporting: a row of the same model, revision and protocol is replaced, others are kept;
the file is replaced in one step."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.report.frame import (GENERATIVE_TASKS, GLUE_TASKS, RETRIEVAL_TASKS, SIZE_ORDER, best_scores, load_results,
                                  model_scores)
from harness.results import atomic_write_text

KEY = ["model", "revision", "protocol"]
# The fixed schema, in order; columns of tasks outside GLUE, Table 4 and retrieval follow, sorted by name.
COLUMNS = ["model", "model_name", "revision", "protocol", "architecture", "variant", "size", "parameters", "seeds",
           "harness_version", "date", "glue_avg", "gen_avg", *GLUE_TASKS, *GENERATIVE_TASKS, "ret_avg", *RETRIEVAL_TASKS]
TEXT_COLUMNS = ["model", "model_name", "revision", "protocol", "architecture", "variant", "size", "harness_version",
                "date"]


def leaderboard_frame(frame: pd.DataFrame, best: pd.DataFrame | None = None) -> pd.DataFrame:
    """The leaderboard rows of a headline_frame (scores x100, two decimals)."""
    best = best_scores(frame) if best is None else best
    scores = model_scores(best).drop(columns=["family", "row", "pair"])
    frame = frame.assign(_rev=frame["revision"].fillna("").astype(str))
    latest = frame.sort_values("timestamp").groupby(["model", "_rev"]).tail(1)
    stamp = {(m, r): (str(t or "")[:10], (v or {}).get("harness") if isinstance(v, dict) else None)
             for m, r, t, v in zip(latest["model"], latest["_rev"], latest["timestamp"], latest["versions"])}
    keys = zip(scores["model"], scores["revision"].fillna("").astype(str))
    scores["date"], scores["harness_version"] = zip(*(stamp.get(k, ("", None)) for k in keys))
    return _ordered(scores)


def _ordered(board: pd.DataFrame) -> pd.DataFrame:
    for col in COLUMNS:
        if col not in board:
            board[col] = None
    extra = sorted(c for c in board.columns if c not in COLUMNS and not c.startswith("_"))
    board = board[COLUMNS + extra].copy()
    for col in TEXT_COLUMNS:
        board[col] = board[col].astype(object).where(board[col].notna(), "").astype(str)
    numeric = [c for c in board.columns if c not in TEXT_COLUMNS]
    board[numeric] = board[numeric].apply(pd.to_numeric, errors="coerce")
    score_cols = [c for c in numeric if c not in ("parameters", "seeds")]
    board[score_cols] = board[score_cols].round(2)
    board["parameters"] = board["parameters"].astype("Int64")
    board["seeds"] = board["seeds"].astype("Int64")
    rank = {s: i for i, s in enumerate(SIZE_ORDER)}
    order = sorted(board.index, key=lambda i: (rank.get(board.at[i, "size"], 99), board.at[i, "variant"],
                                               board.at[i, "model"], board.at[i, "revision"]))
    return board.loc[order].reset_index(drop=True)


def read_leaderboard(path: str | os.PathLike) -> pd.DataFrame:
    board = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
    missing = [c for c in KEY if c not in board]
    if missing:
        raise UserError(f"'{path}' is not a leaderboard CSV (no column {', '.join(missing)}); "
                        "choose a new file or the one an earlier export wrote")
    return board


def write_leaderboard(roots, csv_path: str | os.PathLike) -> pd.DataFrame:
    """Write (or update) the leaderboard at ``csv_path`` from results folder(s); returns it."""
    frame = load_results(*(roots if isinstance(roots, (list, tuple)) else [roots]))
    new = leaderboard_frame(frame)
    path = Path(csv_path)
    if path.exists():
        old = _ordered(read_leaderboard(path))
        fresh = set(_keys(new))  # a row is replaced only by one of the same model, revision and protocol
        old = old[[k not in fresh for k in _keys(old)]]
        new = _ordered(pd.concat([old, new], ignore_index=True)) if not old.empty else new
    atomic_write_text(path, new.to_csv(index=False))
    return new


def _keys(board: pd.DataFrame) -> list[tuple]:
    return list(zip(*(board[c].fillna("").astype(str) for c in KEY)))
