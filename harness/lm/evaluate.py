"""Scoring one model on one lm-eval task with lm-eval's own evaluator, task config, filters and metrics."""

from __future__ import annotations

import importlib
import json

from harness.errors import UserError
from harness.lm import BACKENDS, register, reuse
from harness.lm.tasks import build_task, headline_metric
from harness.models import ModelSpec

EVAL_OPTIONS = {"bootstrap_iters", "gen_kwargs", "fewshot_random_seed"}


def backend_class(architecture: str):
    module, cls = BACKENDS["ettin-encoder" if architecture == "encoder" else "ettin-decoder"]
    return getattr(importlib.import_module(module), cls)


def evaluate_task(runner, spec: ModelSpec, task: str, *, include_paths: list[str] | None = None,
                  data_dir: str | None = None, limit: int | float | None = None, log_samples: bool = False,
                  num_fewshot: int | None = None, options: dict | None = None) -> dict:
    """Score ``spec`` on one lm-eval task; ``options`` are the backend's (``num_masks``, ``mntp``,
    ``add_bos_token``, ...) and lm-eval's ``bootstrap_iters``, ``gen_kwargs``, ``fewshot_random_seed``."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    register()
    options = dict(options or {})
    eval_kwargs = {k: options.pop(k) for k in list(options) if k in EVAL_OPTIONS}
    for key in ("bootstrap_iters", "fewshot_random_seed"):
        if key in eval_kwargs:
            eval_kwargs[key] = int(eval_kwargs[key])
    key = (task, tuple(include_paths or ()), data_dir, num_fewshot, repr(eval_kwargs.get("gen_kwargs")))
    manager, task_obj = reuse.task(key, lambda: build_task(task, include_paths, data_dir))
    try:
        lm = backend_class(spec.architecture)(runner=runner, spec=spec, **options)
    except TypeError as exc:
        raise UserError(f"unknown option for a {spec.architecture} on lm-eval tasks ({exc})") from None
    name = task_obj.task_name
    tokens_before = runner.tokens_processed
    results = simple_evaluate(model=lm, tasks=[task_obj], task_manager=manager, num_fewshot=num_fewshot, limit=limit,
                              log_samples=log_samples, **eval_kwargs)
    raw = results["results"][name]
    metrics: dict[str, float] = {}
    for key, value in raw.items():  # "acc,none", "exact_match,remove_whitespace": the first filter wins
        metric, comma, _ = key.partition(",")
        if comma and metric not in metrics and isinstance(value, (int, float)):
            metrics[metric] = float(value)
    samples = None
    if log_samples:
        samples = json.loads(json.dumps(results["samples"][name], default=handle_non_serializable))
    split = task_obj.config.test_split if task_obj.has_test_docs() else task_obj.config.validation_split
    return {
        "metrics": metrics,
        "headline_metric": headline_metric(name, metrics),
        "split": split,
        "n_examples": int(results["n-samples"][name]["effective"]),
        "samples": samples,
        "tokens_processed": runner.tokens_processed - tokens_before,
        "task_version": results.get("versions", {}).get(name),
        "lm_eval_task": name,
        "num_fewshot": results.get("n-shot", {}).get(name),
        "higher_is_better": results.get("higher_is_better", {}).get(name),
        "data_files": (task_obj.config.dataset_kwargs or {}).get("data_files"),
        "dataset_path": task_obj.config.dataset_path,
    }
