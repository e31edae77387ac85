"""The one place a result record is built: from a cell and its CellResult (or its error).

A record carries the model (id, the id that loaded, revision, architecture, parameters), the task,
the split, every metric and the headline one, seed, hyperparameters, the protocol (a label and
everything behind it: recipe, input format, scoring options, data source, limit, protocol
version), the cell's keys, work done (tokens, FLOPs, wall time) and library versions.
"""

from __future__ import annotations

import math
import platform
import sys
from datetime import datetime, timezone

from harness.adapters.base import CellResult
from harness.configs import PROTOCOL_VERSION, BiasConfig, EmbeddingConfig, FinetuneConfig
from harness.plan import Cell
from harness.results import SCHEMA_VERSION
from harness.suite import suite



def library_versions() -> dict:
    import torch
    import transformers

    from harness import __version__

    versions = {"harness": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
                "python": platform.python_version()}
    for name, module in (("lm_eval", "lm_eval"), ("mteb", "mteb"), ("sentence_transformers", "sentence_transformers")):
        if sys.modules.get(module) is not None:
            versions[name] = getattr(sys.modules[module], "__version__", "unknown")
    return versions


def trajectory(spec) -> dict | None:
    """A revision's place in training: its phase and, where the run says so, the tokens seen."""
    if not spec.revision:
        return None
    from harness.revisions import phase_of, tokens_seen

    tokens, source = tokens_seen(spec)
    return {"phase": phase_of(spec.revision), "tokens_seen": tokens, "tokens_source": source}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def protocol_label(cell: Cell) -> str:
    """'paper' when the cell follows the published protocol, else what differs, e.g.
    'small grid, limit 64, local data'."""
    parts = []
    config = cell.config
    if isinstance(config, FinetuneConfig):
        if cell.grid != "paper":
            parts.append(f"{cell.grid or 'custom'} grid")
        if getattr(config, "search", None):  # harness/search: not every configuration ran its full schedule
            parts.append(f"{config.search} search")
        if config.max_length != 512:
            parts.append(f"max length {config.max_length}")
        if config.recipe.head_init != "pretrained" and cell.model.architecture == "decoder":
            parts.append("fresh decoder head")
        wants = cell.task.warm_start_from
        if wants and cell.warm_start_from is None:
            parts.append(f"no {wants.upper()} warm start")
    elif isinstance(config, EmbeddingConfig):
        if not config.fine_tuned:
            parts.append("zero-shot")
        elif cell.grid != "paper":
            parts.append(f"{cell.grid or 'custom'} grid")
        parts += [f"{name.replace('_', ' ')} {value}" for name, value in config.embed_settings().items()
                  if value not in (None, "none")]
    elif isinstance(config, BiasConfig):
        if config.swap != "correct" and cell.model.architecture == "decoder":
            parts.append(f"{config.swap} swap")
    else:
        parts += config.deviations(cell.model.architecture, default_mntp=cell.model.mntp)
    if getattr(cell.task, "custom", False):  # an --include-path YAML under a shipped task's name
        parts.append("custom spec")
    parts += cell.compute.deviations()
    if cell.data.limit is not None:
        parts.append(f"limit {cell.data.limit}")
    if cell.data.local or getattr(cell.task, "local", False):
        parts.append("local data")
    return ", ".join(parts) or "paper"


def _base(cell: Cell) -> dict:
    spec = cell.model
    arch = spec.architecture
    config = cell.config
    if isinstance(config, FinetuneConfig):
        hyper = config.hyperparameters()
        recipe = config.recipe.to_dict()
    else:
        hyper, recipe = config.hyperparameters(arch), None
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_key": cell.key,
        "config_key": cell.config_key,
        "protocol_key": cell.protocol_key,
        "model": spec.model_id,
        "model_name": spec.name or spec.model_id,
        "revision": spec.revision,
        "trajectory": trajectory(spec),
        "architecture": arch,
        "size": spec.size,
        "variant": spec.variant,
        "family": spec.family,
        "pair": spec.pair,
        "parameters": spec.parameters,
        "task": cell.task.name,
        "task_group": cell.task.group or suite().group_of(cell.task.name),
        "adapter": cell.adapter,
        "seed": cell.seed,
        "hyperparameters": {**hyper, "warm_start_from": cell.warm_start_from if cell.init_key else None,
                            "init_from": cell.init_key},
        "protocol": {"label": protocol_label(cell), "version": PROTOCOL_VERSION, "grid": cell.grid,
                     "recipe": recipe, "limit": cell.data.limit, "data": "local" if cell.data.local else "hub",
                     "data_dir": cell.data.folder, "data_fingerprint": cell.data.fingerprint,
                     "dtype": cell.compute.dtype, "attention": cell.compute.attention},
        "limit": cell.data.limit,
        "data_dir": cell.data.folder,
        "versions": library_versions(),
        "timestamp": now_iso(),
    }


def bad_metrics(metrics: dict) -> list[str]:
    """Names of metrics that are not finite numbers (a record never holds them)."""
    return [k for k, v in metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]


def build_record(cell: Cell, result: CellResult, wall_time_s: float, device: str, samples_path: str | None) -> dict:
    """The stored record of a finished cell."""
    record = _base(cell)
    record.update({
        "status": "ok",
        "loaded_id": result.loaded_id or cell.model.model_id,
        "loaded_commit": result.loaded_commit,
        "parameters": cell.model.parameters or result.parameters,
        "split": result.split,
        "metrics": result.metrics,
        "headline_metric": result.headline_metric,
        "n_examples": result.n_examples,
        "wall_time_s": round(wall_time_s, 3),
        "tokens_processed": result.tokens_processed,
        "device": device,
        "samples": samples_path,
        "error": None,
        **result.details,
    })
    return record


def failed_record(cell: Cell, error: BaseException | str, wall_time_s: float) -> dict:
    record = _base(cell)
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    record.update({"status": "failed", "split": None, "metrics": {}, "headline_metric": None, "n_examples": 0,
                   "wall_time_s": round(wall_time_s, 3), "tokens_processed": 0, "samples": None, "error": text})
    return record
