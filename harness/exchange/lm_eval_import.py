"""lm-eval output folders read as records: every task of each ``results_<date>.json`` (the newest
file per model, task and settings), with its ``samples_<task>_<date>.jsonl`` rows where the run
logged samples, found the way lm-eval's own scripts find them (``lm_eval.utils``).

A run lm-eval made elsewhere becomes a record with protocol "imported", keyed by what can change
its number (model, revision, architecture, task version and hash, shots, limit, seeds), carrying
the versions lm-eval wrote down. A file this harness exported gives back the records it was
written from (``configs[task].metadata.ettin_eval``), so a round trip keeps keys and protocols.

The architecture of an imported model: the ``arch`` hint where given; else the registry's for an
Ettin id; else read from ``config.json`` when ``pretrained`` is a local model folder; else
"decoder" (lm-eval's ``hf`` model loads causal LMs).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from harness.configs import PROTOCOL_VERSION, digest
from harness.errors import UserError, first_line

IMPORTED = "imported"
SOURCE = "lm-eval"


def results_files(path) -> list[str]:
    from lm_eval.utils import get_results_filenames

    root = Path(path)
    files = [p.as_posix() for p in sorted(root.rglob("results_*.json")) if p.is_file()]
    return get_results_filenames([f if "/" in f else f"./{f}" for f in files])


def is_lm_eval_folder(path) -> bool:
    """True when ``path`` holds lm-eval results files (its --output_path, or one model's folder)."""
    return os.path.isdir(path) and bool(results_files(path))


def read_folder(path, arch: str | None = None, pair: str | None = None) -> list[tuple[dict, list | None]]:
    """Every task result of the lm-eval folder ``path`` as (record, samples rows or None)."""
    from lm_eval.utils import get_file_datetime

    newest: dict[str, tuple[str, dict, list | None]] = {}
    for file in results_files(path):
        body = _load(file)
        for record, rows in _records(file, body, arch):
            key = record["cell_key"]
            date = get_file_datetime(Path(file).name).removesuffix(".json")
            if key not in newest or date > newest[key][0]:
                newest[key] = (date, record, rows)
    return [(record, rows) for _, record, rows in newest.values()]


def _load(file: str) -> dict:
    try:
        with open(file, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{file} is not a readable lm-eval results file ({first_line(exc)}); move it away or "
                        "rerun lm-eval") from None
    if not isinstance(body, dict) or not isinstance(body.get("results"), dict):
        raise UserError(f"{file} has no 'results' table, so it is no lm-eval results file; move it away")
    return body


def _records(file: str, body: dict, arch: str | None) -> list[tuple[dict, list | None]]:
    configs = body.get("configs") or {}
    out = []
    for task, entry in body["results"].items():
        config = configs.get(task)
        if not isinstance(config, dict) or not isinstance(entry, dict):
            continue  # a group's aggregate: its tasks are imported one by one
        rows = samples_rows(file, task)
        exported = ((config.get("metadata") or {}).get("ettin_eval") or {}).get("records")
        if exported and unchanged(entry, exported):
            out += _harness_records(file, exported, rows)
        else:
            record = foreign_record(file, body, task, entry, config, arch)
            filt = next((k.partition(",")[2] for k in entry if "," in k), None)
            kept = [r for r in rows or [] if r.get("filter", filt) == filt]
            out.append((record, kept or None))
    return out


def unchanged(entry: dict, records) -> bool:
    """True when the scores of a file this harness exported are still those of the records it keeps
    (an edited file is read as lm-eval's, protocol "imported")."""
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("metrics"), dict)
                                                for r in records):
        return False
    for key, value in entry.items():
        metric, comma, _ = key.partition(",")
        values = [r["metrics"].get(metric) for r in records]
        if comma and not metric.endswith("_stderr") and isinstance(value, (int, float)):
            if any(not isinstance(v, (int, float)) for v in values) or abs(sum(values) / len(values) - value) > 1e-9:
                return False
    return True


def samples_rows(file: str, task: str) -> list[dict] | None:
    """The rows of the samples file lm-eval wrote with ``file`` (same folder and date) for ``task``."""
    from lm_eval.utils import get_file_datetime, get_file_task_name, get_sample_results_filenames

    folder = Path(file).parent
    date = get_file_datetime(Path(file).name).removesuffix(".json")
    names = get_sample_results_filenames([p.as_posix() for p in folder.glob("samples_*.json*")])
    match = [n for n in names if get_file_task_name(Path(n).name) == task
             and get_file_datetime(Path(n).name) == date]
    if not match:
        return None
    try:
        with open(match[0], encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UserError(f"{match[0]} is not a readable lm-eval samples file ({first_line(exc)}); move it away or "
                        "rerun lm-eval with --log_samples") from None


def _harness_records(file: str, records: list[dict], rows: list | None) -> list[tuple[dict, list | None]]:
    out = []
    for record in records:
        mine = [r.get("ettin_eval", r) for r in rows or [] if r.get("seed", record.get("seed")) == record.get("seed")]
        mine = [{k: v for k, v in r.items() if k != "seed"} if "doc_id" in r else r for r in mine]
        out.append(({**record, "imported": {"from": SOURCE, "file": os.path.abspath(file)}}, mine or None))
    return out


def model_args(config: dict) -> dict:
    from lm_eval.utils import simple_parse_args_string

    args = config.get("model_args")
    if isinstance(args, str):
        try:
            return simple_parse_args_string(args)
        except (ValueError, TypeError):
            return {}
    return dict(args) if isinstance(args, dict) else {}


def model_identity(body: dict, arch: str | None) -> dict:
    """Model id, name, revision, commit, architecture, size/family/pair of the run's model."""
    from dataclasses import asdict

    from harness import models

    config = body.get("config") or {}
    args = model_args(config)
    model = str(args.get("pretrained") or args.get("model") or args.get("path") or body.get("model_name")
                or config.get("model") or "unknown")
    revision = args.get("revision") or config.get("model_revision")
    revision = None if revision in (None, "", "main") else str(revision)
    spec = next((s for s in models.registry() if model in (s.name, s.model_id, *s.aliases)), None)
    info = asdict(spec) if spec else {"name": models.display_name(model) if os.path.isdir(model) else model,
                                      "size": None, "variant": None, "family": "other", "pair": None,
                                      "parameters": None, "architecture": None}
    arch = arch or info["architecture"] or local_architecture(model) or "decoder"
    return {"model": model, "model_name": info["name"] or model, "revision": revision, "architecture": arch,
            "size": info["size"], "variant": info["variant"], "family": info["family"],
            "pair": info["pair"] if spec and spec.architecture == arch else None,
            "parameters": info["parameters"] or config.get("model_num_parameters"),
            "loaded_id": model, "loaded_commit": config.get("model_sha") or None}


def local_architecture(model: str) -> str | None:
    if not (Path(model) / "config.json").is_file():
        return None
    from transformers import AutoConfig

    from harness.models import architecture_of

    try:
        return architecture_of(AutoConfig.from_pretrained(model), model)
    except (UserError, OSError, ValueError):
        return None


def tool_versions(body: dict) -> dict:
    """The versions an lm-eval run wrote down (torch read from its environment report)."""
    from harness import __version__

    versions = {"lm_eval": body.get("lm_eval_version"), "transformers": body.get("transformers_version")}
    found = re.search(r"PyTorch version: (\S+)", str(body.get("pretty_env_info") or ""))
    if found:
        versions["torch"] = found.group(1)
    return {**{k: v for k, v in versions.items() if v}, "harness": __version__}


def foreign_record(file: str, body: dict, task: str, entry: dict, config: dict, arch: str | None) -> dict:
    """The record of one task of a results file lm-eval wrote: scores as the harness reads lm-eval's
    (the first filter of each metric), protocol "imported"."""
    from harness.lm.tasks import headline_metric
    from harness.models import hub_dataset
    from harness.suite import suite

    run = body.get("config") or {}
    who = model_identity(body, arch)
    metrics: dict[str, float] = {}
    for key, value in entry.items():  # as harness.lm.evaluate reads lm-eval's results: the first filter wins
        metric, comma, _ = key.partition(",")
        if comma and metric not in metrics and isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[metric] = float(value)
    seeds = {k: run.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed") if k in run}
    shots = (body.get("n-shot") or {}).get(task)
    limit = run.get("limit")
    limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
    split = config.get("test_split") or config.get("validation_split")
    dataset = {"path": config.get("dataset_path"), "name": config.get("dataset_name"),
               "data_files": (config.get("dataset_kwargs") or {}).get("data_files")}
    identity = {"source": SOURCE, "model": [who["model"], who["revision"], who["architecture"]], "task": task,
                "task_version": (body.get("versions") or {}).get(task), "n_shot": shots, "limit": limit,
                "task_hash": (body.get("task_hashes") or {}).get(task), "seeds": seeds, "dataset": dataset,
                "model_args": model_args(run), "gen_kwargs": run.get("gen_kwargs")}
    key = digest(identity)
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in who["model_name"]).strip("-")[-60:]
    versions = tool_versions(body)
    date = body.get("date")
    stamp = datetime.fromtimestamp(date, timezone.utc).isoformat(timespec="seconds") if isinstance(date, (int, float)) \
        else datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = dataset["path"]
    record = {
        **who, "cell_key": f"{IMPORTED}__{slug or 'model'}__{task}__{key}", "config_key": key, "protocol_key": key,
        "trajectory": None, "task": task, "task_group": suite().group_of(task) or "generative", "adapter": "lm_eval",
        "seed": run.get("random_seed", 0),
        "hyperparameters": {"num_fewshot": shots, "seeds": seeds, "model_args": model_args(run),
                            "batch_size": run.get("batch_size"), "gen_kwargs": run.get("gen_kwargs")},
        "protocol": {"label": IMPORTED, "version": PROTOCOL_VERSION, "source": SOURCE,
                     "tool_versions": {k: v for k, v in versions.items() if k != "harness"}, "limit": limit,
                     "dtype": run.get("model_dtype"), "num_fewshot": shots, "data": dataset},
        "limit": limit, "data_dir": None, "versions": versions, "timestamp": stamp, "status": "ok", "split": split,
        "metrics": metrics, "headline_metric": headline_metric(task, metrics),
        "n_examples": int(((body.get("n-samples") or {}).get(task) or {}).get("effective") or entry.get("sample_len")
                          or 0),
        "wall_time_s": float(body.get("total_evaluation_time_seconds") or 0), "tokens_processed": 0,
        "device": run.get("device"), "error": None,
        "lm_eval": {"lm_eval_task": task, "task_version": (body.get("versions") or {}).get(task), "num_fewshot": shots,
                    "higher_is_better": (body.get("higher_is_better") or {}).get(task),
                    "data_files": dataset["data_files"], "task_hash": identity["task_hash"],
                    "git_hash": body.get("git_hash"), "model": run.get("model")},
        "imported": {"from": SOURCE, "file": os.path.abspath(file), "date": date},
    }
    if path and path not in ("json", "csv", "parquet", "text"):
        record["dataset"] = {**hub_dataset(path, config.get("dataset_kwargs", {}).get("revision")
                                           if isinstance(config.get("dataset_kwargs"), dict) else None),
                             "name": config.get("dataset_name")}
    return record
