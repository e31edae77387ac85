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


def load_winogender(data_files: dict[str, str] | None = None, **_ignored):
    """Winogender rows (``winogender_all.tsv`` or ``winogender_gotcha.jsonl``, the hub dataset's
    fields) as a ``datasets.DatasetDict``: ``label`` (0 occupation, 1 participant) as a number."""
    import csv

    import datasets

    if not data_files:
        raise ValueError("a Winogender twin needs dataset_kwargs.data_files (split -> .tsv or .jsonl path)")
    splits = {}
    for split, path in data_files.items():
        path = Path(path) if Path(path).is_absolute() else HERE / path
        if path.suffix == ".tsv":
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
        else:
            rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"{path} holds no rows")
        keep = ("sentid", "sentence", "pronoun", "occupation", "participant", "gender", "target", "label")
        splits[split] = datasets.Dataset.from_list([{**{k: r[k] for k in keep}, "label": int(r["label"])} for r in rows])
    return datasets.DatasetDict(splits)


# lm-eval's tasks/winogender/utils.py filters, for the twins of its per-gender tasks
def filter_male(dataset):
    return dataset.filter(lambda example: example["gender"] == "male")


def filter_female(dataset):
    return dataset.filter(lambda example: example["gender"] == "female")


def filter_neutral(dataset):
    return dataset.filter(lambda example: example["gender"] == "neutral")
