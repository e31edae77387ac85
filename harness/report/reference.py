"""The Ettin paper's published numbers (results/reference/ettin_paper.csv) and measured minus published."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.bundled import reference_csv
from harness.errors import UserError
from harness.report.frame import GENERATIVE_TASKS, GLUE_TASKS, SIZE_ORDER, display, model_scores

COLUMNS = ["row", "model", "architecture", "task", "protocol", "measured", "published", "delta", "approximate",
           "source"]


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """The published numbers, one row per (model, task), scores x100; empty when the file is absent."""
    path = Path(path) if path else reference_csv()
    if not path.exists():
        raise UserError(f"the paper's reference numbers are missing ({path}); reinstall ettin-harness")
    ref = pd.read_csv(path, dtype={"size": str})
    ref["approximate"] = ref["approximate"].astype(str).str.lower().eq("true")
    return ref


def versus_published(best: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Measured minus published for every (model, task) both have, tasks and the averages
    (glue_avg, gen_avg). Only records of the published checkpoints (no revision) are compared."""
    reference = load_reference() if reference is None else reference
    scores = model_scores(best)
    if scores.empty or reference.empty:
        return pd.DataFrame(columns=COLUMNS)
    scores = scores[scores["revision"].isna() | scores["revision"].isin(["", "main"])]
    rows = []
    for model_row in scores.to_dict("records"):
        for ref in reference[reference["model"] == model_row["model"]].to_dict("records"):
            measured = model_row.get(ref["task"])
            if measured is None or pd.isna(measured):
                continue
            rows.append({"row": model_row["row"], "model": model_row["model"], "architecture": ref["architecture"],
                         "task": ref["task"], "protocol": model_row["protocol"], "measured": float(measured), "published": float(ref["value"]),
                         "delta": float(measured) - float(ref["value"]), "approximate": bool(ref["approximate"]),
                         "source": ref["source"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def delta_table(vs: pd.DataFrame) -> pd.DataFrame:
    """Measured minus published as a grid: rows (size, architecture), columns tasks, cells like
    '-0.8' ('~' where the published value was read off a figure)."""
    if vs.empty:
        return pd.DataFrame()
    cells = vs.assign(cell=[f"{d:+.1f}{'~' if a else ''}" for d, a in zip(vs["delta"], vs["approximate"])])
    grid = cells.pivot_table(index=["row", "architecture"], columns="task", values="cell", aggfunc="first")
    tasks = [t for t in [*GLUE_TASKS, "glue_avg", *GENERATIVE_TASKS, "gen_avg"] if t in grid.columns]
    grid = grid[tasks + sorted(set(grid.columns) - set(tasks))].fillna("")
    rank = {s: i for i, s in enumerate(SIZE_ORDER)}
    grid = grid.loc[sorted(grid.index, key=lambda k: (rank.get(k[0].split(" ")[0], 99), k[0], k[1] != "encoder"))]
    grid.columns = [display(t) for t in grid.columns]
    return grid
