"""Embedders: a model as a sentence-transformers ``SentenceTransformer``, and texts embedded in
token-budget batches with the runner's out-of-memory back-off.

Which modules a model gets (the Ettin authors' ``retrieval_eval/train_st.py``):
- a sentence-transformers folder (``modules.json``) keeps its own modules: pooling,
  normalisation and max length (e.g. all-MiniLM-L6-v2: mean pooling, normalised, 256 tokens);
- any other checkpoint gets ``Transformer`` + ``Pooling``: mean pooling for an encoder (what
  ``SentenceTransformer(encoder)`` builds, as the authors load encoders), last-token pooling for a
  decoder (the authors' ``--pooling lasttoken``).
EOS policy for last-token pooling: ``none`` (the default, the authors': sentence-transformers
appends nothing, so a decoder pools at the last token of the text) or ``append`` (the tokenizer's
EOS token is put after each text, inside the max length, and pooled there).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.errors import UserError

log = logging.getLogger(__name__)

POOLINGS = ("mean", "lasttoken", "cls")
EOS_POLICIES = ("none", "append")
DEFAULT_MAX_LENGTH = 512  # a plain checkpoint's max tokens per text, unless --max-length says otherwise


@dataclass(frozen=True)
class EmbedSettings:
    """How a model becomes an embedder; every field can change a number. ``None`` means "the
    model's own" (a sentence-transformers folder) or "the architecture's" (any other checkpoint)."""

    pooling: str | None = None
    max_length: int | None = None
    eos: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Embedder:
    model: object  # SentenceTransformer
    pooling: str
    max_length: int
    normalize: bool
    eos: str
    own_modules: bool  # a sentence-transformers folder's own modules

    def describe(self) -> dict:
        return {"pooling": self.pooling, "max_length": self.max_length, "normalize": self.normalize,
                "eos": self.eos, "modules": "sentence-transformers folder" if self.own_modules else "transformer+pooling"}


def is_sentence_transformers_folder(model_id: str, revision: str | None) -> bool:
    if os.path.isdir(model_id):
        return os.path.exists(os.path.join(model_id, "modules.json"))
    from sentence_transformers.util import is_sentence_transformer_model

    try:
        return bool(is_sentence_transformer_model(model_id, revision=revision))
    except Exception:  # offline or unreachable: the model load that follows names the problem
        return False


def build(spec, settings: EmbedSettings, device: torch.device, dtype: torch.dtype) -> Embedder:
    """``spec`` as an embedder on ``device`` (weights in ``dtype``)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    if settings.pooling is not None and settings.pooling not in POOLINGS:
        raise UserError(f"unknown pooling '{settings.pooling}'; use one of {', '.join(POOLINGS)}")
    if settings.eos not in EOS_POLICIES:
        raise UserError(f"unknown EOS policy '{settings.eos}'; use {' or '.join(EOS_POLICIES)}")
    own = settings.pooling is None and is_sentence_transformers_folder(spec.model_id, spec.revision)
    kwargs = {"revision": spec.revision} if spec.revision else {}
    try:
        if own:
            model = SentenceTransformer(spec.model_id, device=str(device), **kwargs)
        else:
            pooling = settings.pooling or ("lasttoken" if spec.architecture == "decoder" else "mean")
            transformer = Transformer(spec.model_id, max_seq_length=settings.max_length or DEFAULT_MAX_LENGTH,
                                      model_kwargs=kwargs, processor_kwargs=kwargs, config_kwargs=kwargs)
            model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(),
                                                                      pooling_mode=pooling)], device=str(device))
    except OSError as exc:
        from harness.models import hub_error_message

        raise UserError(hub_error_message(f"model '{spec.model_id}'", exc)) from None
    if own and settings.max_length:
        model.max_seq_length = settings.max_length
    model.to(dtype=dtype)
    pooling_module = next((m for m in model if type(m).__name__ == "Pooling"), None)
    pooling = getattr(pooling_module, "pooling_mode", None) or "none"
    pooling = pooling if isinstance(pooling, str) else "+".join(pooling)
    normalize = any(type(m).__name__ == "Normalize" for m in model)
    tok = model.tokenizer
    if tok.pad_token is None:  # decoders often have none; pooling reads the attention mask, not the pad id
        tok.pad_token = tok.eos_token or tok.unk_token or tok.convert_ids_to_tokens(0)
    tok.padding_side = "right"
    if settings.eos == "append":
        if pooling != "lasttoken":
            raise UserError(f"--embed-eos append pools at an appended EOS token, which only last-token pooling reads; "
                            f"{spec.model_id} pools by {pooling}: drop --embed-eos or use --pooling lasttoken")
        if tok.eos_token_id is None:
            raise UserError(f"the tokenizer of {spec.model_id} has no EOS token, which --embed-eos append needs; "
                            "use --embed-eos none (the Ettin authors' policy)")
        _append_eos(model, tok.eos_token_id)
    return Embedder(model=model, pooling=pooling, max_length=int(model.max_seq_length or 0), normalize=normalize,
                    eos=settings.eos, own_modules=own)


def _append_eos(model, eos_id: int) -> None:
    """Every text tokenized by ``model`` (for training and for scoring) ends with ``eos_id``: put
    after the last real token of each right-padded row, or over its last token when the row is
    already at the max length."""
    first = model[0]
    original = type(first).preprocess.__get__(first)  # the class's own, never a patch (a copy carries one)

    def preprocess(inputs, *args, **kwargs):
        features = original(inputs, *args, **kwargs)
        ids, mask = features.get("input_ids"), features.get("attention_mask")
        if ids is None or mask is None:
            return features
        limit = model.max_seq_length or ids.shape[1] + 1
        width = min(ids.shape[1] + 1, limit)
        pad = model.tokenizer.pad_token_id
        new_ids = torch.full((ids.shape[0], width), pad, dtype=ids.dtype)
        new_mask = torch.zeros((ids.shape[0], width), dtype=mask.dtype)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            keep = min(n, width - 1)
            new_ids[row, :keep] = ids[row, :keep]
            new_ids[row, keep] = eos_id
            new_mask[row, :keep + 1] = 1
        features["input_ids"], features["attention_mask"] = new_ids, new_mask
        features.pop("token_type_ids", None)
        return features

    first.preprocess = preprocess


def fresh_copy(embedder: Embedder) -> Embedder:
    """An independent copy to fine-tune (the loaded one stays as loaded for the next cell)."""
    model = copy.deepcopy(embedder.model)
    if embedder.eos == "append":
        _append_eos(model, model.tokenizer.eos_token_id)
    return Embedder(model, embedder.pooling, embedder.max_length, embedder.normalize, embedder.eos, embedder.own_modules)


def token_lengths(model, texts: list[str]) -> list[int]:
    """Each text's token count as the embedder will see it (special tokens in, max length applied)."""
    tok = model.tokenizer
    limit = model.max_seq_length or None
    enc = tok(texts, truncation=limit is not None, max_length=limit, add_special_tokens=True)
    return [len(ids) for ids in enc["input_ids"]]


def embed(runner, embedder: Embedder, texts: list[str], cache: dict | None = None) -> np.ndarray:
    """Embeddings of ``texts`` (rows in order), longest first in batches of at most the runner's
    token budget (padded tokens), through the runner's out-of-memory back-off. ``cache`` maps a
    text's hash to its embedding: a text embedded before by the same embedder is not embedded again."""
    model = embedder.model
    keys = [hashlib.sha1(t.encode()).digest() for t in texts]
    cache = {} if cache is None else cache
    todo = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in cache}.values())
    if todo:
        lengths = token_lengths(model, [texts[i] for i in todo])
        model.eval()

        def run(batch: list[int]):
            features = model.preprocess([texts[todo[j]] for j in batch])
            features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            with torch.inference_mode(), runner.autocast():
                out = model(features)["sentence_embedding"]
            runner.count(features["attention_mask"])
            return list(out.float().cpu().numpy())

        vectors = runner.map_batches(lengths, run)
        for j, vector in enumerate(vectors):
            cache[keys[todo[j]]] = vector
    return np.stack([cache[k] for k in keys])
