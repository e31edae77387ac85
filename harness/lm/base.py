"""RunnerLM: what the harness's two lm-eval backends share: building from a runner and a model
spec (or from lm-eval ``model_args``), and reading the LM head at chosen positions only."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import resolve_max_length

from harness.errors import UserError
from harness.models import ModelSpec, resolve
from harness.runner import Runner, accepts_position_ids

# Positions per LM-head matmul: bounds the (positions x vocab) logits in memory. On a CPU a chunk
# whose logits fit in the last-level cache (128 x 50k floats = 26 MB) makes the log-softmax and
# the reads after it about twice as fast as a 1024-position chunk.
HEAD_CHUNK = {"cpu": 128}
DEFAULT_HEAD_CHUNK = 1024

def flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class RunnerLM(TemplateLM):
    """An lm-eval model whose weights, device and batching come from a ``harness.runner.Runner``."""

    head = ""  # the runner head a subclass loads

    def __init__(self, pretrained: str | None = None, *, runner: Runner | None = None, spec: ModelSpec | None = None,
                 revision: str | None = None, device: str | None = None, dtype: str | None = None,
                 token_budget: int | None = None, max_length: int | None = None, **ignored):
        super().__init__()
        # lm-eval passes batch_size/max_batch_size; rows are batched by the runner's token budget instead
        ignored.pop("batch_size", None), ignored.pop("max_batch_size", None)
        if ignored:
            raise UserError(f"unknown model argument(s) {', '.join(sorted(ignored))} for {type(self).__name__}")
        if spec is None:
            if not pretrained:
                raise UserError(f"{type(self).__name__} needs pretrained=MODEL (a hub id or a local folder)")
            spec = resolve(str(pretrained), revision)
        if runner is None:
            runner = Runner(device=device or "auto", dtype=dtype or "auto",
                            token_budget=int(token_budget) if token_budget else None)
        self.runner, self.spec = runner, spec
        self.loaded = runner.load(spec, self.head)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self._device = runner.device
        self._max_length = int(max_length) if max_length else None
        self._backbone, self._lm_head = split_lm_head(self.model)

    @property
    def max_length(self) -> int:
        return self._max_length or resolve_max_length(self.model.config, self.tokenizer)

    @property
    def tokenizer_name(self) -> str:
        return f"{self.spec.model_id}@{self.spec.revision or 'main'}"

    def get_model_info(self) -> dict:
        return {"model_num_parameters": self.loaded.parameters, "model_dtype": str(self.runner.dtype),
                "model_revision": self.spec.revision or "main", "model_sha": ""}

    def _count(self, attention_mask: torch.Tensor) -> None:
        self.runner.tokens_processed += int(attention_mask.sum())

    def _head_chunk(self) -> int:
        return HEAD_CHUNK.get(self.runner.device.type, DEFAULT_HEAD_CHUNK)

    def _hidden_at(self, inputs: dict, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, object]:
        """(the states at (rows, cols) that the LM head reads, the head): the backbone's last hidden
        states and the head when the model's head can be split off, else the logits and None."""
        if not accepts_position_ids(self.model):
            inputs = {k: v for k, v in inputs.items() if k != "position_ids"}
        if self._lm_head is not None:
            if _accepts(self._backbone, "use_cache"):  # a decoder would fill a key/value cache
                inputs = {**inputs, "use_cache": False}
            return self._backbone(**inputs).last_hidden_state[rows, cols], self._lm_head
        if _accepts(self.model, "use_cache"):
            inputs = {**inputs, "use_cache": False}
        return self.model(**inputs).logits[rows, cols], None

    def _logprob_chunks(self, hidden: torch.Tensor, project):
        """(start, log-softmax of the logits, the logits) for successive chunks of the read states."""
        step = self._head_chunk()
        for start in range(0, hidden.shape[0], step):
            chunk = hidden[start:start + step]
            logits = (project(chunk) if project is not None else chunk).float()
            yield start, F.log_softmax(logits, dim=-1), logits

    @torch.no_grad()
    def _score_at(self, inputs: dict, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor):
        """Log-probability of ``targets`` and the argmax token at (rows, cols) of the batch.

        The LM head runs on those positions only (when the model's head can be split off),
        which for a 50k vocabulary is most of the work of a full forward pass.
        """
        hidden, project = self._hidden_at(inputs, rows, cols)
        logprobs, argmax = [], []
        for start, lp, logits in self._logprob_chunks(hidden, project):
            logprobs.append(lp.gather(-1, targets[start:start + lp.shape[0], None].to(lp.device))[:, 0])
            argmax.append(logits.argmax(-1))
        if not logprobs:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return torch.cat(logprobs).cpu(), torch.cat(argmax).cpu()


_ACCEPTS: dict[tuple[type, str], bool] = {}


def _accepts(module, name: str) -> bool:
    """Whether ``module.forward`` takes the keyword ``name``."""
    key = (type(module), name)
    if key not in _ACCEPTS:
        try:
            _ACCEPTS[key] = name in inspect.signature(module.forward).parameters
        except (TypeError, ValueError):
            _ACCEPTS[key] = False
    return _ACCEPTS[key]


def split_lm_head(model) -> tuple:
    """(backbone, head) such that head(backbone(...).last_hidden_state) == model(...).logits, or
    (None, None) when that split is not known for this model class."""
    name = type(model).__name__
    if name == "ModernBertForMaskedLM":
        return model.model, lambda h: model.decoder(model.head(h))
    if name == "ModernBertDecoderForCausalLM":
        return model.model, lambda h: model.decoder(model.lm_head(h))
    lm_head = getattr(model, "lm_head", None)
    if (name.endswith("ForCausalLM") and isinstance(lm_head, torch.nn.Linear)
            and getattr(model.config, "final_logit_softcapping", None) is None
            and getattr(model.config, "logit_scale", None) is None
            and getattr(model, "model", None) is not None):
        return model.model, lm_head
    return None, None
