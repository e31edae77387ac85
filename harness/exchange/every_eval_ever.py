"""Every Eval Ever (evaleval's shared schema for evaluation results, ``eval.schema.json`` 0.3.0):
each finished record, of any kind (GLUE fine-tuning, lm-eval, retrieval, bias), as one evaluation
log at ``data/<task>/<developer>/<model>/<uuid>.json``, the layout of the EEE datastore.

One log holds one record: every metric is an ``evaluation_results`` entry (an lm-eval ``*_stderr``
becomes its metric's standard error), the dataset is the hub repository and revision the cell read
or the local folder and its fingerprint, and the harness's provenance (model revision and the commit
that loaded, seed, protocol and its keys, hyperparameters, library versions) sits in the schema's
string-valued ``additional_details``. The file's UUID is derived from the cell key, so exporting
again replaces a log rather than adding a second one. Per-example rows are not exported (the
instance-level schema asks for fields the harness's samples do not all carry).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from hashlib import sha256
from pathlib import Path

from harness.errors import UserError
from harness.results import atomic_write_text, writable_folder

SCHEMA_VERSION = "0.3.0"
SOURCE = "ettin-eval"
UNIT = ("accuracy", "acc", "acc_norm", "f1", "exact_match", "main_score", "ndcg_at_", "map_at_", "mrr_at_",
        "recall_at_", "precision_at_", "hit_rate_at_", "gotcha_preference", "predicted_", "baseline_")
CORRELATION = ("matthews_correlation", "pearson", "spearmanr")
PERPLEXITY = ("word_perplexity", "byte_perplexity", "perplexity")
LOWER_IS_BETTER = (*PERPLEXITY, "bits_per_byte")
RELATIONSHIPS = ("first_party", "third_party", "collaborative", "other")


def export(records: list[dict], store, out: Path, organization: str = "unknown",
           relationship: str = "other") -> list[Path]:
    """Every finished record in ``records`` as an Every Eval Ever log under ``out/data/``; the paths.
    ``organization`` and ``relationship`` (to the model's makers) fill the schema's source_metadata."""
    chosen = [r for r in records if r.get("status") == "ok" and r.get("metrics")]
    if not chosen:
        raise UserError("no finished records to export; pass the --output-path of a run with finished cells")
    if relationship not in RELATIONSHIPS:
        raise UserError(f"unknown evaluator relationship '{relationship}'; choose one of {', '.join(RELATIONSHIPS)}")
    out = writable_folder(out, "--out")
    retrieved = f"{time.time():.3f}"
    written = []
    for record in chosen:
        log = evaluation_log(record, retrieved, organization, relationship)
        developer, model = _developer_and_model(record)
        path = out / "data" / _safe(record["task"]) / developer / model / f"{file_uuid(record)}.json"
        atomic_write_text(path, json.dumps(log, indent=2))
        written.append(path)
    return written


def file_uuid(record: dict) -> str:
    """A version-4-shaped UUID fixed by the cell key (EEE names each log by a UUID v4)."""
    return str(uuid.UUID(bytes=sha256(record["cell_key"].encode()).digest()[:16], version=4))


def evaluation_log(record: dict, retrieved: str, organization: str = "unknown", relationship: str = "other") -> dict:
    versions = {k: str(v) for k, v in (record.get("versions") or {}).items() if v is not None}
    protocol = record.get("protocol") or {}
    model_id = _model_id(record)
    return {
        "schema_version": SCHEMA_VERSION,
        "evaluation_id": f"{record['task']}/{model_id}/{record['cell_key']}",
        **({"evaluation_timestamp": record["timestamp"]} if record.get("timestamp") else {}),
        "retrieved_timestamp": retrieved,
        "source_metadata": {
            "source_name": SOURCE, "source_type": "evaluation_run", "source_organization_name": organization,
            "evaluator_relationship": relationship,
            "additional_details": _strings({
                "cell_key": record["cell_key"], "config_key": record.get("config_key"),
                "protocol_key": record.get("protocol_key"), "protocol": protocol.get("label"),
                "protocol_details": protocol, "adapter": record.get("adapter"), "seed": record.get("seed"),
                "hyperparameters": record.get("hyperparameters"), "split": record.get("split"),
                "n_examples": record.get("n_examples"), "headline_metric": record.get("headline_metric"),
                "device": record.get("device"), "wall_time_s": record.get("wall_time_s"),
                "tokens_processed": record.get("tokens_processed"), "training": record.get("training"),
                "imported": record.get("imported"),
                **{kind: record.get(kind) for kind in ("input_format", "lm_eval", "retrieval", "bias")}}),
        },
        "eval_library": {"name": SOURCE, "version": versions.get("harness", "unknown"),
                         "additional_details": {k: v for k, v in versions.items() if k != "harness"}},
        "model_info": model_info(record, model_id, versions),
        "evaluation_results": evaluation_results(record),
    }


def model_info(record: dict, model_id: str, versions: dict) -> dict:
    developer, _ = _developer_and_model(record)
    local = developer == "local"
    details = _strings({
        "revision": record.get("revision"), "resolved_revision": record.get("loaded_commit"),
        "loaded_id": record.get("loaded_id"), "architecture": record.get("architecture"),
        "parameters": record.get("parameters"), "size": record.get("size"), "variant": record.get("variant"),
        "family": record.get("family"), "pair": record.get("pair"), "trajectory": record.get("trajectory")})
    info = {"name": str(record.get("model_name") or model_id), "id": model_id,
            "inference_platform": "local" if local else "huggingface",
            "additional_details": {"deployment_type": "self_deployed",
                                   "model_availability": "unknown" if local else "open_weights", **details}}
    if not local:
        info["developer"] = developer
    if versions.get("transformers"):
        info["inference_engine"] = {"name": "transformers", "version": versions["transformers"]}
    return info


def evaluation_results(record: dict) -> list[dict]:
    metrics = record["metrics"]
    source = source_data(record)
    higher = ((record.get("lm_eval") or {}).get("higher_is_better")) or {}
    out = []
    for name, value in sorted(metrics.items()):
        if name.endswith("_stderr") and name[: -len("_stderr")] in metrics:
            continue  # the uncertainty of its metric, below
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        uncertainty = {}
        stderr = metrics.get(f"{name}_stderr")
        if isinstance(stderr, (int, float)) and math.isfinite(stderr):
            uncertainty["standard_error"] = {"value": float(stderr), "method": "lm-eval"}
        if isinstance(record.get("n_examples"), int) and record["n_examples"] > 0:
            uncertainty["num_samples"] = record["n_examples"]
        details = {"seed": str(record.get("seed")), "split": str(record.get("split")),
                   "headline": str(name == record.get("headline_metric")).lower()}
        out.append({
            "evaluation_result_id": f"{record['task']}/{name}",
            "evaluation_name": str(record["task"]),
            "source_data": source,
            **({"evaluation_timestamp": record["timestamp"]} if record.get("timestamp") else {}),
            "metric_config": metric_config(name, higher),
            "score_details": {"score": float(value), "details": details,
                              **({"uncertainty": uncertainty} if uncertainty else {})},
        })
    if not out:
        raise UserError(f"record {record['cell_key']} holds no finite metric; rerun its cell")
    return out


def metric_config(name: str, higher_is_better: dict) -> dict:
    lower = not higher_is_better[name] if name in higher_is_better else name in LOWER_IS_BETTER
    config = {"metric_id": name, "metric_name": name, "lower_is_better": bool(lower)}
    bounds = _bounds(name)
    if bounds is None:
        config["additional_details"] = {"bounds_status": "unknown"}
    else:
        config.update(score_type="continuous", min_score=bounds[0], max_score=bounds[1], metric_unit="proportion"
                      if bounds == (0.0, 1.0) else "points")
    return config


def _bounds(name: str):
    if name in CORRELATION:
        return (-1.0, 1.0)
    if name in PERPLEXITY:
        return (1.0, "Infinity")
    if name == "bits_per_byte":
        return (0.0, "Infinity")
    if any(name == u or (u.endswith("_") and name.startswith(u)) for u in UNIT):
        return (0.0, 1.0)
    return None


def source_data(record: dict) -> dict:
    """The hub dataset (repository, split, revision and the commit read) or the local folder and its fingerprint."""
    dataset = record.get("dataset") or {}
    protocol = record.get("protocol") or {}
    lm_eval = record.get("lm_eval") or {}
    details = _strings({"revision": dataset.get("revision"), "commit": dataset.get("commit"),
                        "mteb_task": (record.get("retrieval") or {}).get("mteb_task") or dataset.get("mteb_task"),
                        "lm_eval_task": lm_eval.get("lm_eval_task"), "lm_eval_task_version": lm_eval.get("task_version"),
                        "data_files": lm_eval.get("data_files"),
                        "data_dir": protocol.get("data_dir") or record.get("data_dir"),
                        "data_fingerprint": protocol.get("data_fingerprint"), "limit": record.get("limit")})
    if dataset.get("id"):
        out = {"dataset_name": str(record["task"]), "source_type": "hf_dataset", "hf_repo": str(dataset["id"])}
        if record.get("split"):
            out["hf_split"] = str(record["split"])
        if isinstance(record.get("n_examples"), int):
            out["samples_number"] = record["n_examples"]
    else:
        out = {"dataset_name": str(record["task"]), "source_type": "other"}
    if details:
        out["additional_details"] = details
    return out


def _strings(values: dict) -> dict:
    """The schema's additional_details: string values only (others as JSON), None left out."""
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            for k, v in values.items() if v is not None}


def _model_id(record: dict) -> str:
    developer, model = _developer_and_model(record)
    return f"{developer}/{model}"


def _developer_and_model(record: dict) -> tuple[str, str]:
    """A hub id's organisation and name; ``local`` and the display name for a local folder."""
    model = str(record.get("model") or "")
    parts = model.split("/")
    if len(parts) == 2 and all(parts) and not Path(model).exists() and not model.startswith("."):
        return _safe(parts[0]), _safe(parts[1])
    return "local", _safe(str(record.get("model_name") or Path(model).name or "model"))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "_"
