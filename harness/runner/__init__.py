"""The shared model runner: the one place that loads models and runs them.

It is three parts, each in its own module: ``device`` (device, dtype, attention, chosen once),
``cache`` (each model and tokenizer loaded once per process, reset per cell) and ``batching``
(token-budget batches over length-sorted rows, halved on out-of-memory). Adapters ask the runner;
nothing else reaches into a model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from harness.models import ModelSpec
from harness.runner.batching import (
    DEFAULT_TOKEN_BUDGET,
    MIN_TOKEN_BUDGET,
    Batcher,
    accepts_position_ids,
    is_oom,
    length_batches,
    pad_batch,
)
from harness.runner.cache import LoadedModel, ModelCache, label_keys, reinit_new_parameters
from harness.runner.device import Hardware

__all__ = ["DEFAULT_TOKEN_BUDGET", "MIN_TOKEN_BUDGET", "LoadedModel", "Runner", "accepts_position_ids", "is_oom",
           "label_keys", "length_batches", "pad_batch", "reinit_new_parameters"]


class Runner:
    def __init__(self, device: str = "auto", dtype: str = "auto", attn_implementation: str = "auto",
                 token_budget: int | None = None, max_cached_models: int = 2):
        self.hardware = Hardware.choose(device, dtype, attn_implementation)
        budget = token_budget or DEFAULT_TOKEN_BUDGET.get(self.hardware.device.type, 8192)
        self.batcher = Batcher(budget, on_oom=self.hardware.empty_cache)
        self.cache = ModelCache(self.hardware, max_cached_models)
        self.tokens_processed = 0  # real (non-pad) tokens through a forward pass
        self._embedders: dict[tuple, object] = {}  # (model, revision, settings) -> Embedder, as loaded
        self._embeddings: dict[tuple, dict] = {}  # the same key -> {text hash: embedding}, for zero-shot reuse
        self.max_cached_models = max_cached_models

    @property
    def device(self) -> torch.device:
        return self.hardware.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hardware.dtype

    @property
    def attn_implementation(self) -> str:
        return self.hardware.attention

    @property
    def token_budget(self) -> int:
        return self.batcher.budget

    @token_budget.setter
    def token_budget(self, value: int) -> None:
        self.batcher.budget = int(value)

    @property
    def loads(self) -> int:
        return self.cache.loads

    def describe(self) -> str:
        return f"{self.hardware.describe()}, token budget {self.batcher.budget}"

    def autocast(self):
        return self.hardware.autocast()

    def tokenizer(self, spec: ModelSpec):
        return self.cache.tokenizer(spec)

    def load(self, spec: ModelSpec, head: str, **kwargs) -> LoadedModel:
        return self.cache.load(spec, head, **kwargs)

    def fresh(self, loaded: LoadedModel, seed: int, init_state: dict | None = None) -> torch.nn.Module:
        return self.cache.fresh(loaded, seed, init_state)

    def embedder(self, spec: ModelSpec, settings):
        """``spec`` as a sentence-transformers embedder (``harness.runner.embedder``), loaded once per
        process and settings; fine-tuning works on a copy (``embedder.fresh_copy``)."""
        from harness.runner.embedder import build

        key = (spec.model_id, spec.revision, settings)
        if key not in self._embedders:
            while len(self._embedders) >= self.max_cached_models:
                oldest = next(iter(self._embedders))
                del self._embedders[oldest]
                self._embeddings.pop(oldest, None)
            # the hub id resolved once (a registry alias when the primary id is not found)
            self._embedders[key] = build(self.cache.resolved(spec), settings, self.device, self.dtype)
            self.cache.loads += 1
        return self._embedders[key]

    def embedding_cache(self, spec: ModelSpec, settings) -> dict:
        """Embeddings already computed by the loaded (not fine-tuned) embedder of ``spec``: a corpus is
        embedded once per model, revision and settings in a process, however many cells read it."""
        return self._embeddings.setdefault((spec.model_id, spec.revision, settings), {})

    def parameters_of(self, spec: ModelSpec) -> int | None:
        loaded = self.cache.loaded_of(spec)
        return None if loaded is None else loaded.parameters

    def loaded_id_of(self, spec: ModelSpec) -> str | None:
        loaded = self.cache.loaded_of(spec)
        return None if loaded is None else loaded.loaded_id

    def map_batches(self, lengths: Sequence[int], fn: Callable[[list[int]], Sequence], max_rows: int | None = None,
                    desc: str | None = None) -> list:
        """Run ``fn`` over token-budget batches of row indices; results in input order (OOM: halve, retry)."""
        return self.batcher.map(lengths, fn, max_rows)

    def count(self, attention_mask: torch.Tensor) -> None:
        self.tokens_processed += int(attention_mask.sum())

    @staticmethod
    def forward_logits(model, batch: dict) -> torch.Tensor:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if accepts_position_ids(model):
            kwargs["position_ids"] = batch["position_ids"]
        return model(**kwargs).logits
