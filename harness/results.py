"""The results store: one JSON record per finished cell, written atomically, and reading them back.

Layout of a results folder::

    records/<cell_key>.json    one record per finished (or failed) cell
    samples/<cell_key>.jsonl   per-example inputs and outputs of that cell
    checkpoints/               warm-start checkpoints (best MNLI model per model)

A record file appears only complete (written to a temporary file, then renamed), so a crash
never leaves half a record and two runs writing into one folder never corrupt each other.
``.locks/<cell_key>.lock`` lets a run claim a cell, so two runs into one folder do not compute
the same cell twice (an flock: the kernel releases it when its holder dies, even by kill -9).
Files are created readable as the user's umask says (results folders are shared).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from harness.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no claims, so two runs into one folder may compute a cell twice
    fcntl = None

SCHEMA_VERSION = 2
REQUIRED = ("cell_key", "status", "model", "task", "metrics")
_NOTICED: set[str] = set()


def notice(text: str) -> None:
    """A one-line notice on stderr, printed once per process however often it is raised."""
    if text not in _NOTICED:
        _NOTICED.add(text)
        sys.stderr.write(f"ettin-eval: {text}\n")


def _read_umask() -> int:
    """The process's umask, read once: toggling it per write races with threads creating files."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def writable_folder(root: str | os.PathLike, flag: str = "--output-path") -> Path:
    """``root`` created if needed and checked for writing; a file in the way or no permission
    is the user's to fix, said in one line."""
    path = Path(root)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"lies under the file '{parent}'"
            raise UserError(f"{flag} '{root}' {where}; choose a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check.", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"cannot write to {flag} '{root}' ({exc.strerror or exc}); choose a folder you can "
                        "write to") from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    def write(fd: int, tmp: str) -> None:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def atomic_write(path: str | os.PathLike, write) -> None:
    """``path`` replaced in one step by what ``write(fd, tmp_path)`` writes into a fresh temporary
    file beside it (a new name no one can have planted, created exclusively: no symlink is followed)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); make the results folder writable") from None
    try:
        write(fd, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ResultStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.samples_dir = self.root / "samples"
        self.checkpoints_dir = self.root / "checkpoints"

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def checkpoint_path(self, key: str) -> Path:
        return self.checkpoints_dir / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        """True when the cell finished successfully (failed cells are run again)."""
        record = self.get(key)
        return record is not None and record.get("status") == "ok"

    def get(self, key: str) -> dict | None:
        path = self.record_path(key)
        if not path.exists():
            return None
        return self._read(path)

    def write(self, record: dict) -> Path | None:
        """Store ``record``; a failed record never replaces a finished one (None: not written)."""
        missing = [f for f in REQUIRED if f not in record]
        if missing:
            raise ValueError(f"record lacks {missing}")
        record = {**record, "schema_version": SCHEMA_VERSION}
        if record["status"] != "ok" and self.has(record["cell_key"]):
            return None
        path = self.record_path(record["cell_key"])
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=_json_default))
        return path

    def unreadable(self, key: str) -> bool:
        """True when the cell's record file exists but is not a record this harness reads
        (truncated, foreign, another schema version): it must be neither trusted nor overwritten."""
        return self.record_path(key).exists() and self.get(key) is None

    def claim(self, key: str, wait: bool = False) -> int | None:
        """An exclusive claim on one cell across processes: an open file descriptor to hand to
        ``release``, or None when another process holds the claim and ``wait`` is False."""
        path = self.root / ".locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def release(claim: int) -> None:
        os.close(claim)  # closing the descriptor drops the flock; the empty lock file stays

    def write_samples(self, key: str, rows: list[dict]) -> str:
        path = self.samples_dir / f"{key}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))
        return str(path.relative_to(self.root))

    def samples_of(self, record: dict) -> Path | None:
        """The record's samples file, only where it lies under ``samples/`` (a record names it; a
        record from elsewhere must not pull another file into a report)."""
        rel = record.get("samples")
        if not isinstance(rel, str) or not rel:
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.samples_dir.resolve()):
            notice(f"skipping the samples of {record.get('cell_key')}: '{rel}' is not under {self.samples_dir}")
            return None
        return path

    def read_samples(self, record: dict) -> list[dict]:
        """The record's per-example rows; a missing or damaged file is a one-line notice and no rows."""
        path = self.samples_of(record)
        if path is None:
            return []
        try:
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            notice(f"skipping the samples {path} ({type(exc).__name__})")
            return []

    def records(self, include_failed: bool = False) -> list[dict]:
        out = []
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.glob("*.json")):
            record = self._read(path)
            if record is not None and (record.get("status") == "ok" or include_failed):
                out.append(record)
        return out

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            notice(f"skipping unreadable record {path} ({type(exc).__name__}); move it away to rerun its cell")
            return None
        if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
            version = record.get("schema_version") if isinstance(record, dict) else None
            notice(f"skipping {path}: schema version {version!r}, this harness reads version {SCHEMA_VERSION}; "
                   "move it away (or rerun with the harness that wrote it) to use its cell")
            return None
        return record


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a record")


def _check_folder(root) -> None:
    if not os.path.isdir(root):
        raise UserError(f"results folder '{root}' does not exist; pass the --output-path of a run")


def load_frame(*roots: str | os.PathLike, include_failed: bool = False):
    """All records of one or more results folders as a DataFrame, one row per record."""
    import pandas as pd

    rows = []
    for root in roots:
        _check_folder(root)
        rows += [{**record, "results_dir": str(root)} for record in ResultStore(root).records(include_failed)]
    return pd.DataFrame(rows)


def tidy_frame(*roots: str | os.PathLike):
    """One row per (record, metric): the long format for export and plotting."""
    import pandas as pd

    rows = []
    for root in roots:
        _check_folder(root)
        for r in ResultStore(root).records():
            hp = r.get("hyperparameters") or {}
            protocol = r.get("protocol") or {}
            base = {k: r.get(k) for k in ("model", "model_name", "loaded_id", "loaded_commit", "revision", "architecture",
                                          "size", "variant", "family", "pair", "parameters", "task", "task_group", "split",
                                          "seed", "n_examples", "wall_time_s", "tokens_processed", "cell_key",
                                          "config_key", "protocol_key")}
            base.update({"protocol": protocol.get("label"), "hyperparameters": json.dumps(hp, sort_keys=True),
                         **{f"hp_{k}": v for k, v in sorted(hp.items())}, "timestamp": r.get("timestamp"),
                         **{f"{k}_version": v for k, v in sorted((r.get("versions") or {}).items())}})
            for metric, value in sorted(r["metrics"].items()):
                rows.append({**base, "metric": metric, "value": value, "headline": metric == r.get("headline_metric")})
    return pd.DataFrame(rows)
