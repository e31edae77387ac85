"""The lm-eval adapter: score a model on one lm-eval task (decoders by log-likelihood, encoders by
mask-append) through lm-eval's evaluator."""

from __future__ import annotations

from harness.adapters.base import CellResult, RunOptions
from harness.lm.evaluate import evaluate_task
from harness.models import hub_dataset


def run(cell, runner, options: RunOptions) -> CellResult:
    config = cell.config
    result = evaluate_task(runner, cell.model, cell.task.name, include_paths=list(cell.task.include_paths),
                           data_dir=cell.data.folder, limit=cell.data.limit, log_samples=options.log_samples,
                           num_fewshot=config.num_fewshot, options=config.options(cell.model.architecture))
    return CellResult(
        metrics=result["metrics"], headline_metric=result["headline_metric"], split=result["split"],
        n_examples=result["n_examples"], samples=result["samples"], tokens_processed=result["tokens_processed"],
        parameters=runner.parameters_of(cell.model), loaded_id=runner.loaded_id_of(cell.model),
        details={"lm_eval": {k: result.get(k) for k in ("lm_eval_task", "task_version", "num_fewshot", "data_files",
                                                        "higher_is_better")},
                 **hub_data(result, cell)})


def hub_data(result: dict, cell) -> dict:
    """The hub dataset the task read (not a local twin's or a --data-dir's files), for the record."""
    path = result.get("dataset_path")
    if cell.data.folder or getattr(cell.task, "local", False) or not path or path in ("json", "csv", "parquet", "text"):
        return {}
    return {"dataset": hub_dataset(path)}
