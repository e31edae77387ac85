"""Data loading for the local twins of lm-eval tasks in this folder.

A twin keeps its hub task's prompt, choices, target and metrics and reads JSONL files with the
hub dataset's field names instead of the Hugging Face hub. lm-eval calls ``load_json`` through the
twin's ``custom_dataset``; relative ``data_files`` are read from this folder, so the twins also
work with plain ``lm_eval --include_path tasks/generative``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_json(data_files: dict[str, str] | None = None, **_ignored):
    """A ``datasets.DatasetDict`` with one split per entry of ``data_files`` (split -> path)."""
    import datasets

    if not data_files:
        raise ValueError("a local twin needs dataset_kwargs.data_files (split -> JSONL path)")
    splits = {}
    for split, path in data_files.items():
        path = Path(path) if Path(path).is_absolute() else HERE / path
        rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"{path} holds no rows")
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)
