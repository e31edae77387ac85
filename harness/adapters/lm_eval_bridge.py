"""The lm-eval adapter: scores Ettin encoders and decoders on lm-eval tasks with lm-eval's own
evaluator, task configs, filters and metrics.

Two lm-eval backends (``@register_model``): ``ettin-decoder`` (``DecoderLM``, decoder_lm.py) and
``ettin-encoder`` (``EncoderLM``, mask-append scoring, mask_append.py). Both take their model and
batching from the shared runner. ``tasks/generative`` holds the group ``generative`` (the Ettin
paper's suite) and local twins of its tasks (``<task>_local``: the same prompts and metrics on
JSONL files), used offline, by the tests and by the demo.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from lm_eval.api.registry import MODEL_REGISTRY, register_model

from harness.adapters.decoder_lm import DecoderLM
from harness.adapters.mask_append import EncoderLM
from harness.errors import UserError
from harness.metrics import GENERATIVE_TASKS
from harness.models import ModelSpec
from harness.tasks import REPO_TASKS_DIR

GENERATIVE_DIR = REPO_TASKS_DIR / "generative"
# The Ettin paper's generative suite (its Table 4); arc_easy and boolq are available as well.
GENERATIVE_GROUP = list(GENERATIVE_TASKS)
TWIN_SUFFIX = "_local"
# The metric a task's headline number is (see docs): lm-eval's length-normalised accuracy where the
# task defines one, as in the Pythia/OLMo/SmolLM tables the Ettin paper compares with; accuracy
# otherwise; exact match for the one generation task.
HEADLINE_METRIC = {
    "arc_challenge": "acc_norm", "arc_easy": "acc_norm", "hellaswag": "acc_norm", "openbookqa": "acc_norm",
    "piqa": "acc_norm", "sciq": "acc_norm", "lambada_openai": "acc", "social_iqa": "acc", "winogrande": "acc",
    "wsc273": "acc", "boolq": "acc", "triviaqa": "exact_match", "wikitext": "word_perplexity",
    "generative_demo": "acc_norm",
}
# Folder names under --data-dir that hold a task's files, besides the task's own name.
DATA_DIR_ALIASES = {"social_iqa": ["siqa"]}
LM_OPTIONS = {"encoder": {"num_masks", "score_sep", "max_length"},
              "decoder": {"add_bos_token", "prefix_sharing", "max_length"}}
EVAL_OPTIONS = {"bootstrap_iters", "gen_kwargs", "fewshot_random_seed"}

for _name, _cls in (("ettin-encoder", EncoderLM), ("ettin-decoder", DecoderLM)):
    if _name not in MODEL_REGISTRY:
        register_model(_name)(_cls)


class _NoCustomDatasetHint(logging.Filter):
    """lm-eval warns about --metadata whenever a task has a custom_dataset, as every twin has."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed to `--metadata`" not in record.getMessage()


logging.getLogger("lm_eval.api.task").addFilter(_NoCustomDatasetHint())


def _quiet_git_hash() -> str | None:
    """lm-eval records the git commit of the working directory and lets git's "fatal: not a git
    repository" through to the terminal; the same lookup, without the noise."""
    try:
        out = subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL)
        return out.strip().decode()
    except (subprocess.CalledProcessError, OSError):
        return None


def _silence_lm_eval_git() -> None:
    import lm_eval.evaluator

    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash


_silence_lm_eval_git()


# -- tasks -------------------------------------------------------------------------------------
def _include_paths(include_paths) -> tuple[str, ...]:
    paths = [str(GENERATIVE_DIR)]
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
    """(manager, index entry) for a task, group or tag name; the local folders are searched first,
    so local tasks never pay for indexing all of lm-eval."""
    paths = _include_paths(include_paths)
    local = _manager(paths, False)
    if name in local.task_index:
        return local, local.task_index[name]
    full = _manager(paths, True)
    return full, full.task_index.get(name)


def local_tasks(include_paths: list[str] | None = None) -> list[str]:
    """Task and group names of tasks/generative and ``include_paths`` (no full lm-eval index)."""
    return sorted(_manager(_include_paths(include_paths), False).task_index)


def is_lm_eval_task(name: str, include_paths: list[str] | None = None) -> bool:
    return _lookup(name, include_paths)[1] is not None


def expand_tasks(names: list[str], include_paths: list[str] | None = None) -> list[str]:
    """Task names with groups and tags replaced by their tasks, in order, without repeats."""
    from lm_eval.tasks._index import Kind

    out: list[str] = []
    opened: set[str] = set()  # groups and tags already expanded (guards against cycles)

    def visit(name: str, parent: str | None) -> None:
        if name in opened:
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
            out.append(name)

    for n in names:
        visit(n, None)
    return out


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
        base = task[: -len(TWIN_SUFFIX)] if task.endswith(TWIN_SUFFIX) else task
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
    base = (cfg.get("metadata") or {}).get("twin_of") or requested
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
        reason = str(exc).splitlines()[0] if str(exc) else ""
        if local or data_dir:
            where = f"the files under --data-dir {data_dir}" if data_dir else "its files"
            raise UserError(f"task '{task}' could not be built from {where} ({type(exc).__name__}: {reason}); "
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
    base = task[: -len(TWIN_SUFFIX)] if task.endswith(TWIN_SUFFIX) else task
    preferred = HEADLINE_METRIC.get(base)
    if preferred in metrics:
        return preferred
    for name in ("acc_norm", "acc", "exact_match"):
        if name in metrics:
            return name
    return next((m for m in metrics if not m.endswith("_stderr")), "")


# -- evaluation --------------------------------------------------------------------------------
def make_lm(runner, spec: ModelSpec, options: dict | None = None):
    """EncoderLM or DecoderLM for ``spec`` on ``runner``."""
    options = dict(options or {})
    cls = EncoderLM if spec.architecture == "encoder" else DecoderLM
    return cls(runner=runner, spec=spec, **options)


def evaluate_task(runner, spec: ModelSpec, task: str, *, include_paths: list[str] | None = None,
                  data_dir: str | None = None, limit: int | float | None = None, log_samples: bool = False,
                  num_fewshot: int | None = None, options: dict | None = None) -> dict:
    """Score ``spec`` on one lm-eval task with lm-eval's evaluator; returns the adapter's result.

    ``options``: ``num_masks``, ``score_sep`` (encoders), ``add_bos_token``, ``prefix_sharing``
    (decoders), ``max_length``, and lm-eval's ``bootstrap_iters``, ``gen_kwargs``,
    ``fewshot_random_seed``.
    """
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    options = dict(options or {})
    allowed = LM_OPTIONS.get(spec.architecture, set()) | EVAL_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for a {spec.architecture} on lm-eval tasks; "
                        f"known: {', '.join(sorted(allowed))}")
    eval_kwargs = {k: options.pop(k) for k in list(options) if k in EVAL_OPTIONS}
    for key in ("bootstrap_iters", "fewshot_random_seed"):
        if key in eval_kwargs:
            eval_kwargs[key] = int(eval_kwargs[key])
    manager, task_obj = build_task(task, include_paths, data_dir)
    lm = make_lm(runner, spec, options)
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
    }
