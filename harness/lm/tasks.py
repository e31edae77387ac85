"""Finding lm-eval tasks: lm-eval's own, the local twins in tasks/generative, --include-path
folders and --data-dir files; expanding groups; and a hash of each task's YAML for cell keys."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

from harness.bundled import tasks_dir
from harness.configs import fingerprint_folders
from harness.errors import UserError, first_line, one_line
from harness.tasks import check_task_name
from harness.suite import TWIN_SUFFIX, suite

# Folder names under --data-dir that hold a task's files, besides the task's own name.
DATA_DIR_ALIASES = {"social_iqa": ["siqa"],
                    **{f"winogender_{v}": ["winogender"] for v in ("all", "male", "female", "neutral", "gotcha",
                                                                   "gotcha_male", "gotcha_female")}}


def _include_paths(include_paths) -> tuple[str, ...]:
    paths = [str(tasks_dir() / "generative")]
    for p in include_paths or []:
        if not os.path.isdir(p):
            raise UserError(f"--include-path '{p}' is not a folder; give a folder of lm-eval task YAML files")
        if os.path.abspath(p) not in paths:
            paths.append(os.path.abspath(p))
    return tuple(paths)


@functools.lru_cache(maxsize=8)
def _manager(paths: tuple[str, ...], include_defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths), include_defaults=include_defaults)


def task_manager(include_paths: list[str] | None = None):
    """lm-eval's TaskManager over its own tasks, tasks/generative and ``include_paths``; built once
    per process for each set of include paths (indexing every lm-eval task takes seconds)."""
    return _manager(_include_paths(include_paths), True)


def _lookup(name: str, include_paths):
    """(manager, index entry) of a task, group or tag; local folders first, so local tasks never
    pay for indexing all of lm-eval."""
    paths = _include_paths(include_paths)
    local = _manager(paths, False)
    if name in local.task_index:
        return local, local.task_index[name]
    full = _manager(paths, True)
    return full, full.task_index.get(name)


def local_tasks(include_paths: list[str] | None = None) -> list[str]:
    """Task and group names of tasks/generative and ``include_paths`` (no full lm-eval index)."""
    return sorted(_manager(_include_paths(include_paths), False).task_index)


def _suite_group(name: str) -> list[str] | None:
    """A suite group (``generative``) or its twins (``generative_local``) as task names."""
    s = suite()
    base = name.removesuffix(TWIN_SUFFIX)
    if base not in s.groups:
        return None
    members = list(s.expand(base))
    return [m + TWIN_SUFFIX for m in members] if name.endswith(TWIN_SUFFIX) else members


def expand_tasks(names: list[str], include_paths: list[str] | None = None) -> list[str]:
    """Task names with groups and tags replaced by their tasks, in order, without repeats."""
    from lm_eval.tasks._index import Kind

    out: list[str] = []
    opened: set[str] = set()  # groups and tags already expanded (guards against cycles)

    def visit(name: str, parent: str | None) -> None:
        if name in opened:
            return
        if (members := _suite_group(name)) is not None:
            opened.add(name)
            for member in members:
                visit(member, name)
            return
        entry = _lookup(name, include_paths)[1]
        if entry is None:
            where = (f"in group '{parent}'" if parent else
                     "(not a GLUE task, an lm-eval task, group or tag, nor a YAML task under --include-path)")
            raise UserError(f"unknown task '{name}' {where}; list lm-eval's tasks with 'lm-eval ls tasks'")
        if entry.kind in (Kind.TAG, Kind.GROUP):
            opened.add(name)
        if entry.kind == Kind.TAG:
            for member in sorted(entry.tags):
                visit(member, name)
        elif entry.kind == Kind.GROUP:
            for member in (entry.cfg or {}).get("task") or []:
                if isinstance(member, dict):
                    if set(member) - {"task", "group"}:
                        inner = member.get("task") or member.get("group")
                        raise UserError(f"group '{name}' sets options on its member '{inner}'; "
                                        "ask for that group's tasks by name instead")
                    member = member.get("task") or member.get("group")
                visit(member, name)
        elif name not in out:
            out.append(check_task_name(name, f"lm-eval task in group '{parent}'" if parent else "--tasks"))

    for n in names:
        visit(n, None)
    return out


def fingerprint(task: str, include_paths: list[str] | None = None) -> str:
    """A hash of what defines ``task``: its YAML folder (the YAML, the files it includes, its
    Python helpers; for a local folder also its fixture files)."""
    entry = _lookup(task, include_paths)[1]
    if entry is None or not getattr(entry, "yaml_path", None):
        return ""
    folder = Path(entry.yaml_path).parent
    local = any(str(folder).startswith(p) for p in _include_paths(include_paths))
    if local:
        return fingerprint_folders([folder])
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".py"))
    h = hashlib.sha1()
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def is_local(task: str, include_paths: list[str] | None = None) -> bool:
    """True when ``task`` reads local files (a twin, a fixture) rather than a hub dataset."""
    entry = _lookup(task, include_paths)[1]
    return entry is not None and _is_local(entry)


def _is_local(entry) -> bool:
    cfg = entry.cfg or {}
    return bool(cfg.get("custom_dataset")) or cfg.get("dataset_path") in ("json", "csv", "parquet", "text")


def _twin_of(name: str, include_paths):
    """The index entry of ``name``'s local twin, or None."""
    local = _manager(_include_paths(include_paths), False)
    entry = local.task_index.get(name + TWIN_SUFFIX)
    return entry if entry is not None and _is_local(entry) else None


def data_folder_names(task: str, base: str | None = None) -> list[str]:
    """Folder names under --data-dir that may hold ``task``'s files: its own name, the task it is
    a local twin of (``base``, by default the name without the twin suffix) and that task's aliases."""
    if base is None:
        base = task.removesuffix(TWIN_SUFFIX)
    return list(dict.fromkeys([task, base, *DATA_DIR_ALIASES.get(base, [])]))


def _find_data_file(data_dir: str, names: list[str], split: str) -> Path | None:
    for name in names:
        base = Path(data_dir) / name
        if (base / f"{split}.jsonl").exists():
            return base / f"{split}.jsonl"
        matches = sorted(base.glob(f"{split}_*.jsonl"))  # e.g. validation_subset.jsonl
        if len(matches) == 1:
            return matches[0]
    return None


def _build_with_data_dir(manager, entry, requested: str, data_dir: str):
    """The local task ``entry`` reading DIR/<task>/<split>.jsonl instead of its own files.

    The task's evaluation split is read when present; a task evaluated on ``test`` falls back to
    ``validation`` (local copies often hold only that); ``train``, when present, feeds few-shot.
    """
    cfg = entry.cfg or {}
    meta = cfg.get("metadata") or {}
    base = meta.get("twin_of") or requested
    if meta.get("data_file"):  # a task whose data is one named file of a shared folder (Winogender)
        return _build_with_data_file(manager, entry, requested, data_dir, meta["data_folder"], meta["data_file"])
    names = data_folder_names(requested, base)
    eval_key = "test_split" if cfg.get("test_split") else "validation_split"
    candidates = [(eval_key, cfg.get(eval_key) or "validation")]
    if eval_key == "test_split":
        candidates.append(("validation_split", "validation"))
    found = next(((key, split, path) for key, split in candidates
                  if (path := _find_data_file(data_dir, names, split)) is not None), None)
    if found is None:
        wanted = " or ".join(f"{Path(data_dir) / base}/{split}.jsonl" for _, split in candidates)
        raise UserError(f"no data for task '{requested}' in --data-dir: expected {wanted}")
    key, split, path = found
    files = {split: str(path.resolve())}
    overrides = {"training_split": None, "validation_split": None, "test_split": None, key: split}
    train = cfg.get("training_split") or "train"
    if (train_path := _find_data_file(data_dir, names, train)) is not None:
        files[train], overrides["training_split"] = str(train_path.resolve()), train
    overrides["dataset_kwargs"] = {**(cfg.get("dataset_kwargs") or {}), "data_files": files}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{entry.name}.yaml"
        path.write_text(json.dumps({"include": str(entry.yaml_path), **overrides}))  # JSON is YAML
        return manager.load([str(path)])["tasks"][entry.name]


def _build_with_data_file(manager, entry, requested: str, data_dir: str, folder: str, name: str):
    """The local task ``entry`` reading DIR/<folder>/<name> for its evaluation split."""
    path = Path(data_dir) / folder / name
    if not path.exists():
        raise UserError(f"no data for task '{requested}' in --data-dir: expected {path}")
    cfg = entry.cfg or {}
    key = "test_split" if cfg.get("test_split") else "validation_split"
    split = cfg.get(key) or "validation"
    overrides = {"dataset_kwargs": {**(cfg.get("dataset_kwargs") or {}), "data_files": {split: str(path.resolve())}}}
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = Path(tmp) / f"{entry.name}.yaml"
        yaml_path.write_text(json.dumps({"include": str(entry.yaml_path), **overrides}))  # JSON is YAML
        return manager.load([str(yaml_path)])["tasks"][entry.name]


def _offline() -> bool:
    return any(os.environ.get(v, "0").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def build_task(task: str, include_paths=None, data_dir: str | None = None):
    """(manager, lm-eval Task) for one task name, with errors a user can fix as one line."""
    from lm_eval.tasks._index import Kind

    manager, entry = _lookup(task, include_paths)
    if entry is None:
        expand_tasks([task], include_paths)  # raises the unknown-task error
    if entry.kind in (Kind.GROUP, Kind.TAG):
        raise UserError(f"'{task}' is a group of tasks; expand it into its tasks first")
    local = _is_local(entry)
    twin = None if local else _twin_of(task, include_paths)
    try:
        if data_dir:
            if not local and twin is None:
                raise UserError(f"--data-dir works with local tasks; '{task}' reads a hub dataset and has no local twin")
            source, source_entry = (manager, entry) if local else (_manager(_include_paths(include_paths), False), twin)
            return source, _build_with_data_dir(source, source_entry, task, data_dir)
        return manager, manager.load([task])["tasks"][task]
    except UserError:
        raise
    except Exception as exc:
        reason = first_line(exc)
        if local or data_dir:
            where = f"the files under --data-dir {data_dir}" if data_dir else "its files"
            raise UserError(f"task '{task}' could not be built from {where} ({one_line(exc)}); "
                            "check its YAML and that the files have the hub dataset's fields") from None
        dataset = (entry.cfg or {}).get("dataset_path", "?")
        alternative = (f"run its local twin '{twin.name}' instead, or add --data-dir DIR with DIR/{task}/<split>.jsonl"
                       if twin is not None else "run it with hub access first so the dataset is cached")
        if _offline():
            raise UserError(f"task '{task}' needs the Hugging Face hub dataset '{dataset}', which is not cached and "
                            f"HF_HUB_OFFLINE/HF_DATASETS_OFFLINE forbid downloading it; {alternative}") from None
        raise UserError(f"task '{task}' could not load the hub dataset '{dataset}' ({reason or type(exc).__name__}); "
                        f"{alternative}") from None


def headline_metric(task: str, metrics: dict) -> str:
    """The suite's headline metric of ``task`` (or its twin's base); else acc_norm, acc, exact_match."""
    preferred = suite().headline(task)
    if preferred in metrics:
        return preferred
    for name in ("acc_norm", "acc", "exact_match"):
        if name in metrics:
            return name
    return next((m for m in metrics if not m.endswith("_stderr")), "")
