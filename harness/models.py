"""The Ettin suite and any other Hugging Face model, each with its architecture.

A model spec string is a registry name (``ettin-encoder-17m``), a hub id
(``jhu-clsp/ettin-encoder-17m``) or a local path, optionally followed by
``@REVISION`` and/or ``:encoder`` / ``:decoder`` to override the architecture read from
the config: ``jhu-clsp/ettin-decoder-150m@step599525``, ``./my-model:encoder``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import UserError

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
# pre-training, of the mid-training context extension and of the decay phase.
KNOWN_REVISIONS = ("step599525", "ext1000", "decay100")


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

    def to_dict(self) -> dict:
        return asdict(self)


def ettin(variant: str, size: str, revision: str | None = None) -> ModelSpec:
    if variant not in VARIANTS:
        raise UserError(f"unknown Ettin variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if size not in SIZES:
        raise UserError(f"unknown Ettin size '{size}'; choose from {', '.join(SIZES)}")
    name = f"ettin-{variant}-{size}"
    return ModelSpec(
        model_id=f"{HUB_ORG}/{name}",
        architecture=VARIANTS[variant],
        revision=revision,
        name=name,
        size=size,
        variant=variant,
        parameters=PARAMETERS[size],
        family="ettin" if variant in ARCHITECTURES else "ettin-cross",
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
    revision = None
    # '@' marks a revision unless the text is an existing path that contains one
    if "@" in text and not os.path.exists(text):
        text, revision = text.rsplit("@", 1)
    return text, revision, arch


def resolve(text: str, revision: str | None = None) -> ModelSpec:
    """Turn ``--model`` text into a spec, reading the architecture from the config if needed."""
    model_id, rev, arch = _split_spec(text.strip())
    rev = rev or revision
    short = model_id.split("/", 1)[1] if model_id.startswith(HUB_ORG + "/") else model_id
    for spec in registry():
        if short == spec.name:
            if arch and arch != spec.architecture:
                spec = ModelSpec(**{**asdict(spec), "architecture": arch})
            return ModelSpec(**{**asdict(spec), "revision": rev})
    config = load_config(model_id, rev)
    return ModelSpec(
        model_id=model_id,
        architecture=arch or architecture_of(config, model_id),
        revision=rev,
        name=display_name(model_id) if os.path.isdir(model_id) else model_id,
        parameters=None,
    )


GENERIC_FOLDER_NAMES = {"model", "models", "hf", "final", "weights", "pytorch", "transformers"}


def display_name(path: str) -> str:
    """A short name for a local model folder: its name, with its parent's when the name alone
    says nothing (``.../all-MiniLM-L6-v2/model`` -> ``all-MiniLM-L6-v2/model``)."""
    p = Path(path).resolve()
    if (p.name.lower() in GENERIC_FOLDER_NAMES or p.name.lower().startswith("checkpoint")) and p.parent.name:
        return f"{p.parent.name}/{p.name}"
    return p.name


def load_config(model_id: str, revision: str | None = None):
    from transformers import AutoConfig

    if os.path.isdir(model_id):
        if not (Path(model_id) / "config.json").exists():
            raise UserError(f"'{model_id}' has no config.json; point --model at a saved Hugging Face model folder")
        return AutoConfig.from_pretrained(model_id)
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        raise UserError(f"model path '{model_id}' does not exist; check the path or give a hub id")
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision)
    except Exception as exc:  # hub unreachable, unknown repo or revision
        raise UserError(hub_error_message(f"model '{model_id}'", exc)) from None


def hub_error_message(what: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline:
        return (
            f"{what} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it; "
            "download it with hub access first or pass a local path"
        )
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_registry() -> list[dict]:
    rows = []
    for spec in registry():
        rows.append(
            {
                "name": spec.name,
                "hub id": spec.model_id,
                "architecture": spec.architecture,
                "variant": spec.variant,
                "parameters": spec.parameters,
            }
        )
    return rows
