"""Task specs for fine-tuned classification (GLUE-style), loaded and validated from YAML.

Tasks are data: adding one is adding a YAML file to ``tasks/glue/`` (or to a folder given
with ``--include-path``). This module knows nothing about models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import UserError
from harness.metrics import METRICS

REPO_TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
REQUIRED_FIELDS = ("task", "dataset_path", "train_split", "eval_splits", "text_fields", "label_type", "metrics")


@dataclass(frozen=True)
class EvalSplit:
    split: str
    metric_suffix: str = ""  # appended to metric names of a non-primary split, e.g. "_mismatched"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    group: str
    dataset_path: str
    dataset_name: str | None
    train_split: str
    eval_splits: tuple[EvalSplit, ...]
    text_fields: tuple[str, ...]
    label_field: str
    label_type: str  # "classification" | "regression"
    num_labels: int
    metrics: tuple[str, ...]
    headline_metric: str
    epochs_group: str = "long"  # "short": the paper sweeps {1,2,3,4} epochs, "long": {2,5,10,12}
    warm_start_from: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def primary_split(self) -> str:
        return self.eval_splits[0].split

    @property
    def is_regression(self) -> bool:
        return self.label_type == "regression"


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_task(data: dict, source: str = "<dict>") -> TaskSpec:
    if not isinstance(data, dict):
        raise UserError(f"task file {source} is not a YAML mapping; see tasks/glue/sst2.yaml for the format")
    missing = [f for f in REQUIRED_FIELDS if f not in data]
    if missing:
        raise UserError(
            f"task file {source} lacks field(s) {', '.join(missing)}; add them (see tasks/glue/sst2.yaml)"
        )
    label_type = data["label_type"]
    if label_type not in ("classification", "regression"):
        raise UserError(f"task file {source}: label_type must be classification or regression, not '{label_type}'")
    num_labels = int(data.get("num_labels", 1 if label_type == "regression" else 2))
    metrics = tuple(_as_list(data["metrics"]))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"task file {source}: unknown metric(s) {unknown}; known: {', '.join(sorted(METRICS))}")
    splits = []
    for item in _as_list(data["eval_splits"]):
        if isinstance(item, dict):
            splits.append(EvalSplit(str(item["split"]), str(item.get("metric_suffix", ""))))
        else:
            splits.append(EvalSplit(str(item)))
    text_fields = tuple(_as_list(data["text_fields"]))
    if not 1 <= len(text_fields) <= 2:
        raise UserError(f"task file {source}: text_fields must name one or two columns")
    headline = data.get("headline_metric", metrics[0])
    if headline not in metrics:
        raise UserError(f"task file {source}: headline_metric '{headline}' is not one of its metrics")
    known = set(REQUIRED_FIELDS) | {"group", "dataset_name", "label_field", "num_labels", "headline_metric",
                                    "epochs_group", "warm_start_from", "adapter", "description"}
    return TaskSpec(
        name=str(data["task"]),
        group=str(data.get("group", "custom")),
        dataset_path=str(data["dataset_path"]),
        dataset_name=data.get("dataset_name"),
        train_split=str(data["train_split"]),
        eval_splits=tuple(splits),
        text_fields=text_fields,
        label_field=str(data.get("label_field", "label")),
        label_type=label_type,
        num_labels=num_labels,
        metrics=metrics,
        headline_metric=headline,
        epochs_group=str(data.get("epochs_group", "long")),
        warm_start_from=data.get("warm_start_from"),
        source=source,
        extra={k: v for k, v in data.items() if k not in known},
    )


def load_task_file(path: Path) -> TaskSpec:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"task file {path} is not valid YAML ({first}); fix its syntax") from None
    return parse_task(data, str(path))


def is_classification_yaml(path: Path) -> bool:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, OSError):
        return True  # let load_task_file report it
    return isinstance(data, dict) and data.get("adapter", "classification") == "classification" and (
        "text_fields" in data or "label_type" in data
    )


def load_tasks(include_paths: list[str] | None = None) -> dict[str, TaskSpec]:
    """All classification tasks: the built-in ``tasks/glue`` plus any ``--include-path`` folders."""
    dirs = [REPO_TASKS_DIR / "glue"]
    for p in include_paths or []:
        if not os.path.isdir(p):
            raise UserError(f"--include-path '{p}' is not a folder; give a folder of task YAML files")
        dirs.append(Path(p))
    tasks: dict[str, TaskSpec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            if is_classification_yaml(path):
                spec = load_task_file(path)
                tasks[spec.name] = spec
    return tasks


def groups(tasks: dict[str, TaskSpec]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in tasks.values():
        out.setdefault(spec.group, []).append(spec.name)
    return out


def select(names: list[str], tasks: dict[str, TaskSpec]) -> list[TaskSpec]:
    """Expand task names and group names (``glue``) into specs, keeping order, without repeats."""
    by_group = groups(tasks)
    chosen: list[TaskSpec] = []
    for name in names:
        if name in tasks:
            items = [tasks[name]]
        elif name in by_group:
            items = [tasks[n] for n in by_group[name]]
        else:
            known = sorted(set(tasks) | set(by_group))
            raise UserError(f"unknown task '{name}'; known tasks and groups: {', '.join(known)} (see 'ettin-eval tasks')")
        for spec in items:
            if spec not in chosen:
                chosen.append(spec)
    return chosen


def find_local_file(data_dir: str, task: str, split: str) -> Path:
    base = Path(data_dir) / task
    for suffix in DATA_SUFFIXES:
        path = base / f"{split}{suffix}"
        if path.exists():
            return path
    raise UserError(
        f"no file for task '{task}' split '{split}' in --data-dir: expected {base}/{split}.jsonl "
        f"(or .json/.csv/.parquet) with the hub dataset's column names"
    )


def load_split(spec: TaskSpec, split: str, data_dir: str | None = None, limit: int | None = None):
    """One split of a task as a ``datasets.Dataset``, from ``data_dir`` when given, else the hub."""
    import datasets

    datasets.disable_progress_bars()
    if data_dir:
        path = find_local_file(data_dir, spec.name, split)
        builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
        try:
            ds = datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
        except Exception as exc:
            raise UserError(f"cannot read {path} ({str(exc).splitlines()[0]}); fix the file or its format") from None
        where = str(path)
    else:
        try:
            ds = datasets.load_dataset(spec.dataset_path, spec.dataset_name, split=split)
        except Exception as exc:
            offline = os.environ.get("HF_DATASETS_OFFLINE", "0") in ("1", "true") or os.environ.get(
                "HF_HUB_OFFLINE", "0") in ("1", "true")
            reason = "hub access is off (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)" if offline else str(exc).splitlines()[0]
            raise UserError(
                f"dataset {spec.dataset_path}/{spec.dataset_name or ''} split '{split}' for task '{spec.name}' "
                f"could not be loaded: {reason}; pass --data-dir DIR with DIR/{spec.name}/{split}.jsonl"
            ) from None
        where = f"{spec.dataset_path}/{spec.dataset_name}"
    needed = list(spec.text_fields) + [spec.label_field]
    absent = [c for c in needed if c not in ds.column_names]
    if absent:
        raise UserError(
            f"{where} lacks column(s) {', '.join(absent)} needed by task '{spec.name}' "
            f"(it has: {', '.join(ds.column_names)}); rename them to the hub dataset's column names"
        )
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds
