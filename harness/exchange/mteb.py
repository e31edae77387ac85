"""MTEB result folders, both ways: the harness's retrieval records exported in the layout MTEB's
``ResultCache`` writes and reads (``results/<model>/<revision>/<Task>.json`` with a
``model_meta.json``), and folders MTEB wrote elsewhere imported as records (protocol "imported")
for the report to show beside the harness's own cells.

Export: a zero-shot cell is the model as it is, in the revision folder; a fine-tuned cell is another
model of its own, so it lives in MTEB's ``experiments/<name>/`` folder beside it, its
``model_meta.json`` naming the training data in ``training_datasets`` (the task's own train split,
or MS MARCO) and the seed and configuration in ``experiment_kwargs``. Two files MTEB does not read
travel with each task file (neither ends in ``.json``, the pattern MTEB's reader globs):
``harness_records.jsonl`` (the whole record: seeds, protocol, versions, dataset identity) and
``<Task>.samples.jsonl`` (the per-query scores).

Import reads with MTEB's own ``ResultCache``. A result whose scores are still those of the record
the harness exported gives that record back (same key, protocol and samples), so a round trip
changes nothing in a report; any other result becomes a record of protocol "imported" carrying
MTEB's version, the model's name and revision and the dataset's revision. MTEB's files hold
aggregate scores only: such a record has no per-query scores and takes no part in paired tests.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from harness.configs import digest
from harness.errors import UserError, first_line
from harness.results import atomic_write_text, writable_folder

SIDECAR = "harness_records.jsonl"
RUN_SETTINGS = "run_settings.jsonl"  # MTEB's: library versions per task
NO_REVISION = "no_revision_available"  # MTEB's own placeholder
LOCAL_PREFIX = "harness-"  # the MTEB name of a task the harness read from a local folder (mteb_bridge)
NOT_SCORES = ("hf_subset", "languages", "mteb_version")


# --- export -----------------------------------------------------------------------------------

def export(records: list[dict], store, out: Path) -> list[Path]:
    """The retrieval records among ``records`` as an MTEB results folder under ``out``; the written paths."""
    import mteb

    chosen = [r for r in records if r.get("status") == "ok" and r.get("adapter") == "retrieval"]
    if not chosen:
        raise UserError("no retrieval records to export: MTEB result folders hold retrieval scores only; pass a "
                        "results folder with retrieval cells, or use --format every-eval-ever for the others")
    out = writable_folder(out, "--out")
    cache = mteb.ResultCache(out)
    kwargs = _experiments(chosen)
    written: list[Path] = []
    for record in chosen:
        meta = model_meta(record, kwargs[record["cell_key"]])
        result = task_result(record)
        path = cache.get_task_result_path(task_name=result.task_name, model_name=meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = result.model_dump(mode="json")
        body["date"] = result.date.timestamp() if result.date else None
        atomic_write_text(path, json.dumps(body, indent=2))
        atomic_write_text(path.parent / "model_meta.json", json.dumps(meta.to_dict(), indent=4, default=str))
        _merge_lines(path.parent / RUN_SETTINGS, "task", [_run_settings(record, result)])
        _merge_lines(path.parent / SIDECAR, "cell_key", [record])
        rows = store.read_samples(record) if store is not None else []
        if rows:
            samples = path.with_name(f"{result.task_name}.samples.jsonl")
            atomic_write_text(samples, "".join(json.dumps(r) + "\n" for r in rows))
            written.append(samples)
        written += [path, path.parent / "model_meta.json"]
    return list(dict.fromkeys(written))


def _experiments(records: list[dict]) -> dict[str, dict]:
    """cell key -> MTEB experiment kwargs: none for a zero-shot cell, protocol, seed and configuration
    for a fine-tuned one; records that would still share one file get their cell key added."""
    kwargs = {r["cell_key"]: ({} if _protocol(r) == "zero-shot" else
                              {"protocol": _protocol(r), "seed": r.get("seed"), "config": r.get("config_key")})
              for r in records}

    def place(r):
        return (mteb_model_name(r), resolved_revision(r), digest(kwargs[r["cell_key"]]), mteb_task_name(r),
                r.get("split"))

    seen: dict = {}
    for r in records:
        seen.setdefault(place(r), []).append(r["cell_key"])
    for keys in seen.values():
        if len(keys) > 1:
            for key in keys:
                kwargs[key] = {**kwargs[key], "cell": key}
    return kwargs


def _protocol(record: dict) -> str:
    return str((record.get("retrieval") or {}).get("protocol") or (record.get("hyperparameters") or {}).get(
        "protocol") or "zero-shot")


def mteb_model_name(record: dict) -> str:
    """MTEB's ``org/name``: a hub id as it is, a local folder as ``local/<its display name>``."""
    model = str(record.get("model") or "")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not Path(model).exists():
        return model
    return f"local/{_safe(str(record.get('model_name') or Path(model).name or 'model'))}"


def _safe(text: str) -> str:
    """``text`` as one file or folder name (letters, digits, '.', '-', '_')."""
    return re.sub(r"[^\w.-]+", "_", text)


def resolved_revision(record: dict) -> str:
    return str(record.get("loaded_commit") or record.get("revision") or NO_REVISION)


def mteb_task_name(record: dict) -> str:
    """MTEB's name for the task the record was scored on: the hub task's, or the local task's
    (``harness-<task>``, as ``mteb_bridge.local_task`` names it)."""
    return (record.get("retrieval") or {}).get("mteb_task") or f"{LOCAL_PREFIX}{record['task']}"


@functools.lru_cache(maxsize=1)
def _shipped_specs() -> dict:
    from harness.retrieval.spec import load_retrieval_tasks

    return load_retrieval_tasks()


def _shipped_mteb_names() -> dict[str, str]:
    """harness task name -> MTEB task name, for the shipped retrieval tasks."""
    return {name: spec.mteb_task for name, spec in _shipped_specs().items() if spec.mteb_task}


def training_datasets(record: dict) -> set[str] | None:
    """The MTEB datasets a fine-tuned cell trained on (None for zero-shot: what the base model saw
    before is not the harness's to declare)."""
    if _protocol(record) == "zero-shot":
        return None
    data = str((record.get("training") or {}).get("data") or (record.get("retrieval") or {}).get("training_data"))
    if "msmarco" in data.lower():
        return {"MSMARCO"}
    return {_shipped_mteb_names().get(record["task"]) or mteb_task_name(record)}


def model_meta(record: dict, experiment: dict):
    from mteb.models.model_meta import ModelMeta

    info = record.get("retrieval") or {}
    training = record.get("training") or {}
    return ModelMeta(
        loader=None, name=mteb_model_name(record), revision=resolved_revision(record), release_date=None,
        languages=None, n_parameters=record.get("parameters"), memory_usage_mb=None,
        max_tokens=info.get("max_length"), embed_dim=None, license=None, open_weights=True,
        public_training_code=None, public_training_data=training.get("data"),
        framework=["Sentence Transformers", "PyTorch"], similarity_fn_name="cosine", use_instructions=False,
        training_datasets=training_datasets(record), experiment_kwargs=experiment or None)


def task_result(record: dict):
    from mteb.results import TaskResult

    metrics = {k: float(v) for k, v in record["metrics"].items()
               if isinstance(v, (int, float)) and math.isfinite(v)}
    main = metrics.get("main_score", metrics.get(record.get("headline_metric")))
    if main is None:
        raise UserError(f"record {record['cell_key']} has no main score; rerun its cell")
    name = mteb_task_name(record)
    scores = {**metrics, "main_score": main, "hf_subset": "default", "languages": _languages(name)}
    info = record.get("retrieval") or {}
    when = record.get("timestamp")
    return TaskResult(
        dataset_revision=_dataset_revision(record), task_name=name,
        mteb_version=(record.get("versions") or {}).get("mteb"), scores={record.get("split") or "test": [scores]},
        evaluation_time=info.get("scoring_time_s", record.get("wall_time_s")), kg_co2_emissions=None,
        date=datetime.fromisoformat(when) if when else None)


def _dataset_revision(record: dict) -> str:
    dataset = record.get("dataset") or {}
    if dataset:
        return str(dataset.get("revision") or dataset.get("commit") or "unknown")
    fingerprint = (record.get("protocol") or {}).get("data_fingerprint")
    return f"local-{fingerprint}" if fingerprint else "local"


def _languages(task_name: str) -> list[str]:
    scripts = getattr(_metadata(task_name), "hf_subsets_to_langscripts", None) or {}
    return list(scripts.get("default") or next(iter(scripts.values()), None) or ["eng-Latn"])


def _run_settings(record: dict, result) -> dict:
    versions = record.get("versions") or {}
    return {"task": result.task_name, "splits": list(result.scores), "encode_kwargs": {}, "subsets": ["default"],
            "version": {"mteb": versions.get("mteb"), "torch": versions.get("torch"),
                        "sentence-transformers": versions.get("sentence_transformers"), "flash-attn": None,
                        "transformers": versions.get("transformers")}}


def _merge_lines(path: Path, key: str, rows: list[dict]) -> None:
    """JSON lines at ``path`` with ``rows`` replacing those of the same ``key``."""
    kept = {row[key]: row for row in _read_lines(path) if isinstance(row, dict) and key in row}
    kept.update({row[key]: row for row in rows})
    atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in kept.values()))


def _read_lines(path: Path) -> list:
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not JSON lines ({first_line(exc)}); move it away and export again") from None


# --- import -----------------------------------------------------------------------------------

def _cache_root(path) -> Path | None:
    """The ResultCache folder of ``path``: ``path`` itself when it holds ``results/``, or its parent
    when ``path`` is that ``results/`` folder; None when neither holds an MTEB result file."""
    path = Path(path)
    for root in (path, path.parent if path.name == "results" else None):
        if root is not None and (root / "results").is_dir() and _result_files(root / "results"):
            return root
    return None


def _result_files(results: Path) -> list[Path]:
    files = [*results.glob("*/*/*.json"), *results.glob("*/*/experiments/*/*.json")]
    return sorted(p for p in files if p.name != "model_meta.json")


def is_mteb_folder(path) -> bool:
    """True when ``path`` is an MTEB results folder (a ResultCache folder or its ``results/``)."""
    return _cache_root(path) is not None


def read_folder(path, arch: str | None = None) -> list[tuple[dict, list[dict] | None]]:
    """Every (task, split) result in the MTEB folder ``path`` as a harness record (protocol "imported")
    with its per-query rows where the folder came from the harness (None otherwise). ``arch``: the
    architecture of a model from elsewhere (MTEB's files do not say; else the Ettin registry's, else
    "unknown")."""
    import mteb
    from mteb.results import TaskResult

    root = _cache_root(path)
    if root is None:
        raise UserError(f"'{path}' is not an MTEB results folder (no results/<model>/<revision>/<Task>.json in it); "
                        "pass the folder given to mteb.ResultCache (or its results/ folder)")
    for file in _result_files(root / "results"):  # mteb's own reader; a bad file is named, not a traceback
        try:
            TaskResult.from_disk(file)
        except Exception as exc:
            raise UserError(f"{file} is not an MTEB task result ({first_line(exc)}); move it out of {root} "
                            "or fix it") from None
    cache = mteb.ResultCache(root)
    loaded = cache.load_results(require_model_meta=False, include_remote=False, load_experiments="match_name")
    out = []
    for model in loaded.model_results:
        for result in model.task_results:
            file = cache.get_task_result_path(task_name=result.task_name, model_name=model.model_name,
                                              model_revision=model.model_revision,
                                              experiment_name=model.experiment_name)
            for split in result.scores:
                out.append(_imported(result, split, model, file, arch))
    if not out:
        raise UserError(f"'{path}' holds no MTEB scores; pass a folder MTEB wrote results into")
    return out


def _imported(result, split: str, model, file: Path, arch: str | None) -> tuple[dict, list[dict] | None]:
    """A harness folder's own record (its scores unchanged in the MTEB file) with its per-query rows;
    any other result as a record of protocol "imported", without rows."""
    metrics = _subset_mean(result.scores[split])
    origin = _origin(file.parent, result.task_name, split)
    if origin and _same_scores(origin.get("metrics") or {}, metrics):
        samples = file.with_name(f"{result.task_name}.samples.jsonl")
        record = {k: v for k, v in origin.items() if k != "results_dir"}
        return {**record, "imported": {"from": "mteb", "file": str(file)}}, _read_lines(samples) or None
    return _foreign(result, split, model, file, metrics, arch), None


def _same_scores(stored: dict, read: dict) -> bool:
    finite = {k: v for k, v in stored.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return finite.keys() == read.keys() and all(math.isclose(finite[k], read[k], abs_tol=1e-6) for k in read)


def _foreign(result, split: str, model, file: Path, metrics: dict, arch: str | None) -> dict:
    from harness import __version__
    from harness.configs import PROTOCOL_VERSION
    from harness.records import now_iso
    from harness.suite import suite

    settings = next((s for s in reversed(_read_lines(file.parent / RUN_SETTINGS))
                     if isinstance(s, dict) and s.get("task") == result.task_name), {})
    library = {k.replace("-", "_"): v for k, v in (settings.get("version") or {}).items() if v}
    mteb_version = result.mteb_version or library.get("mteb")
    meta = model.model_meta
    experiment = dict(getattr(meta, "experiment_kwargs", None) or {})
    task = _harness_task(result.task_name)
    revision = None if model.model_revision == NO_REVISION else model.model_revision
    identity = {"model": model.model_name, "revision": model.model_revision, "experiment": model.experiment_name,
                "task": result.task_name, "split": split, "dataset_revision": result.dataset_revision}
    config = digest({"experiment": {k: v for k, v in experiment.items() if k not in ("seed", "cell")}})
    registry = _registry_spec(model.model_name) or {}
    training = sorted(getattr(meta, "training_datasets", None) or [])
    return {
        "family": "other", **{k: v for k, v in registry.items() if k != "name"},
        "cell_key": f"imported__{_safe(task)}__{digest(identity)}", "config_key": config,
        "protocol_key": digest({"imported": "mteb", "version": mteb_version}),
        "status": "ok", "adapter": "retrieval", "model": model.model_name,
        "model_name": registry.get("name") or model.model_name, "architecture": arch or registry.get("architecture", "unknown"),
        "revision": revision, "loaded_commit": revision if re.fullmatch(r"[0-9a-f]{40}", str(revision)) else None,
        "task": task, "task_group": suite().group_of(task) or "retrieval", "split": split, "metrics": metrics,
        "headline_metric": _headline(task, metrics), "samples": None, "error": None, "seed": experiment.get("seed"),
        "hyperparameters": {"experiment_kwargs": experiment or None},
        "protocol": {"label": "imported", "version": PROTOCOL_VERSION, "source": "mteb",
                     "mteb_version": mteb_version, "experiment": model.experiment_name},
        "dataset": {"id": getattr(_metadata(result.task_name), "dataset", {}).get("path"), "mteb_task": result.task_name,
                    "revision": result.dataset_revision},
        "retrieval": {"protocol": "imported", "mteb_task": result.task_name, "split": split,
                      "training_datasets": training or None, "undefined_scores": _undefined(result.scores[split])},
        "n_examples": None, "wall_time_s": result.evaluation_time, "tokens_processed": 0,
        "versions": {**library, "mteb": mteb_version},
        "imported": {"from": "mteb", "file": str(file), "at": now_iso(), "harness": __version__},
        "timestamp": datetime.fromtimestamp(result.date.timestamp(), timezone.utc).isoformat(timespec="seconds")
        if result.date else None,
    }


def _subset_mean(entries: list[dict]) -> dict:
    """One number per score: the only subset's, or the mean over subsets (as the harness scores them)."""
    names = [k for k, v in entries[0].items() if k not in NOT_SCORES and isinstance(v, (int, float))
             and not isinstance(v, bool)]
    out = {}
    for name in names:
        values = [e.get(name) for e in entries]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            out[name] = float(sum(values) / len(values))
    return out


def _undefined(entries: list[dict]) -> list[str]:
    """Scores MTEB wrote as NaN (e.g. a correlation over queries that do not vary): named, not stored."""
    return sorted({k for e in entries for k, v in e.items() if isinstance(v, float) and not math.isfinite(v)})


def _origin(folder: Path, task_name: str, split: str) -> dict:
    """The harness record a folder's ``harness_records.jsonl`` keeps for this task file, if any."""
    for row in _read_lines(folder / SIDECAR):
        if isinstance(row, dict) and row.get("task") and mteb_task_name(row) == task_name and row.get("split") == split:
            return row
    return {}


def _harness_task(mteb_name: str) -> str:
    if mteb_name.startswith(LOCAL_PREFIX):
        return mteb_name[len(LOCAL_PREFIX):]
    return {v: k for k, v in _shipped_mteb_names().items()}.get(mteb_name, mteb_name)


def _headline(task: str, metrics: dict) -> str:
    spec = _shipped_specs().get(task)
    return spec.headline_metric if spec and spec.headline_metric in metrics else "main_score"


def _metadata(mteb_name: str):
    """MTEB's metadata of the task ``mteb_name`` (None for a local task or one this MTEB lacks)."""
    if mteb_name.startswith(LOCAL_PREFIX):
        return None
    try:
        import mteb

        return mteb.get_task(mteb_name).metadata
    except Exception:
        return None


def _registry_spec(model_id: str) -> dict | None:
    """The Ettin registry's description of ``model_id`` (architecture, size, pair, ...), if it is one."""
    from harness.models import registry

    for spec in registry():
        if model_id in (spec.model_id, *spec.aliases):
            return {k: v for k, v in spec.to_dict().items()
                    if k in ("architecture", "size", "variant", "family", "pair", "parameters", "name")}
    return None
