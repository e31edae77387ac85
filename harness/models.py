"""The Ettin suite and any other Hugging Face model, each with its architecture.

A model spec string is a registry name (``ettin-encoder-17m``), a hub id
(``jhu-clsp/ettin-encoder-17m``) or a local path, optionally followed by
``@REVISION`` and/or ``:encoder`` / ``:decoder`` to override the architecture read from
the config: ``jhu-clsp/ettin-decoder-150m@step599525``, ``./my-model:encoder``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import UserError, first_line

HUB_ORG = "jhu-clsp"
SIZES = ("17m", "32m", "68m", "150m", "400m", "1b")
ARCHITECTURES = ("encoder", "decoder")
# variant -> architecture of the model it names
VARIANTS = {
    "encoder": "encoder",
    "decoder": "decoder",
    "encoder-from-decoder": "encoder",
    "decoder-from-encoder": "decoder",
}
# Backbone parameters (embeddings and layers, no task head) of each size, the same for the
# encoder and the decoder: counted on ModernBertModel / ModernBertDecoderModel built with the
# paper's Table 1 shapes and the 50,368-token vocabulary.
PARAMETERS = {
    "17m": 16_797_440,
    "32m": 31_883_136,
    "68m": 68_144_640,
    "150m": 149_014_272,
    "400m": 394_781_696,
    "1b": 1_028_050_688,
}
# Checkpoint tags published on the hub as revisions of every Ettin model, e.g. the end of
# pre-training, of the mid-training context extension and of the decay phase (Ettin README).
KNOWN_REVISIONS = ("step599525", "ext1000", "decay100")
# Hub ids of the cross-objective models. The authors' scripts and every third-party loader found
# spell them short (orionw/lm-evaluation-harness run_eval.sh: jhu-clsp/ettin-enc-from-dec-68m;
# JHU-CLSP/ettin-encoder-vs-decoder bias_eval/batch_eval.py: ettin-enc-from-dec-<size>, and
# dec-from-enc by replacement), the Ettin README's links spell them long; the long form is kept
# as an alias, tried when the short one is not found. The pre-release scripts call 68m "66m".
CROSS_IDS = {"encoder-from-decoder": ("ettin-enc-from-dec-{size}", "ettin-encoder-from-decoder-{size}"),
             "decoder-from-encoder": ("ettin-dec-from-enc-{size}", "ettin-decoder-from-encoder-{size}")}
PRE_RELEASE_SIZE = {"68m": "66m"}
# Encoders trained from a decoder were scored by the authors' lm-eval fork with its MNTP option
# (run_eval.sh: uses_mtnp=True for ettin-enc-from-dec-68m).
MNTP_VARIANTS = ("encoder-from-decoder",)


@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate."""

    model_id: str  # hub id or local path
    architecture: str  # "encoder" | "decoder"
    revision: str | None = None
    name: str = ""  # short display name
    size: str | None = None  # Ettin size, None for other models
    variant: str | None = None  # Ettin variant (see VARIANTS), None for other models
    parameters: int | None = None
    family: str = "other"  # "ettin", "ettin-cross" (cross-objective), "tiny" (local stand-in), "other"
    aliases: tuple[str, ...] = ()  # other hub ids of the same model, tried in order when model_id is not found
    pair: str | None = None  # the name of the encoder/decoder pair this model belongs to (reports pair on it)
    mntp: bool = False  # encoders: score by MNTP (read one position before the first [MASK]) by default
    phase_ends: tuple = ()  # --revisions: ((phase, last tag number), ...) of the model's tags (harness/revisions.py)

    def to_dict(self) -> dict:
        return asdict(self)


def ettin(variant: str, size: str, revision: str | None = None) -> ModelSpec:
    if variant not in VARIANTS:
        raise UserError(f"unknown Ettin variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if size not in SIZES:
        raise UserError(f"unknown Ettin size '{size}'; choose from {', '.join(SIZES)}")
    name = f"ettin-{variant}-{size}"
    ids = [f"{HUB_ORG}/{name}"]
    if variant in CROSS_IDS:
        ids = [f"{HUB_ORG}/{form.format(size=size)}" for form in CROSS_IDS[variant]]
        if size in PRE_RELEASE_SIZE:
            ids.append(f"{HUB_ORG}/{CROSS_IDS[variant][0].format(size=PRE_RELEASE_SIZE[size])}")
    return ModelSpec(
        model_id=ids[0],
        architecture=VARIANTS[variant],
        revision=revision,
        name=name,
        size=size,
        variant=variant,
        parameters=PARAMETERS[size],
        family="ettin" if variant in ARCHITECTURES else "ettin-cross",
        aliases=tuple(ids[1:]),
        pair=f"{size} (cross)" if variant in CROSS_IDS else size,
        mntp=variant in MNTP_VARIANTS,
    )


def registry() -> list[ModelSpec]:
    """Every Ettin model: 6 sizes x (encoder, decoder, and both cross-objective variants)."""
    return [ettin(v, s) for s in SIZES for v in VARIANTS]


def parse_sizes(text: str) -> list[str]:
    sizes = [s.strip().lower() for s in text.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            raise UserError(f"unknown size '{s}' in --sizes; choose from {', '.join(SIZES)}")
    return sizes


def suite(sizes: list[str], arch: str, revision: str | None = None) -> list[ModelSpec]:
    """The Ettin encoder and/or decoder of each size (``arch``: encoder | decoder | both)."""
    if arch not in ("encoder", "decoder", "both"):
        raise UserError(f"unknown --arch '{arch}'; use encoder, decoder or both")
    archs = ARCHITECTURES if arch == "both" else (arch,)
    return [ettin(a, s, revision) for s in sizes for a in archs]


def _split_spec(text: str) -> tuple[str, str | None, str | None]:
    arch = None
    for suffix in ARCHITECTURES:
        if text.endswith(":" + suffix):
            text, arch = text[: -len(suffix) - 1], suffix
            break
    else:
        head, colon, tail = text.rpartition(":")
        if colon and tail and "/" not in tail and not os.path.exists(text) and not tail.isdigit():
            raise UserError(f"unknown suffix ':{tail}' in --model {text}; use :encoder or :decoder "
                            "(or leave it out to read the architecture from the config)")
    revision = None
    # '@' marks a revision unless the text is an existing path that contains one
    if "@" in text and not os.path.exists(text):
        text, revision = text.rsplit("@", 1)
    return text, revision, arch


def resolve(text: str, revision: str | None = None) -> ModelSpec:
    """Turn ``--model`` text into a spec, reading the architecture from the config if needed."""
    model_id, rev, arch = _split_spec(text.strip())
    rev = rev or revision
    for spec in registry():
        if model_id in (spec.name, spec.model_id, *spec.aliases) or model_id == f"{HUB_ORG}/{spec.name}":
            if arch and arch != spec.architecture:
                spec = ModelSpec(**{**asdict(spec), "architecture": arch})
            return ModelSpec(**{**asdict(spec), "revision": rev})
    config = load_config(model_id, rev)  # also stops on a path that is not a model folder
    base = os.path.basename(model_id.rstrip("/")).lower()
    return ModelSpec(
        model_id=model_id,
        architecture=arch or architecture_of(config, model_id),
        revision=rev,
        name=display_name(model_id) if os.path.isdir(model_id) else model_id,
        parameters=None,
        # a copy of a cross-objective encoder keeps the fork's MNTP scoring
        mntp=any(n in base for n in ("encoder-from-decoder", "enc-from-dec")),
    )


GENERIC_FOLDER_NAMES = {"model", "models", "hf", "final", "weights", "pytorch", "transformers"}


def display_name(path: str) -> str:
    """A short name for a local model folder: its name, with its parent's when the name alone
    says nothing (``.../all-MiniLM-L6-v2/model`` -> ``all-MiniLM-L6-v2/model``)."""
    p = Path(path).resolve()
    if (p.name.lower() in GENERIC_FOLDER_NAMES or p.name.lower().startswith("checkpoint")) and p.parent.name:
        return f"{p.parent.name}/{p.name}"
    return p.name


def check_available(spec: ModelSpec) -> str:
    """Fail now, before any work, when no id of ``spec`` can be read; returns the id that was."""
    from transformers import AutoConfig

    return load_with_aliases(spec, lambda name: AutoConfig.from_pretrained(name, revision=spec.revision))[1]


def with_pair(specs: list[ModelSpec], name: str) -> list[ModelSpec]:
    """``specs`` (one encoder and one decoder) marked as the pair ``name``, which reports show as one row."""
    archs = sorted(s.architecture for s in specs)
    if archs != ["decoder", "encoder"]:
        raise UserError(f"--pair {name} needs exactly one encoder and one decoder among the --model models, "
                        f"got: {', '.join(f'{s.name} ({s.architecture})' for s in specs) or 'none'}")
    return [ModelSpec(**{**asdict(s), "pair": name}) for s in specs]


def load_config(model_id: str, revision: str | None = None):
    from transformers import AutoConfig

    if os.path.isfile(model_id):
        folder = os.path.dirname(os.path.abspath(model_id))
        raise UserError(f"--model '{model_id}' is a file; give the folder that holds config.json ({folder})")
    if os.path.isdir(model_id):
        if not (Path(model_id) / "config.json").exists():
            from harness.revisions import in_training_order, local_revisions

            checkpoints = local_revisions(model_id)  # a training run: DIR/<revision>/ per checkpoint
            if checkpoints:
                return AutoConfig.from_pretrained(Path(model_id) / in_training_order(checkpoints)[-1])
            raise UserError(f"'{model_id}' has no config.json; point --model at a saved Hugging Face model folder "
                            "(or at a run's folder of checkpoints DIR/<revision>/, with --revisions)")
        return AutoConfig.from_pretrained(model_id)
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        raise UserError(f"model path '{model_id}' does not exist; check the path or give a hub id")
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision)
    except Exception as exc:  # hub unreachable, unknown repo or revision
        raise UserError(hub_error_message(f"model '{model_id}'", exc)) from None


def hub_commit(model_id: str, revision: str | None = None) -> str | None:
    """The commit sha of the hub snapshot ``model_id`` at ``revision`` loads from, read from the local
    Hugging Face cache (no network, so offline too); None for a local folder or an uncached id."""
    if os.path.isdir(model_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # not a valid repo id, an unreadable cache: nothing to record
        return None
    parts = Path(path).parts if isinstance(path, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def hub_dataset(repo_id: str, revision: str | None = None) -> dict:
    """A hub dataset a cell read, for its record: id, the revision asked for, and the commit sha the
    local Hugging Face cache holds for that revision (no network; None when not cached)."""
    from huggingface_hub import constants

    commit = None
    ref = revision or "main"
    folder = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}"
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        commit = ref if (folder / "snapshots" / ref).is_dir() else None
    elif (folder / "refs" / ref).is_file():
        commit = (folder / "refs" / ref).read_text().strip() or None
    return {"id": repo_id, "revision": revision, "commit": commit}


def load_with_aliases(spec: ModelSpec, load):
    """``(load(id), id)`` for the first of the spec's ids that loads. A failure to find the repository
    moves on to the next alias; when none loads, one line names every id tried and why."""
    tried = []
    for model_id in (spec.model_id, *spec.aliases):
        try:
            return load(model_id), model_id
        except OSError as exc:  # transformers turns "repository not found" and offline misses into OSError
            tried.append((model_id, exc))
            if not repository_missing(exc):  # network, gated repo, missing revision: another id would hide it
                raise UserError(hub_error_message(f"model '{model_id}'", exc)) from None
    if len(tried) == 1:
        raise UserError(hub_error_message(f"model '{spec.model_id}'", tried[0][1]))
    reasons = "; ".join(f"{i}: {first_line(e, 200)}" for i, e in tried)
    raise UserError(f"model '{spec.name or spec.model_id}' could not be loaded under any of its hub ids ({reasons}); "
                    "check your network or HF_HUB_OFFLINE, or pass a local path with --model")


def repository_missing(exc: BaseException) -> bool:
    """True when ``exc`` says the repository does not exist (or, offline, is not in the cache):
    the one case where the next alias of the same model may be tried."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(e, GatedRepoError) for e in chain) or "gated" in str(exc).lower():
        return False
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "not a valid model identifier" in str(exc):
        return True
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    return offline and (any(isinstance(e, LocalEntryNotFoundError) for e in chain) or "offline" in str(exc).lower()
                        or "cached files" in str(exc))


def hub_error_message(what: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline:
        return (
            f"{what} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it; "
            "download it with hub access first or pass a local path"
        )
    text = first_line(exc)
    return f"{what} could not be loaded from the Hugging Face hub ({text}); check the name and your network, or pass a local path"


def architecture_of(config, model_id: str = "") -> str:
    """'encoder' for masked-LM style models, 'decoder' for causal LMs, read from a config."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_decoder", False):
        return "decoder"
    for name in getattr(config, "architectures", None) or []:
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return "decoder"
        if name.endswith("ForMaskedLM"):
            return "encoder"
    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "decoder"
    raise UserError(
        f"cannot tell whether '{model_id}' (model_type '{model_type}') is an encoder or a decoder; "
        f"append ':encoder' or ':decoder' to --model"
    )


def describe_registry() -> list[dict]:
    return [{"name": s.name, "hub id": s.model_id, "aliases": ", ".join(s.aliases), "architecture": s.architecture,
             "variant": s.variant, "parameters": s.parameters} for s in registry()]
