"""The plan: models x tasks x configurations x seeds -> cells, each keyed by everything that can
change its number."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import grids
from harness.configs import (PROTOCOL_VERSION, BiasConfig, Compute, DataSource, EmbeddingConfig, FinetuneConfig,
                             Recipe, ScoringConfig, digest, fingerprint_folders)
from harness.bias.spec import BiasTaskSpec
from harness.models import ModelSpec
from harness.retrieval.spec import RetrievalTaskSpec
from harness.tasks import TaskSpec


@dataclass(frozen=True)
class LmEvalTask:
    """An lm-eval task as a cell sees it: its name, where its YAML is searched, and a hash of
    its YAML folder's content (prompts, metrics, local fixture files)."""

    name: str
    group: str = "generative"
    include_paths: tuple[str, ...] = ()
    fingerprint: str = ""
    local: bool = False  # reads local files (a twin, a fixture, an --include-path task), not a hub dataset

    adapter = "lm_eval"

    def identity(self) -> dict:
        return {"name": self.name, "yaml": self.fingerprint, "local": self.local}


@dataclass(frozen=True)
class Cell:
    """One unit of work and one record: a model fine-tuned or scored on one task with one
    configuration and seed."""

    model: ModelSpec
    task: TaskSpec | LmEvalTask | RetrievalTaskSpec | BiasTaskSpec
    config: FinetuneConfig | ScoringConfig | EmbeddingConfig | BiasConfig
    data: DataSource = DataSource()
    seed: int = 0
    warm_start_from: str | None = None  # task whose best checkpoint this cell starts from
    init_key: str | None = None  # the cell key of that checkpoint, known once it is finished
    grid: str | None = field(default=None, compare=False)  # the grid the configuration came from
    compute: Compute = Compute()  # dtype and attention it runs under, resolved before any model loads

    @property
    def adapter(self) -> str:
        return self.task.adapter

    @property
    def waiting(self) -> bool:
        """True while the checkpoint this cell starts from is not yet chosen."""
        return self.warm_start_from is not None and self.init_key is None

    def identity(self, seed: bool = True, tunable: bool = True, init: bool = True) -> dict:
        config = self.config.identity(self.model.architecture)
        if not tunable:
            config = {k: v for k, v in config.items() if k not in FinetuneConfig.TUNABLE}
        out = {"protocol_version": PROTOCOL_VERSION,
               "model": [self.model.model_id, self.model.revision, self.model.architecture],
               "task": self.task.identity(), "config": config, "data": self.data.identity(),
               "warm_start_from": self.warm_start_from}
        if self.compute.identity():
            out["compute"] = self.compute.identity()
        if seed:
            out["seed"] = self.seed
        if init:
            out["init_from"] = self.init_key
        return out

    @property
    def key(self) -> str:
        return f"{_slug(self.model.name or self.model.model_id)}__{self.task.name}__{digest(self.identity())}"

    @property
    def config_key(self) -> str:
        """Equal for the seeds of one configuration (and whichever checkpoint a warm start read)."""
        return digest(self.identity(seed=False, init=False))

    @property
    def protocol_key(self) -> str:
        """Equal for every cell a best-configuration search may choose among: only the tunable
        hyperparameters, the seed and the warm-start checkpoint may differ."""
        return digest(self.identity(seed=False, tunable=False, init=False))

    @property
    def trains(self) -> bool:
        """True when the cell fine-tunes weights (GLUE fine-tuning, an embedder's fine-tuning)."""
        return isinstance(self.config, FinetuneConfig) or getattr(self.config, "fine_tuned", False)

    def with_init(self, key: str) -> "Cell":
        return replace(self, init_key=key)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")[-60:]


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


def data_source(folder: str | None, names: list[str], limit: int | None) -> DataSource:
    if folder is None:
        return DataSource(limit=limit)
    return DataSource(folder=folder, fingerprint=fingerprint_folders([Path(folder) / n for n in names]), limit=limit)


def classification_cells(models: list[ModelSpec], tasks: list[TaskSpec], grid_name: str = "small",
                         overrides: dict | None = None, seeds: int = 1, limit: int | None = None,
                         data_dir: str | dict | None = None, warm_start: bool = True,
                         max_length: int = grids.MAX_LENGTH, recipe: Recipe | None = None) -> list[Cell]:
    """Every fine-tuning cell, grouped by model; warm-start cells (RTE, MRPC, STS-B from the
    best MNLI checkpoint when MNLI is in the run) come after the cells they wait for."""
    names = {t.name for t in tasks}
    dirs = data_dir if isinstance(data_dir, dict) else {t.name: data_dir for t in tasks}
    label = grid_name if not any((overrides or {}).values()) else "custom"
    sources = {t.name: data_source(dirs.get(t.name), [t.name], limit) for t in tasks}
    cells = []
    for model in models:
        first, later = [], []
        for task in tasks:
            source = task.warm_start_from if warm_start and task.warm_start_from in names else None
            for config in grids.grid(task, grid_name, max_length=max_length, recipe=recipe, **(overrides or {})):
                for seed in range(seeds):
                    cell = Cell(model=model, task=task, config=config, data=sources[task.name], seed=seed,
                                warm_start_from=source, grid=label)
                    (later if source else first).append(cell)
        cells.extend(first + later)
    return cells


def lm_eval_cells(models: list[ModelSpec], tasks: list[LmEvalTask], scoring: ScoringConfig | None = None,
                  sources: dict[str, DataSource] | None = None) -> list[Cell]:
    """One scoring cell per (model, lm-eval task); scoring has no grid or seed. ``mntp`` left
    unset in ``scoring`` takes each model's registry default."""
    scoring = scoring or ScoringConfig()
    cells = []
    for model in models:
        config = replace(scoring, mntp=model.mntp) if scoring.mntp is None else scoring
        cells += [Cell(model=model, task=task, config=config, data=(sources or {}).get(task.name, DataSource()))
                  for task in tasks]
    return cells


def retrieval_cells(models: list[ModelSpec], tasks: list[RetrievalTaskSpec], base: EmbeddingConfig,
                    overrides: dict | None = None, seeds: int = 1, sources: dict[str, DataSource] | None = None,
                    grid_label: str = "paper") -> list[Cell]:
    """Zero-shot: one cell per (model, task). Fine-tuned: every (lr, batch size, epochs) of the
    grid (the authors' values unless overridden) x seeds; an embedder is trained per cell."""
    import itertools

    overrides = overrides or {}
    if base.fine_tuned:
        axes = [overrides.get(k) or (getattr(base, k),) for k in EmbeddingConfig.TUNABLE]
        configs = [replace(base, lr=float(lr), batch_size=int(b), epochs=int(e)) for lr, b, e in itertools.product(*axes)]
    else:
        configs, seeds = [base], 1
    label = "custom" if any(overrides.get(k) for k in EmbeddingConfig.TUNABLE) else grid_label
    return [Cell(model=model, task=task, config=config, data=(sources or {}).get(task.name, DataSource()), seed=seed,
                 grid=label if base.fine_tuned else None)
            for model in models for task in tasks for config in configs for seed in range(seeds)]


def bias_cells(models: list[ModelSpec], tasks: list[BiasTaskSpec], config: BiasConfig | None = None,
               sources: dict[str, DataSource] | None = None) -> list[Cell]:
    """One measuring cell per (model, bias task): nothing is trained, so no grid and no seed."""
    return [Cell(model=model, task=task, config=config or BiasConfig(), data=(sources or {}).get(task.name, DataSource()))
            for model in models for task in tasks]
