"""Where the data shipped with the harness lives: task YAML and the paper's reference numbers.

In a source checkout they are the top-level ``tasks/`` and ``results/reference/`` folders; an
installed wheel carries the same files under ``harness/_bundled/`` (see pyproject.toml). A
missing folder is an error, never an empty list of tasks.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
FOLDERS = {"tasks": ("_bundled/tasks", "tasks"), "reference": ("_bundled/reference", "results/reference")}


def folder(kind: str) -> Path:
    """The folder of ``kind`` ('tasks' or 'reference'), installed copy first."""
    installed, checkout = FOLDERS[kind]
    for path in (PACKAGE / installed, CHECKOUT / checkout):
        if path.is_dir():
            return path
    raise UserError(f"the harness's {kind} folder is missing (looked in {PACKAGE / installed} and "
                    f"{CHECKOUT / checkout}); reinstall the package: pip install --force-reinstall ettin-harness")


def tasks_dir() -> Path:
    return folder("tasks")


def reference_csv() -> Path:
    return folder("reference") / "ettin_paper.csv"
