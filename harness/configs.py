"""Typed configurations of a cell: the fine-tuning recipe and configuration, the scoring options,
the data source; each knows the part of itself that can change a number (its identity)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import UserError

# Bump when the harness computes a different number for the same cell (a protocol change), so that
# stored records of the old protocol are not reused as if they were the new one.
PROTOCOL_VERSION = 2


def digest(value, length: int = 16) -> str:
    """A short stable hash of a JSON-serialisable value."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Recipe:
    """The fixed part of the fine-tuning protocol, shared by both architectures (ModernBERT's GLUE
    recipe, which Ettin follows; the README's "recipe" section names each choice's source)."""

    optimizer: str = "decoupled_adamw"  # Composer DecoupledAdamW: decay lr_t/lr_peak * weight_decay per step
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    decay_filter: str = "no_bias_norm"  # which weights decay: all but biases and norm weights
    schedule: str = "linear_warmup_decay"
    warmup_ratio: float = 0.06
    max_grad_norm: float | None = None
    head_init: str = "pretrained"  # decoders: the classification head starts from lm_head.dense/norm
    template: str = "ettin-v1"  # input templates per architecture, harness/adapters/inputs.py

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneConfig:
    """One point of a fine-tuning grid and the recipe it runs under."""

    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    max_length: int = 512
    recipe: Recipe = field(default_factory=Recipe)

    TUNABLE = ("lr", "weight_decay", "batch_size", "epochs")

    def __post_init__(self):
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.lr <= 0:
            raise UserError(f"the learning rate must be above 0, not {self.lr!r}")
        for name in ("batch_size", "epochs", "max_length"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise UserError(f"{name} must be a whole number >= 1, not {value!r}")

    def tunable(self) -> dict:
        return {k: getattr(self, k) for k in self.TUNABLE}

    def identity(self, architecture: str) -> dict:
        return {"adapter": "classification", **self.tunable(), "max_length": self.max_length,
                "recipe": self.recipe.to_dict()}

    def hyperparameters(self) -> dict:
        """The record's ``hyperparameters``: the tunable values and the fixed ones beside them."""
        recipe = self.recipe
        return {**self.tunable(), "max_length": self.max_length, "warmup_ratio": recipe.warmup_ratio,
                "betas": list(recipe.betas), "eps": recipe.eps, "max_grad_norm": recipe.max_grad_norm}


ENCODER_OPTIONS = ("num_masks", "gen_num_masks", "score_sep", "mntp")
DECODER_OPTIONS = ("add_bos_token",)


@dataclass(frozen=True)
class ScoringConfig:
    """How an lm-eval task is scored. Encoder options follow the Ettin authors' lm-eval fork,
    decoder options lm-eval's ``hf`` model as the paper ran it; ``mntp=None`` means "as the
    registry says for this model" and is settled per model by the plan."""

    num_fewshot: int | None = None
    num_masks: int = 3  # encoders: [MASK]s appended when scoring a token
    gen_num_masks: int = 2  # encoders: [MASK]s appended when generating a token
    score_sep: bool = True  # encoders: log P([SEP]) after the continuation counts
    mntp: bool | None = None  # encoders: read token i one position before the first [MASK]
    add_bos_token: bool = True  # decoders

    def options(self, architecture: str) -> dict:
        """The backend options that apply to ``architecture``."""
        names = ENCODER_OPTIONS if architecture == "encoder" else DECODER_OPTIONS
        return {n: getattr(self, n) for n in names}

    def identity(self, architecture: str) -> dict:
        return {"adapter": "lm_eval", "num_fewshot": self.num_fewshot, **self.options(architecture)}

    def hyperparameters(self, architecture: str) -> dict:
        return {"num_fewshot": self.num_fewshot, **self.options(architecture)}

    def deviations(self, architecture: str, default_mntp: bool = False) -> list[str]:
        """The options of ``architecture`` that differ from the published protocol, as text."""
        base = ScoringConfig(mntp=default_mntp)
        out = [f"{k}={v}" for k, v in self.options(architecture).items() if v != getattr(base, k)]
        if self.num_fewshot is not None:
            out.append(f"num_fewshot={self.num_fewshot}")
        return out


PROTOCOLS = ("fine-tuned", "zero-shot")
# The Ettin authors' embedder training (retrieval_eval/train_st.py and its README example):
# learning rate 3e-4, batch 1024, one epoch; the loss and batch sampler are in harness/retrieval/train.py.
EMBED_LR, EMBED_BATCH_SIZE, EMBED_EPOCHS = 3e-4, 1024, 1


@dataclass(frozen=True)
class EmbeddingConfig:
    """How a retrieval cell gets its embedder: ``fine-tuned`` (the paper's protocol, with the
    grid's lr/batch/epochs) or ``zero-shot`` (the model as it is); pooling, max length and EOS
    policy as ``harness.runner.embedder.EmbedSettings`` (None: the model's own or its architecture's)."""

    protocol: str = "fine-tuned"
    lr: float = EMBED_LR
    batch_size: int = EMBED_BATCH_SIZE
    epochs: int = EMBED_EPOCHS
    pooling: str | None = None
    max_length: int | None = None
    eos: str = "none"
    loss: str = "CachedMultipleNegativesRankingLoss(scale=20)"
    sampler: str = "no_duplicates"
    warmup_ratio: float = 0.05

    TUNABLE = ("lr", "batch_size", "epochs")

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown retrieval protocol '{self.protocol}'; use {' or '.join(PROTOCOLS)}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise UserError(f"the learning rate must be a finite number above 0, not {self.lr!r}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise UserError(f"{name} must be a whole number >= 1, not {value!r}")

    @property
    def fine_tuned(self) -> bool:
        return self.protocol == "fine-tuned"

    def tunable(self) -> dict:
        return {k: getattr(self, k) for k in self.TUNABLE} if self.fine_tuned else {}

    def embed_settings(self) -> dict:
        return {"pooling": self.pooling, "max_length": self.max_length, "eos": self.eos}

    def identity(self, architecture: str) -> dict:
        out = {"adapter": "retrieval", "protocol": self.protocol, **self.embed_settings()}
        if self.fine_tuned:
            out.update(self.tunable(), loss=self.loss, sampler=self.sampler, warmup_ratio=self.warmup_ratio)
        return out

    def hyperparameters(self, architecture: str | None = None) -> dict:
        return {k: v for k, v in self.identity(architecture or "").items() if k != "adapter"}


SWAPS = ("correct", "compat")


@dataclass(frozen=True)
class BiasConfig:
    """How a bias cell is measured. ``swap``: how a decoder's gender variants are made, ``correct``
    (by the template's pronoun case) or ``compat`` (the Ettin authors' rewrite, which turns a female
    accusative "her" into "his"/"their")."""

    swap: str = "correct"

    def __post_init__(self):
        if self.swap not in SWAPS:
            raise UserError(f"unknown --winogender-swap '{self.swap}'; use {' or '.join(SWAPS)}")

    def tunable(self) -> dict:
        return {}

    def identity(self, architecture: str) -> dict:
        return {"adapter": "bias", **({"swap": self.swap} if architecture == "decoder" else {})}

    def hyperparameters(self, architecture: str | None = None) -> dict:
        return {k: v for k, v in self.identity(architecture or "").items() if k != "adapter"}


@dataclass(frozen=True)
class Compute:
    """The numerics a cell runs under, resolved (``--dtype auto`` on a CPU is fp32): the compute
    dtype and the attention implementation. The default (fp32, sdpa) adds nothing to a cell's key,
    so the keys of default runs stay what they were before these were part of it."""

    dtype: str = "fp32"  # fp32 | bf16 | fp16
    attention: str = "sdpa"  # sdpa | eager | flash_attention_2

    def identity(self) -> dict | None:
        return None if self == Compute() else {"dtype": self.dtype, "attention": self.attention}

    def deviations(self) -> list[str]:
        """What differs from fp32 and sdpa, as text for a protocol label."""
        out = [self.dtype] if self.dtype != "fp32" else []
        return out + ([f"attention {self.attention}"] if self.attention != "sdpa" else [])


@dataclass(frozen=True)
class DataSource:
    """Where a task's rows come from: the hub (``folder`` None) or a local folder, fingerprinted by
    content so that moving a folder keeps its cells and editing a file does not."""

    folder: str | None = None
    fingerprint: str | None = None
    limit: int | None = None

    @property
    def local(self) -> bool:
        return self.folder is not None

    def identity(self) -> dict:
        return {"local": self.local, "fingerprint": self.fingerprint, "limit": self.limit}


def fingerprint_folders(paths: list[Path]) -> str:
    """A hash of every file's relative path and bytes under ``paths`` (missing paths are skipped)."""
    h = hashlib.sha1()
    for root in paths:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(str(path.relative_to(root.parent)).encode())
            h.update(hashlib.sha1(path.read_bytes()).digest())
    return h.hexdigest()[:16]
