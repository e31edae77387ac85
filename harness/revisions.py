"""Many revisions of a model as one axis of the plan (``--revisions``): which checkpoints exist, which
the user asked for, and their order in training.

A model's revisions are the hub repository's tags (``huggingface_hub.list_repo_refs``; the Ettin
repositories tag ``step<N>`` pretraining, ``ext<N>`` extension and ``decay<N>`` decay checkpoints,
JHU-CLSP/ettin-encoder-vs-decoder README, "Accessing Training Checkpoints"), or, for a local training
run, the sub-folders of ``DIR`` that hold a checkpoint (``DIR/<revision>/config.json``).

Selection (comma-separated, applied in training order): names (``step100,decay100``), globs
(``step*``, ``decay*``), ``all``, and ``every:K`` (every K-th of what the other items chose, or of
all, the last one always kept).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import replace
from pathlib import Path

from harness.errors import UserError, first_line

# training phases in order; a revision of no known phase sorts after them, by name
PHASES = ("step", "checkpoint-", "ext", "decay")
PHASE_NAMES = {"step": "pretraining", "checkpoint-": "training", "ext": "extension", "decay": "decay"}


def training_key(revision: str) -> tuple:
    """Sort key: phase (pretraining < extension < decay), then the number within the phase."""
    for rank, prefix in enumerate(PHASES):
        m = re.fullmatch(rf"{re.escape(prefix)}(\d+)", revision)
        if m:
            return (rank, int(m.group(1)), revision)
    return (len(PHASES), 0, revision)


def phase_of(revision: str) -> str | None:
    rank = training_key(revision)[0]
    return PHASE_NAMES[PHASES[rank]] if rank < len(PHASES) else None


def in_training_order(revisions) -> list[str]:
    return sorted(dict.fromkeys(revisions), key=training_key)


def local_revisions(folder: str) -> list[str]:
    """The sub-folders of a local run that hold a checkpoint (a config.json)."""
    return [p.name for p in Path(folder).iterdir() if p.is_dir() and (p / "config.json").exists()]


def hub_revisions(model_id: str) -> list[str]:
    from huggingface_hub import list_repo_refs

    try:
        refs = list_repo_refs(model_id)
    except Exception as exc:
        raise UserError(f"the revisions of '{model_id}' could not be listed ({first_line(exc)}); check the id and "
                        "your network (HF_HUB_OFFLINE), or give the revisions by name") from None
    return [t.name for t in refs.tags]


def available(model_id: str) -> list[str]:
    return local_revisions(model_id) if os.path.isdir(model_id) else hub_revisions(model_id)


def select(text: str, revisions: list[str]) -> list[str]:
    """The revisions ``text`` names, in training order; a name or glob that matches nothing is an error."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    every = [t for t in items if t.startswith("every:")]
    rest = [t for t in items if not t.startswith("every:")]
    if len(every) > 1:
        raise UserError(f"--revisions takes one every:K, not {', '.join(every)}")
    chosen: list[str] = []
    for item in rest or ["all"]:
        if item == "all":
            chosen += revisions
            continue
        matched = fnmatch.filter(revisions, item) if any(c in item for c in "*?[") else \
            [item] if item in revisions else []
        if not matched:
            shown = ", ".join(in_training_order(revisions)[:8]) + (" ..." if len(revisions) > 8 else "")
            raise UserError(f"--revisions: '{item}' names no revision of this model (it has {len(revisions)}: "
                            f"{shown or 'none'})")
        chosen += matched
    ordered = in_training_order(chosen)
    if every:
        try:
            k = int(every[0].split(":", 1)[1])
        except ValueError:
            k = 0
        if k < 1:
            raise UserError(f"--revisions {every[0]}: K must be a whole number >= 1, e.g. every:10")
        ordered = [r for i, r in enumerate(ordered) if i % k == 0 or i == len(ordered) - 1]
    return ordered


def tokens_seen(model_id: str, revision: str) -> int | None:
    """Training tokens a checkpoint had seen, where the run says so: a local checkpoint's
    ``trainer_state.json`` (``num_input_tokens_seen``, as transformers' Trainer writes it). None
    otherwise: the revision is still evaluated and plotted by its place in training order."""
    path = Path(model_id) / "trainer_state.json"
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("num_input_tokens_seen")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def expand(specs: list, text: str, single: str | None) -> list:
    """Each model spec once per revision ``text`` selects, in training order. Hub revisions named
    one by one are taken as given (no listing, so offline works); a local run's checkpoint is its
    folder DIR/<revision>, named by the run and the revision."""
    if single:
        raise UserError("--revision and --revisions exclude each other; give the one revision in --revisions")
    names = [t.strip() for t in text.split(",") if t.strip()]
    plain = not any(n == "all" or n.startswith("every:") or any(c in n for c in "*?[") for n in names)
    out = []
    for spec in specs:
        local = os.path.isdir(spec.model_id)
        chosen = in_training_order(names) if plain and not local else select(text, available(spec.model_id))
        for rev in chosen:
            where = os.path.join(spec.model_id, rev) if local else spec.model_id
            out.append(replace(spec, model_id=where, revision=rev,
                               name=spec.name or os.path.basename(os.path.normpath(spec.model_id))))
    return out
