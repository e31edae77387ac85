"""Many revisions of a model as one axis of the plan (``--revisions``): which checkpoints exist, which
the user asked for, and their order in training.

A model's revisions are the hub repository's tags (``huggingface_hub.list_repo_refs``; the Ettin
repositories tag ``step<N>`` pretraining, ``ext<N>`` extension and ``decay<N>`` decay checkpoints,
JHU-CLSP/ettin-encoder-vs-decoder README, "Accessing Training Checkpoints"), or, for a local training
run, the sub-folders of ``DIR`` that hold a checkpoint (``DIR/<revision>/config.json``).

Selection (comma-separated, applied in training order): names (``step100,decay100``), globs
(``step*``, ``decay*``), ``all``, and ``every:K`` (every K-th of what the other items chose, or of
all, the last one always kept).

Tokens seen (the x axis of a trajectory): a local checkpoint's ``trainer_state.json``; for the Ettin
models, the authors' Composer configs (JHU-CLSP/ettin-encoder-vs-decoder,
``pretraining/configs/standard/<shape>/{encoder,decoder}_<shape>.yaml`` and its ``de_decay/`` and
``prolong_decay/`` folders): each phase's length in tokens (``max_duration``, counting non-padding
tokens: ``count_padding_tokens: false``) and a save every 8.5 B tokens (``save_interval``). The
README's tags step596528 and step599525 are one save apart: 8.5 B / 2,997 steps = 2.836 M tokens a
step, and 599,525 such steps are the 1.7 T of ``max_duration`` (to 0.02%); step590532, its example
for the 400m decoder, is three saves earlier. So ``step<N>`` sits at N x 2.836 M tokens. Extension
(``ext<N>``) and decay (``decay<N>``) tags sit after pretraining (and extension) at their share of
the phase's tokens, N over the phase's last tag, when the model's tags were listed; otherwise their
position is unknown and they are placed by order only.
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


ETTIN_SAVE_INTERVAL = 8_500_000_000  # save_interval, every standard config
ETTIN_STEP_TOKENS = ETTIN_SAVE_INTERVAL / (599525 - 596528)  # two consecutive saves' tags (README)
ETTIN_PRETRAIN_TOKENS = 1_700_000_000_000  # max_duration of <shape>/{encoder,decoder}_<shape>.yaml
# (extension, decay) tokens: max_duration of de_decay/ and prolong_decay/; the 1b ("huge") runs are shorter
ETTIN_LATER_TOKENS = {"1b": (83_333_000_000, 16_666_666_667)}
ETTIN_LATER_DEFAULT = (250_000_000_000, 50_000_000_000)
ETTIN_CONFIG_SHAPE = {"17m": "very_tiny", "32m": "tiny", "68m": "mini", "150m": "base", "400m": "large", "1b": "huge"}


def phase_ends(revisions) -> tuple:
    """((phase prefix, largest number), ...) among a model's tags: where each phase's last tag sits."""
    ends: dict = {}
    for rev in revisions:
        rank, n, _ = training_key(rev)
        if rank < len(PHASES):
            ends[PHASES[rank]] = max(n, ends.get(PHASES[rank], 0))
    return tuple(sorted(ends.items()))


def ettin_tokens(size: str | None, revision: str, ends: tuple = ()) -> int | None:
    """Tokens an Ettin checkpoint had seen (see the module's docstring for the sources)."""
    rank, n, _ = training_key(revision)
    prefix = PHASES[rank] if rank < len(PHASES) else None
    if prefix == "step":
        return round(n * ETTIN_STEP_TOKENS)
    last = dict(ends).get(prefix)
    if prefix not in ("ext", "decay") or not last or size not in ETTIN_CONFIG_SHAPE:
        return None
    extension, decay = ETTIN_LATER_TOKENS.get(size, ETTIN_LATER_DEFAULT)
    start, length = (ETTIN_PRETRAIN_TOKENS, extension) if prefix == "ext" else (ETTIN_PRETRAIN_TOKENS + extension, decay)
    return round(start + length * min(n, last) / last)


def tokens_seen(spec) -> tuple[int | None, str | None]:
    """(training tokens a checkpoint had seen, where that figure comes from), or (None, None): the
    revision is still evaluated and plotted by its place in training order."""
    path = Path(spec.model_id) / "trainer_state.json"
    if path.exists():
        try:
            value = json.loads(path.read_text()).get("num_input_tokens_seen")
        except (OSError, ValueError):
            value = None
        if isinstance(value, (int, float)) and value > 0:
            return int(value), "trainer_state.json"
    if spec.family == "ettin" and spec.revision:
        tokens = ettin_tokens(spec.size, spec.revision, spec.phase_ends)
        if tokens is not None:
            return tokens, ("Ettin configs: step x 2.836M tokens" if spec.revision.startswith("step")
                            else "Ettin configs: share of the phase's tokens")
    return None, None


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
        if plain and not local:
            chosen, listed = in_training_order(names), _listed_if_online(spec)
        else:
            listed = available(spec.model_id)
            chosen = select(text, listed)
        for rev in chosen:
            where = os.path.join(spec.model_id, rev) if local else spec.model_id
            out.append(replace(spec, model_id=where, revision=rev, phase_ends=phase_ends(listed),
                               name=spec.name or os.path.basename(os.path.normpath(spec.model_id))))
    return out


def _listed_if_online(spec) -> list[str]:
    """An Ettin model's tags, to place its ext/decay checkpoints on the tokens axis; none offline
    (the revisions named still run, placed by order)."""
    from huggingface_hub import constants

    if spec.family != "ettin" or constants.HF_HUB_OFFLINE:
        return []
    try:
        return hub_revisions(spec.model_id)
    except UserError:
        return []
