"""The results store: one JSON record per finished cell, written atomically.

Layout of a results folder::

    records/<cell_key>.json    one record per finished (or failed) cell
    samples/<cell_key>.jsonl   per-example predictions of that cell (for significance tests)
    checkpoints/               warm-start checkpoints (best MNLI model per model)

A record file appears only complete (written to a temporary file, then renamed), so a crash
never leaves half a record and two runs writing into one folder never corrupt each other.
``.locks/<cell_key>.lock`` lets a run claim a cell, so two runs into one folder do not compute
the same cell twice (an flock: the kernel releases it when its holder dies, even by kill -9).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no claims, so two runs into one folder may compute a cell twice
    fcntl = None

SCHEMA_VERSION = 1

# The fields every record carries (see README, "Result records").
RECORD_FIELDS = (
    "schema_version", "cell_key", "status", "model", "model_name", "revision", "architecture",
    "size", "variant", "family", "parameters", "task", "task_group", "adapter", "split",
    "metrics", "headline_metric", "n_examples", "seed", "hyperparameters", "wall_time_s",
    "tokens_processed", "versions", "timestamp", "samples", "error",
)


def library_versions() -> dict:
    import torch
    import transformers

    from harness import __version__

    versions = {
        "harness": __version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    lm_eval = sys.modules.get("lm_eval")
    if lm_eval is not None:
        versions["lm_eval"] = getattr(lm_eval, "__version__", "unknown")
    return versions


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CorruptRecord(UserWarning):
    """A file in records/ that is not a readable record of a known schema version."""


class ResultStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.samples_dir = self.root / "samples"
        self.checkpoints_dir = self.root / "checkpoints"

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        """True when the cell finished successfully (failed cells are run again)."""
        record = self.get(key)
        return record is not None and record.get("status") == "ok"

    def get(self, key: str) -> dict | None:
        path = self.record_path(key)
        if not path.exists():
            return None
        return self._read(path)

    def write(self, record: dict) -> Path:
        missing = [f for f in ("cell_key", "status", "model", "task", "metrics") if f not in record]
        if missing:
            raise ValueError(f"record lacks {missing}")
        record = {"schema_version": SCHEMA_VERSION, **record}
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def read_samples(self, record: dict) -> list[dict]:
        rel = record.get("samples")
        if not rel:
            return []
        with open(self.root / rel) as f:
            return [json.loads(line) for line in f if line.strip()]

    def records(self, include_failed: bool = False) -> list[dict]:
        out = []
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.glob("*.json")):
            record = self._read(path)
            if record is None:
                continue
            if record.get("status") == "ok" or include_failed:
                out.append(record)
        return out

    def _read(self, path: Path) -> dict | None:
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            warnings.warn(f"skipping unreadable record {path}: {exc}", CorruptRecord, stacklevel=2)
            return None
        if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
            version = record.get("schema_version") if isinstance(record, dict) else None
            warnings.warn(
                f"skipping {path}: schema version {version!r}, this harness reads version {SCHEMA_VERSION}",
                CorruptRecord,
                stacklevel=2,
            )
            return None
        return record


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a record")


def load_frame(*roots: str | os.PathLike, include_failed: bool = False):
    """All records of one or more results folders as a DataFrame, one row per record."""
    import pandas as pd

    rows = []
    for root in roots:
        for record in ResultStore(root).records(include_failed=include_failed):
            rows.append({**record, "results_dir": str(root)})
    columns = list(RECORD_FIELDS) + ["results_dir"]
    return pd.DataFrame(rows, columns=columns) if not rows else pd.DataFrame(rows)


def tidy_frame(*roots: str | os.PathLike):
    """One row per (record, metric): the long format for export and plotting."""
    import pandas as pd

    rows = []
    for root in roots:
        for r in ResultStore(root).records():
            hp = r.get("hyperparameters") or {}
            base = {
                "model": r["model"],
                "model_name": r.get("model_name"),
                "revision": r.get("revision"),
                "architecture": r.get("architecture"),
                "size": r.get("size"),
                "variant": r.get("variant"),
                "family": r.get("family"),
                "parameters": r.get("parameters"),
                "task": r["task"],
                "task_group": r.get("task_group"),
                "split": r.get("split"),
                "seed": r.get("seed"),
                "n_examples": r.get("n_examples"),
                "wall_time_s": r.get("wall_time_s"),
                "tokens_processed": r.get("tokens_processed"),
                "cell_key": r["cell_key"],
                "hyperparameters": json.dumps(hp, sort_keys=True),
                **{f"hp_{k}": v for k, v in sorted(hp.items())},
                "timestamp": r.get("timestamp"),
                **{f"{k}_version": v for k, v in sorted((r.get("versions") or {}).items())},
            }
            for metric, value in sorted(r["metrics"].items()):
                rows.append({**base, "metric": metric, "value": value,
                             "headline": metric == r.get("headline_metric")})
    return pd.DataFrame(rows)
