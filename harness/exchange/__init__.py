"""Other tools' formats in and out of a results store: which module writes each export format,
which module reads each foreign folder kind, and the one way imported records enter a store.

Every format module keeps one contract, so this file only dispatches:

    export(records, store, out: Path) -> list[Path]          files written under ``out``; ``store``
                                                              reads a record's samples (read_samples)
    is_<kind>_folder(path) -> bool                            a folder this reader understands
    read_folder(path, **hints) -> list[(record, rows|None)]   records (and their samples rows)

A format whose module is not installed here is refused in one line, so the command line stays the
same while a format is being added.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re

from harness.errors import UserError

# --format name -> module with export(records, store, out)
EXPORTERS = {"lm-eval": "harness.exchange.lm_eval", "mteb": "harness.exchange.mteb",
             "every-eval-ever": "harness.exchange.every_eval_ever"}
# folder kind -> (module, detector, reader); tried in this order when the kind is not named
READERS = {"lm-eval": ("harness.exchange.lm_eval_import", "is_lm_eval_folder", "read_folder"),
           "mteb": ("harness.exchange.mteb", "is_mteb_folder", "read_folder")}
EXPORT_FORMATS = ("csv", *EXPORTERS)
IMPORT_FORMATS = ("auto", *READERS)
SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,255}")


def _function(module_name: str, name: str, what: str):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UserError(f"{what} is not available in this install ({module_name} is missing); update ettin-harness "
                        "or choose another format") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise UserError(f"{what} is not available in this install ({module_name} has no {name}()); update "
                        "ettin-harness or choose another format")
    return fn


class Stores:
    """Samples of records from several results folders, each read from the folder it came from."""

    def __init__(self, roots: list[str]):
        from harness.results import ResultStore

        self.records: list[dict] = []
        self._home: dict[str, ResultStore] = {}
        for root in roots:
            folder = ResultStore(root)
            for record in folder.records():
                if record["cell_key"] not in self._home:
                    self._home[record["cell_key"]] = folder
                    self.records.append(record)

    def read_samples(self, record: dict) -> list[dict]:
        folder = self._home.get(record.get("cell_key"))
        return folder.read_samples(record) if folder is not None else []


def export(fmt: str, roots: list[str], out: str) -> list[str]:
    """Write the finished records of ``roots`` into ``out`` in format ``fmt``; the files written."""
    from pathlib import Path

    if fmt not in EXPORTERS:
        raise UserError(f"unknown export format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    fn = _function(EXPORTERS[fmt], "export", f"--format {fmt}")
    stores = Stores(list(roots))
    if not stores.records:
        raise UserError(f"nothing to export: no finished results in {', '.join(map(str, roots))}; pass the "
                        "--output-path of a run")
    return [str(p) for p in fn(stores.records, stores, Path(out))]


def detect(path: str) -> str | None:
    """The kind of foreign results folder ``path`` is (a READERS name), or None."""
    if not os.path.isdir(path) or os.path.isdir(os.path.join(path, "records")):
        return None  # a results store of this harness is no foreign folder
    for kind, (module_name, detector, _) in READERS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        check = getattr(module, detector, None)
        if check is not None and check(path):
            return kind
    return None


def read(path: str, kind: str = "auto", **hints) -> list[tuple[dict, list | None]]:
    """The records of one foreign results folder, checked: each with a safe key and finite metrics."""
    if not os.path.isdir(path):
        raise UserError(f"'{path}' is not a folder; give an lm-eval --output_path folder or an MTEB results folder")
    if kind == "auto":
        kind = detect(path)
        if kind is None:
            raise UserError(f"'{path}' is not an lm-eval output folder (no results_*.json under it) nor an MTEB "
                            "results folder; give the folder lm-eval's --output_path or MTEB wrote")
    if kind not in READERS:
        raise UserError(f"unknown import format '{kind}'; choose one of {', '.join(IMPORT_FORMATS)}")
    module_name, _, reader = READERS[kind]
    fn = _function(module_name, reader, f"importing {kind} folders")
    accepted = inspect.signature(fn).parameters
    items = fn(path, **{k: v for k, v in hints.items() if k in accepted and v is not None})
    if hints.get("pair"):
        items = [({**record, "pair": hints["pair"]}, rows) for record, rows in items]
    if not items:
        raise UserError(f"nothing to import in '{path}': its {kind} files name no task result; give the folder of "
                        "a finished run")
    for record, _ in items:
        check_record(record, path)
    return items


def check_record(record: dict, where: str) -> None:
    from harness.records import bad_metrics
    from harness.results import REQUIRED
    from harness.tasks import check_task_name

    missing = [f for f in REQUIRED if f not in record]
    if missing:
        raise UserError(f"{where}: a result lacks {', '.join(missing)}; it is not a result this harness reads")
    key = str(record["cell_key"])
    if not SAFE_KEY.fullmatch(key) or ".." in key:
        raise UserError(f"{where}: result key {key!r} is not allowed (it names a file); fix or remove that result")
    check_task_name(str(record["task"]), where)
    bad = bad_metrics(record.get("metrics") or {})
    if bad or record.get("status") != "ok" or not record.get("metrics"):
        what = f"metrics {', '.join(bad)} are not finite numbers" if bad else "it holds no finished score"
        raise UserError(f"{where}: the result of {record['task']} for {record['model']}: {what}; fix the file or "
                        "leave it out")


def store(root: str, items: list[tuple[dict, list | None]]) -> tuple[list[str], list[str]]:
    """Write ``items`` into the results store at ``root`` through its own API: samples first, then
    the record. A key the store already holds (or cannot read) is left alone: (written, kept)."""
    from harness.results import ResultStore

    results = ResultStore(root)
    written, kept = [], []
    for record, rows in items:
        key = record["cell_key"]
        if results.has(key) or results.unreadable(key):
            kept.append(key)
            continue
        record = {k: v for k, v in record.items() if k != "results_dir"}
        record["samples"] = results.write_samples(key, rows) if rows else None
        results.write(record)
        written.append(key)
    return written, kept
