"""Running one cell: ask its adapter for the result, then build the record the store keeps."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

from harness.adapters import classification
from harness.grids import Hyper
from harness.plan import Cell
from harness.results import ResultStore, library_versions, now_iso
from harness.runner import Runner
from harness.tasks import TaskSpec


def checkpoint_path(store: ResultStore, key: str) -> Path:
    return store.checkpoints_dir / f"{key}.safetensors"


def load_checkpoint(path: Path) -> dict:
    """The warm-start weights at ``path``; a grid of dependent cells reads the same file, so the
    last one read stays in memory (keyed by its modification time, in case it is replaced)."""
    return _read_checkpoint(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _read_checkpoint(path: str, mtime_ns: int) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def save_checkpoint(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def base_record(cell: Cell, parameters: int | None) -> dict:
    spec = cell.model
    return {
        "cell_key": cell.key,
        "model": spec.model_id,
        "model_name": spec.name or spec.model_id,
        "revision": spec.revision,
        "architecture": spec.architecture,
        "size": spec.size,
        "variant": spec.variant,
        "family": spec.family,
        "parameters": spec.parameters or parameters,
        "task": cell.task,
        "task_group": cell.task_group,
        "adapter": cell.adapter,
        "seed": cell.seed,
        "hyperparameters": {**cell.hp, "warm_start_from": cell.warm_start_from if cell.init_key else None,
                            "init_from": cell.init_key},
        "limit": cell.limit,
        "data_dir": cell.data_dir,
        "versions": library_versions(),
        "timestamp": now_iso(),
    }


def run_classification(cell: Cell, spec: TaskSpec, runner: Runner, store: ResultStore,
                       keep_state: bool = False, progress: bool = True) -> tuple[dict, dict | None]:
    """Fine-tune and score one classification cell; returns its record and, when asked,
    the fine-tuned backbone (for warm-starting other tasks)."""
    start = time.perf_counter()
    tokens_before = runner.tokens_processed
    problem = "regression" if spec.is_regression else "single_label_classification"
    loaded = runner.load(cell.model, "sequence-classification", num_labels=spec.num_labels, problem_type=problem,
                         training=True)
    init_state = load_checkpoint(checkpoint_path(store, cell.init_key)) if cell.init_key else None
    hp = Hyper(**cell.hp)
    result = classification.finetune(runner, loaded, spec, hp, cell.seed, data_dir=cell.data_dir, limit=cell.limit,
                                     init_state=init_state, progress=progress)
    state = classification.backbone_state(loaded) if keep_state else None
    samples = store.write_samples(cell.key, result.samples)
    record = base_record(cell, loaded.parameters) | {
        "status": "ok",
        "split": spec.primary_split,
        "metrics": result.metrics,
        "headline_metric": spec.headline_metric,
        "n_examples": result.n_examples,
        "train_loss": result.train_loss,
        "train_steps": result.steps,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "tokens_processed": runner.tokens_processed - tokens_before,
        "device": runner.describe(),
        "samples": samples,
        "error": None,
    }
    if runner.device.type == "cuda":
        torch.cuda.empty_cache()
    return record, state


def run_lm_eval(cell: Cell, runner: Runner, store: ResultStore, log_samples: bool = False) -> dict:
    """Score one model on one lm-eval task (encoders by mask-append, decoders by log-likelihood)."""
    from harness.adapters import lm_eval_bridge

    start = time.perf_counter()
    settings = dict(cell.hp)
    num_fewshot = settings.pop("num_fewshot", None)
    include_paths = list(dict(cell.options).get("include_paths", ()))
    result = lm_eval_bridge.evaluate_task(runner, cell.model, cell.task, include_paths=include_paths,
                                          data_dir=cell.data_dir, limit=cell.limit, log_samples=log_samples,
                                          num_fewshot=num_fewshot, options=settings)
    samples = store.write_samples(cell.key, result["samples"]) if result.get("samples") else None
    record = base_record(cell, runner.parameters_of(cell.model)) | {
        "status": "ok",
        "split": result["split"],
        "metrics": result["metrics"],
        "headline_metric": result["headline_metric"],
        "n_examples": result["n_examples"],
        "wall_time_s": round(time.perf_counter() - start, 3),
        "tokens_processed": result["tokens_processed"],
        "device": runner.describe(),
        "samples": samples,
        "lm_eval": {k: result.get(k) for k in ("lm_eval_task", "task_version", "num_fewshot", "data_files")},
        "error": None,
    }
    return record


def run_cell(cell: Cell, spec: TaskSpec | None, runner: Runner, store: ResultStore, keep_state: bool = False,
             progress: bool = True, log_samples: bool = False) -> tuple[dict, dict | None]:
    """The record of one cell (and the fine-tuned backbone when ``keep_state``), by its adapter."""
    if cell.adapter == "classification":
        return run_classification(cell, spec, runner, store, keep_state=keep_state, progress=progress)
    if cell.adapter == "lm_eval":
        return run_lm_eval(cell, runner, store, log_samples=log_samples), None
    raise ValueError(f"unknown adapter {cell.adapter}")


def failed_record(cell: Cell, error: BaseException, wall_time: float) -> dict:
    return base_record(cell, None) | {
        "status": "failed",
        "split": None,
        "metrics": {},
        "headline_metric": None,
        "n_examples": 0,
        "wall_time_s": round(wall_time, 3),
        "tokens_processed": 0,
        "samples": None,
        "error": f"{type(error).__name__}: {error}",
    }
