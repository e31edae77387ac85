"""The plan: models x tasks x hyperparameters x seeds -> cells, minus what the store holds."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace

from harness import grids
from harness.models import ModelSpec
from harness.tasks import TaskSpec


@dataclass(frozen=True)
class Cell:
    """One unit of work and one result record: a model fine-tuned or scored on one task
    with one configuration and seed."""

    model: ModelSpec
    task: str
    task_group: str
    adapter: str  # "classification" | "lm_eval"
    hyperparameters: tuple = ()  # sorted (name, value) pairs
    seed: int = 0
    limit: int | None = None
    data_dir: str | None = None
    warm_start_from: str | None = None  # task whose best checkpoint this cell starts from
    init_key: str | None = None  # the cell key of that checkpoint, known once it is finished
    options: tuple = field(default=(), compare=False)

    @property
    def hp(self) -> dict:
        return dict(self.hyperparameters)

    @property
    def waiting(self) -> bool:
        """True while the checkpoint this cell starts from is not yet chosen."""
        return self.warm_start_from is not None and self.init_key is None

    def identity(self) -> dict:
        return {
            "model": self.model.model_id,
            "revision": self.model.revision,
            "architecture": self.model.architecture,
            "task": self.task,
            "adapter": self.adapter,
            "hyperparameters": self.hp,
            "seed": self.seed,
            "limit": self.limit,
            "data_dir": self.data_dir,
            "init_from": self.init_key,
        }

    @property
    def key(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:16]
        return f"{_slug(self.model.name or self.model.model_id)}__{self.task}__{digest}"

    def with_init(self, key: str) -> "Cell":
        return replace(self, init_key=key)


def pick_data_dirs(dirs: list[str], tasks: dict[str, list[str]], fallback_first: bool = True) -> dict[str, str | None]:
    """For each task, the first of ``dirs`` with a folder named after it (or one of its other
    names), so one run can read GLUE files from one folder and multiple-choice files from
    another. A task found in none gets the first folder (whose error then names the missing
    file) with ``fallback_first``, else None (the task's own data)."""
    chosen = {}
    for task, names in tasks.items():
        found = [d for d in dirs if any(os.path.isdir(os.path.join(d, n)) for n in names)]
        chosen[task] = (found or (dirs if fallback_first else []) or [None])[0]
    return chosen


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")[-60:]


def classification_cells(models: list[ModelSpec], tasks: list[TaskSpec], grid_name: str = "small",
                         overrides: dict | None = None, seeds: int = 1, limit: int | None = None,
                         data_dir: str | dict | None = None, warm_start: bool = True,
                         max_length: int = grids.MAX_LENGTH) -> list[Cell]:
    """Every fine-tuning cell, grouped by model; warm-start cells (RTE, MRPC, STS-B from the
    best MNLI checkpoint when MNLI is in the run) come after the cells they wait for."""
    names = {t.name for t in tasks}
    dirs = data_dir if isinstance(data_dir, dict) else {t.name: data_dir for t in tasks}
    cells = []
    for model in models:
        first, later = [], []
        for task in tasks:
            source = task.warm_start_from if warm_start and task.warm_start_from in names else None
            for hp in grids.grid(task, grid_name, max_length=max_length, **(overrides or {})):
                for seed in range(seeds):
                    cell = Cell(model=model, task=task.name, task_group=task.group, adapter="classification",
                                hyperparameters=tuple(sorted(hp.to_dict().items())), seed=seed, limit=limit,
                                data_dir=dirs.get(task.name), warm_start_from=source)
                    (later if source else first).append(cell)
        cells.extend(first + later)
    return cells


def lm_eval_cells(models: list[ModelSpec], task_names: list[str], limit: int | None = None,
                  data_dir: str | dict | None = None, num_fewshot: int | None = None, options: dict | None = None,
                  include_paths: list[str] | None = None) -> list[Cell]:
    """One scoring cell per (model, lm-eval task); generative scoring has no grid or seed."""
    settings = {"num_fewshot": num_fewshot, **(options or {})}
    paths = tuple(sorted(include_paths or ()))
    dirs = data_dir if isinstance(data_dir, dict) else {t: data_dir for t in task_names}
    return [Cell(model=model, task=task, task_group="generative", adapter="lm_eval",
                 hyperparameters=tuple(sorted(settings.items())), seed=0, limit=limit, data_dir=dirs.get(task),
                 options=(("include_paths", paths),))
            for model in models for task in task_names]
