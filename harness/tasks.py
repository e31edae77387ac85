"""Classification (GLUE-style) task specs from YAML, and their data rows, validated.

Tasks are data: adding one is adding a YAML file to ``tasks/glue/`` (or to a folder given with
``--include-path``). A task of the suite takes its group and headline metric from
``tasks/suite.yaml``; a task of your own names them in its YAML. Bad rows (labels outside the
task's classes, ``-1`` test labels, NaN scores, empty splits, undecodable bytes) stop with one
line naming the file, the row and the fix. This module knows nothing about models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.bundled import tasks_dir
from harness.configs import digest
from harness.errors import UserError, first_line
from harness.metrics import METRICS
from harness.suite import suite

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
REQUIRED_FIELDS = ("task", "dataset_path", "train_split", "eval_splits", "text_fields", "label_type", "metrics")
EXAMPLE = "see tasks/glue/sst2.yaml for the format"


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
    source: str = field(default="", compare=False)
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    custom: bool = field(default=False, compare=False)  # replaces a shipped task with other content

    adapter = "classification"

    @property
    def primary_split(self) -> str:
        return self.eval_splits[0].split

    @property
    def is_regression(self) -> bool:
        return self.label_type == "regression"

    def identity(self) -> dict:
        """Everything in the spec that can change a number (not where the file lies)."""
        return {"name": self.name, "dataset": [self.dataset_path, self.dataset_name], "train": self.train_split,
                "eval": [[e.split, e.metric_suffix] for e in self.eval_splits], "text": list(self.text_fields),
                "label": [self.label_field, self.label_type, self.num_labels], "metrics": list(self.metrics),
                "headline": self.headline_metric, "extra": digest(self.extra)}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_task(data: dict, source: str = "<dict>") -> TaskSpec:
    if not isinstance(data, dict):
        raise UserError(f"task file {source} is not a YAML mapping; {EXAMPLE}")
    missing = [f for f in REQUIRED_FIELDS if f not in data]
    if missing:
        raise UserError(f"task file {source} lacks field(s) {', '.join(missing)}; add them ({EXAMPLE})")
    label_type = data["label_type"]
    if label_type not in ("classification", "regression"):
        raise UserError(f"task file {source}: label_type must be classification or regression, not '{label_type}'")
    num_labels = data.get("num_labels", 1 if label_type == "regression" else 2)
    least = 1 if label_type == "regression" else 2
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or not least <= num_labels <= MAX_LABELS \
            or (label_type == "regression" and num_labels != 1):
        raise UserError(f"task file {source}: num_labels must be a whole number from {least} to "
                        f"{1 if label_type == 'regression' else MAX_LABELS}, not {num_labels!r}")
    metrics = tuple(_as_list(data["metrics"]))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"task file {source}: unknown metric(s) {unknown}; known: {', '.join(sorted(METRICS))}")
    splits = [EvalSplit(str(i["split"]), str(i.get("metric_suffix", ""))) if isinstance(i, dict) else EvalSplit(str(i))
              for i in _as_list(data["eval_splits"])]
    text_fields = tuple(_as_list(data["text_fields"]))
    if not 1 <= len(text_fields) <= 2:
        raise UserError(f"task file {source}: text_fields must name one or two columns")
    name = check_task_name(str(data["task"]), f"task file {source}")
    known = suite().tasks.get(name)
    headline = data.get("headline_metric") or (known.headline if known else metrics[0])
    if headline not in metrics:
        raise UserError(f"task file {source}: headline_metric '{headline}' is not one of its metrics")
    fields = set(REQUIRED_FIELDS) | {"group", "dataset_name", "label_field", "num_labels", "headline_metric",
                                     "epochs_group", "warm_start_from", "adapter", "description"}
    return TaskSpec(
        name=name,
        group=str(data.get("group") or (known.group if known else "custom")),
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
        extra={k: v for k, v in data.items() if k not in fields},
    )


_WARNED: set[tuple[str, str]] = set()


def replacing(spec, shipped: dict):
    """``spec`` from an --include-path folder; where it takes a shipped task's name it is warned
    about (once per file and process) and, when its content differs, marked ``custom``: its
    records are labelled 'custom spec', never 'paper'."""
    old = shipped.get(spec.name)
    if old is None:
        return spec
    differs = spec.identity() != old.identity()
    if (spec.name, spec.source) not in _WARNED:
        _WARNED.add((spec.name, spec.source))
        logging.getLogger(__name__).warning(
            "task '%s' in %s replaces the shipped one (%s); its records are labelled %s", spec.name, spec.source,
            old.source, "'custom spec'" if differs else "as the shipped task's (same content)")
    return dataclasses.replace(spec, custom=True) if differs else spec


MAX_LABELS = 10_000  # a label layer of hidden x num_labels; more is a typo, not a task
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


def check_task_name(name: str, where: str) -> str:
    """``name``, refused unless it is safe as one path component (it names record and samples files)."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{where}: task name {name!r} is not allowed; use letters, digits, '_', '-', '.' or '+' "
                        "(no '/', no '..')")
    return name


def _read_yaml(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise UserError(f"task file {path} is not valid YAML ({first_line(exc)}); fix its syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"task file {path} cannot be read ({exc}); fix or remove it") from None


def is_classification_yaml(data) -> bool:
    """A YAML mapping that says ``adapter: classification``, or has the classification fields."""
    if not isinstance(data, dict):
        return False
    if "adapter" in data:
        return data["adapter"] == "classification"
    return "text_fields" in data or "label_type" in data


def load_tasks(include_paths: list[str] | None = None) -> dict[str, TaskSpec]:
    """All classification tasks: the shipped ``tasks/glue`` plus any ``--include-path`` folders."""
    dirs = [tasks_dir() / "glue"]
    for p in include_paths or []:
        if not os.path.isdir(p):
            raise UserError(f"--include-path '{p}' is not a folder; give a folder of task YAML files")
        dirs.append(Path(p))
    found: dict[str, TaskSpec] = {}
    shipped: dict[str, TaskSpec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            data = _read_yaml(path)
            if is_classification_yaml(data):
                spec = parse_task(data, str(path))
                found[spec.name] = replacing(spec, shipped) if d != dirs[0] else shipped.setdefault(spec.name, spec)
    if not any(s.group == "glue" for s in found.values()):
        raise UserError(f"no GLUE task YAML in {dirs[0]}; the installation is incomplete: reinstall ettin-harness")
    order = {name: i for i, name in enumerate(suite().tasks)}  # the suite's (the paper's) order first
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def groups(specs: dict[str, TaskSpec]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs.values():
        out.setdefault(spec.group, []).append(spec.name)
    return out


def select(names: list[str], specs: dict[str, TaskSpec]) -> list[TaskSpec]:
    """Expand task names and group names (``glue``) into specs, keeping order, without repeats."""
    by_group = groups(specs)
    chosen: list[TaskSpec] = []
    for name in names:
        if name in specs:
            items = [specs[name]]
        elif name in by_group:
            items = [specs[n] for n in by_group[name]]
        else:
            known = sorted(set(specs) | set(by_group))
            raise UserError(f"unknown task '{name}'; known tasks and groups: {', '.join(known)} (see 'ettin-eval tasks')")
        for spec in items:
            if spec not in chosen:
                chosen.append(spec)
    return chosen


def task_folder(data_dir: str, task: str) -> Path:
    return Path(data_dir) / task


def find_local_file(data_dir: str, task: str, split: str) -> Path:
    base = task_folder(data_dir, task)
    for suffix in DATA_SUFFIXES:
        path = base / f"{split}{suffix}"
        if path.exists():
            return path
    raise UserError(f"no file for task '{task}' split '{split}' in --data-dir: expected {base}/{split}.jsonl "
                    f"(or .json/.csv/.parquet) with the hub dataset's column names")


def _undecodable_row(path: Path) -> str:
    """' row N' of the first line of a text file that is not UTF-8, or '' when none is found."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return f" (line {number})"
    return ""


def _read_local(path: Path, split: str):
    import datasets

    builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
    if path.suffix != ".parquet":
        where = _undecodable_row(path)
        if where:
            raise UserError(f"{path}{where} is not UTF-8 text; re-save the file as UTF-8")
        if not path.read_text(encoding="utf-8").strip():
            raise UserError(f"{path} holds no rows; give the split its rows or drop the task")
    noisy = logging.getLogger("datasets")  # it logs a parse error itself before raising it
    level = noisy.level
    noisy.setLevel(logging.CRITICAL)
    try:
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    except Exception as exc:
        if builder == "json" and path.suffix == ".jsonl":
            _raise_on_bad_json_line(path)
        while exc.__cause__ is not None:  # datasets wraps the parser's error in a generic one
            exc = exc.__cause__
        raise UserError(f"cannot read {path} ({first_line(exc)}); fix the file or its format") from None
    finally:
        noisy.setLevel(level)


def _raise_on_bad_json_line(path: Path) -> None:
    """Name the first line of a JSON-lines file that is not one JSON object (only on a failed load,
    so a good file is parsed once, by ``datasets``)."""
    for _ in json_lines(path):
        pass


def json_lines(path: Path):
    """(line number, row) for each JSON object of a JSON-lines file; a line that is not one, or
    bytes that are not UTF-8, stop with one line naming the file and the line."""
    with open(path, encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path} line {number} is not valid JSON ({exc.msg}); fix that line") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path} line {number} is not a JSON object ({{\"column\": value, ...}}); "
                                    "fix that line") from None
                yield number, row
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text; re-save the file as UTF-8") from None


def adapter_yaml(subdir: str, include_paths: list[str] | None, adapter: str):
    """(path, mapping, shipped) for every task YAML that says ``adapter: <adapter>``: the shipped
    ``tasks/<subdir>`` first, then the ``--include-path`` folders."""
    dirs = [tasks_dir() / subdir] + [Path(p) for p in include_paths or [] if os.path.isdir(p)]
    for i, d in enumerate(dirs):
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            data = _read_yaml(path)
            if isinstance(data, dict) and data.get("adapter") == adapter:
                yield path, data, i == 0


def _read_hub(spec: TaskSpec, split: str):
    import datasets

    try:
        return datasets.load_dataset(spec.dataset_path, spec.dataset_name, split=split)
    except Exception as exc:
        offline = any(os.environ.get(v, "0").lower() in ("1", "true") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
        reason = "hub access is off (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)" if offline else first_line(exc)
        raise UserError(f"dataset {spec.dataset_path}/{spec.dataset_name or ''} split '{split}' for task '{spec.name}' "
                        f"could not be loaded: {reason}; pass --data-dir DIR with DIR/{spec.name}/{split}.jsonl") from None


def check_rows(spec: TaskSpec, ds, where: str) -> None:
    """Stop on the first row a fine-tuning or a score must not use, naming it and the fix."""
    if len(ds) == 0:
        raise UserError(f"{where} holds no rows; give the split its rows or drop the task")
    for name in spec.text_fields:
        for i, text in enumerate(ds[name]):
            if text is None:
                raise UserError(f"{where} row {i + 1}: column '{name}' is empty (null); fill it or drop the row")
    for i, label in enumerate(ds[spec.label_field]):
        if spec.is_regression:
            ok = isinstance(label, (int, float)) and not isinstance(label, bool) and math.isfinite(label)
            if not ok:
                raise UserError(f"{where} row {i + 1}: label {label!r} is not a finite number; task '{spec.name}' "
                                "is a regression task: give every row a numeric score")
            continue
        if not (isinstance(label, int) and not isinstance(label, bool) or
                isinstance(label, float) and label.is_integer()) or not 0 <= label < spec.num_labels:
            hint = (" (-1 marks an unlabelled test split: score a labelled split instead)" if label == -1 else "")
            raise UserError(f"{where} row {i + 1}: label {label!r} is not one of the classes "
                            f"0..{spec.num_labels - 1} of task '{spec.name}'{hint}; fix the label or the task's num_labels")


def load_split(spec: TaskSpec, split: str, data_dir: str | None = None, limit: int | None = None):
    """One split of a task as a checked ``datasets.Dataset``, from ``data_dir`` when given, else the hub."""
    import datasets

    datasets.disable_progress_bars()
    if data_dir:
        path = find_local_file(data_dir, spec.name, split)
        ds, where = _read_local(path, split), str(path)
    else:
        ds, where = _read_hub(spec, split), f"{spec.dataset_path}/{spec.dataset_name}[{split}]"
    needed = list(spec.text_fields) + [spec.label_field]
    absent = [c for c in needed if c not in ds.column_names]
    if absent:
        raise UserError(f"{where} lacks column(s) {', '.join(absent)} needed by task '{spec.name}' "
                        f"(it has: {', '.join(ds.column_names)}); rename them to the hub dataset's column names")
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    check_rows(spec, ds, where)
    return ds
