"""The shared model runner: the one place that loads models and runs them.

It picks the device, dtype and attention implementation, keeps ``pad_token_id`` equal to the
tokenizer's, batches by a token budget over length-sorted rows instead of a fixed batch size,
halves the budget and retries on CUDA out-of-memory, and loads each (model, head) once per
process: later cells get the same weights back from an in-memory copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from harness.errors import UserError
from harness.models import ModelSpec, hub_error_message

log = logging.getLogger(__name__)

HEADS = ("sequence-classification", "masked-lm", "causal-lm")
DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
# Padded tokens (rows x longest row) per forward pass, before any out-of-memory back-off.
DEFAULT_TOKEN_BUDGET = {"cuda": 65536, "cpu": 8192, "mps": 16384}
MIN_TOKEN_BUDGET = 64


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def length_batches(lengths: Sequence[int], budget: int, max_rows: int | None = None) -> list[list[int]]:
    """Indices grouped into batches whose padded size (rows x longest) stays within ``budget``.

    Rows are sorted longest first, so each batch holds rows of similar length (little padding)
    and the first batch is the largest one: an out-of-memory error shows up at once.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        width = max(longest, n)
        if current and (width * (len(current) + 1) > budget or (max_rows and len(current) >= max_rows)):
            batches.append(current)
            current, longest, width = [], 0, n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right", device=None) -> dict:
    """input_ids, attention_mask and position_ids for a list of token id lists.

    position_ids count real tokens only, so a left-padded row sees the same positions as a
    right-padded one (a rotary decoder then gives identical outputs for both sides).
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if side == "right":
            ids[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[row, : len(s)] = 1
        else:
            ids[row, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[row, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    if device is not None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch


@dataclass
class LoadedModel:
    spec: ModelSpec
    head: str
    model: torch.nn.Module
    tokenizer: object
    new_keys: tuple[str, ...]  # parameters not in the checkpoint (a fresh head), re-initialised per seed
    pristine: dict | None = None  # CPU copy of the weights as loaded, to reset between cells
    parameters: int = 0
    extra: dict = field(default_factory=dict)


class Runner:
    def __init__(self, device: str = "auto", dtype: str = "auto", attn_implementation: str = "auto",
                 token_budget: int | None = None, max_cached_models: int = 2):
        self.device = self._pick_device(device)
        self.dtype = self._pick_dtype(dtype)
        self.attn_implementation = self._pick_attention(attn_implementation)
        self.token_budget = int(token_budget or DEFAULT_TOKEN_BUDGET.get(self.device.type, 8192))
        self.max_cached_models = max_cached_models
        self._models: dict[tuple, LoadedModel] = {}
        self._tokenizers: dict[tuple, object] = {}
        self.loads = 0  # from_pretrained calls, for tests and logs
        self.tokens_processed = 0  # real (non-pad) tokens through a forward pass

    # -- choices -----------------------------------------------------------------------------
    @staticmethod
    def _pick_device(device: str) -> torch.device:
        if device in ("auto", None):
            if torch.cuda.is_available():
                return torch.device("cuda")
            return torch.device("cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu")
        try:
            return torch.device(device)
        except RuntimeError:
            raise UserError(f"unknown --device '{device}'; use auto, cpu, cuda or cuda:N") from None

    def _pick_dtype(self, dtype: str) -> torch.dtype:
        if dtype in ("auto", None):
            if self.device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        if dtype not in DTYPES:
            raise UserError(f"unknown --dtype '{dtype}'; use auto, bf16, fp16 or fp32")
        return DTYPES[dtype]

    def _pick_attention(self, attn: str) -> str:
        if attn not in ("auto", None):
            return attn
        if self.device.type == "cuda" and self.dtype in (torch.bfloat16, torch.float16):
            try:
                import flash_attn  # noqa: F401

                return "flash_attention_2"
            except ImportError:
                pass
        return "sdpa"

    def describe(self) -> str:
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return f"{name}, {str(self.dtype).replace('torch.', '')}, attention {self.attn_implementation}, token budget {self.token_budget}"

    def autocast(self):
        """Mixed precision for training: fp32 master weights, matmuls in the compute dtype."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # -- loading -----------------------------------------------------------------------------
    def tokenizer(self, spec: ModelSpec):
        key = (spec.model_id, spec.revision)
        if key not in self._tokenizers:
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(spec.model_id, revision=spec.revision)
            except Exception as exc:
                raise UserError(hub_error_message(f"tokenizer of '{spec.model_id}'", exc)) from None
            if tok.pad_token_id is None:
                # Decoders often ship without a pad token; the eos token is never appended to a
                # classification input, so using it for padding cannot hide a real token.
                tok.pad_token = tok.eos_token or tok.sep_token or tok.unk_token
            self._tokenizers[key] = tok
        return self._tokenizers[key]

    def load(self, spec: ModelSpec, head: str, num_labels: int | None = None, problem_type: str | None = None,
             training: bool = False) -> LoadedModel:
        """The model with the given head, loaded on first use and cached for the process."""
        if head not in HEADS:
            raise ValueError(f"unknown head {head}")
        key = (spec.model_id, spec.revision, head, training)
        if key in self._models:
            loaded = self._models.pop(key)
            self._models[key] = loaded  # most recently used last
            if head == "sequence-classification" and not self._set_labels(loaded, num_labels, problem_type):
                loaded = self._from_pretrained(spec, head, loaded.tokenizer, num_labels, problem_type, training)
                self._models[key] = loaded
            self._activate(loaded)
            return loaded
        tok = self.tokenizer(spec)
        loaded = self._from_pretrained(spec, head, tok, num_labels, problem_type, training)
        self._models[key] = loaded
        while len(self._models) > self.max_cached_models:
            old_key = next(iter(self._models))
            del self._models[old_key]
        self._activate(loaded)
        return loaded

    @staticmethod
    def _set_labels(loaded: LoadedModel, num_labels: int | None, problem_type: str | None) -> bool:
        """Give a cached classification model a task head with ``num_labels`` outputs instead of
        loading its weights again: the head is new (re-initialised per cell) anyway. False when
        the head cannot be found, and the caller loads afresh."""
        model = loaded.model
        if num_labels is None or (model.config.num_labels == num_labels and model.config.problem_type == problem_type):
            return True
        old = model.config.num_labels
        heads = [name for name in sorted({k.rsplit(".", 1)[0] for k in loaded.new_keys})
                 if isinstance(model.get_submodule(name), torch.nn.Linear) and model.get_submodule(name).out_features == old]
        if len(heads) != 1:
            return False
        name = heads[0]
        layer = model.get_submodule(name)
        new = torch.nn.Linear(layer.in_features, num_labels, bias=layer.bias is not None,
                              device=layer.weight.device, dtype=layer.weight.dtype)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
        for pname, param in new.named_parameters():
            if loaded.pristine is not None:
                loaded.pristine[f"{name}.{pname}"] = param.detach().to("cpu", copy=True)
        model.config.num_labels = num_labels
        model.config.problem_type = problem_type
        if hasattr(model, "num_labels"):
            model.num_labels = num_labels
        return True

    def _from_pretrained(self, spec, head, tok, num_labels, problem_type, training) -> LoadedModel:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

        auto = {"sequence-classification": AutoModelForSequenceClassification,
                "masked-lm": AutoModelForMaskedLM, "causal-lm": AutoModelForCausalLM}[head]
        kwargs = {"revision": spec.revision, "output_loading_info": True,
                  # training keeps fp32 master weights and autocasts; inference runs in the compute dtype
                  "dtype": torch.float32 if training else self.dtype}
        if head == "sequence-classification":
            kwargs["num_labels"] = num_labels
            if problem_type:
                kwargs["problem_type"] = problem_type
        attn = self.attn_implementation
        try:
            try:
                model, info = auto.from_pretrained(spec.model_id, attn_implementation=attn, **kwargs)
            except ValueError as exc:
                if "attn" not in str(exc).lower() and "attention" not in str(exc).lower():
                    raise
                log.warning("%s does not support %s attention; using eager", spec.model_id, attn)
                model, info = auto.from_pretrained(spec.model_id, attn_implementation="eager", **kwargs)
        except OSError as exc:
            raise UserError(hub_error_message(f"model '{spec.model_id}'", exc)) from None
        self.loads += 1
        # Decoder classification pools at the rightmost token that is not pad_token_id, so the
        # config must agree with the tokenizer that pads the batch.
        model.config.pad_token_id = tok.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tok.pad_token_id
        new_keys = tuple(sorted(set(info.get("missing_keys", ())) | {k[0] if isinstance(k, tuple) else k
                                                                     for k in info.get("mismatched_keys", ())}))
        pristine = None
        if training:
            pristine = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            model.eval()
        return LoadedModel(spec=spec, head=head, model=model, tokenizer=tok, new_keys=new_keys,
                           pristine=pristine, parameters=sum(p.numel() for p in model.parameters()))

    def parameters_of(self, spec: ModelSpec) -> int | None:
        """Parameter count of a loaded model of ``spec`` (any head), None if none is loaded."""
        for (model_id, revision, *_), loaded in self._models.items():
            if (model_id, revision) == (spec.model_id, spec.revision):
                return loaded.parameters
        return None

    def _activate(self, loaded: LoadedModel) -> None:
        for other in self._models.values():
            if other is not loaded and next(other.model.parameters()).device != torch.device("cpu"):
                other.model.to("cpu")
        loaded.model.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def fresh(self, loaded: LoadedModel, seed: int, init_state: dict | None = None) -> torch.nn.Module:
        """The loaded model reset to its pretrained weights (``init_state`` over them, but for the
        label layer, when warm-starting), with its new head initialised from ``seed`` exactly as
        ``from_pretrained`` initialises it: every cell starts from the same place."""
        model = loaded.model
        if loaded.pristine is None:
            raise ValueError("fresh() needs a model loaded with training=True")
        reinit_new_parameters(model, loaded.new_keys, seed)
        with torch.no_grad():
            # restoring the checkpoint's weights after the initialiser keeps them exact even for a
            # model whose initialiser does not skip initialised weights
            model.load_state_dict({k: v for k, v in loaded.pristine.items() if k not in loaded.new_keys}, strict=False)
            if init_state:
                labels = set(label_keys(loaded))
                model.load_state_dict({k: v for k, v in init_state.items() if k not in labels}, strict=False)
        model.train()
        return model

    # -- running -----------------------------------------------------------------------------
    def map_batches(self, lengths: Sequence[int], fn: Callable[[list[int]], Sequence], max_rows: int | None = None,
                    desc: str | None = None) -> list:
        """Run ``fn`` over token-budget batches of row indices; results come back in input order.

        On CUDA out-of-memory the failing batch is split with half the budget and retried; the
        smaller budget is kept for the rest of the process.
        """
        from tqdm.auto import tqdm

        results: list = [None] * len(lengths)
        pending = length_batches(lengths, self.token_budget, max_rows)
        bar = tqdm(total=len(lengths), desc=desc, leave=False, disable=desc is None)
        while pending:
            batch = pending.pop(0)
            try:
                out = fn(batch)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                self._back_off(exc, rows=len(batch))
                smaller = length_batches([lengths[i] for i in batch], self.token_budget, max_rows)
                pending = [[batch[j] for j in b] for b in smaller] + pending
                continue
            for i, r in zip(batch, out):
                results[i] = r
            bar.update(len(batch))
        bar.close()
        return results

    def _back_off(self, exc: BaseException, rows: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.token_budget <= MIN_TOKEN_BUDGET and rows <= 1:
            raise exc
        self.token_budget = max(MIN_TOKEN_BUDGET, self.token_budget // 2)
        log.warning("out of memory: token budget halved to %d", self.token_budget)

    def train_step(self, model, optimizer, seqs: Sequence[Sequence[int]], labels: torch.Tensor, pad_id: int,
                   loss_fn: Callable, scheduler=None, max_grad_norm: float | None = None) -> float:
        """One optimizer step over ``seqs``, split into token-budget micro-batches.

        The loss is the mean over all rows of the step whatever the micro-batching, so the
        update does not depend on the budget. On out-of-memory the step is redone from scratch
        with half the budget.
        """
        n = len(seqs)
        while True:
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=self.device)  # read once per step: no sync per micro-batch
            try:
                for micro in length_batches([len(s) for s in seqs], self.token_budget):
                    batch = pad_batch([seqs[i] for i in micro], pad_id, device=self.device)
                    with self.autocast():
                        logits = self.forward_logits(model, batch)
                        loss = loss_fn(logits.float(), labels[micro].to(self.device)) * (len(micro) / n)
                    loss.backward()
                    total += loss.detach()
                    self.tokens_processed += int(batch["attention_mask"].sum())
                break
            except Exception as exc:
                if not is_oom(exc):
                    raise
                self._back_off(exc, rows=n)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return float(total)

    @staticmethod
    def forward_logits(model, batch: dict) -> torch.Tensor:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if accepts_position_ids(model):
            kwargs["position_ids"] = batch["position_ids"]
        return model(**kwargs).logits

    @torch.no_grad()
    def predict(self, model, seqs: Sequence[Sequence[int]], pad_id: int, desc: str | None = None) -> torch.Tensor:
        """Logits of a sequence-classification model for each row, in input order."""
        was_training = model.training
        model.eval()

        def run(idx):
            batch = pad_batch([seqs[i] for i in idx], pad_id, device=self.device)
            with self.autocast():
                logits = self.forward_logits(model, batch).float().cpu()
            self.tokens_processed += int(batch["attention_mask"].sum())
            return list(logits)

        rows = self.map_batches([len(s) for s in seqs], run, desc=desc)
        model.train(was_training)
        return torch.stack(rows) if rows else torch.empty(0)


_POSITION_IDS: dict[type, bool] = {}


def accepts_position_ids(model) -> bool:
    """Whether the model's forward takes position_ids (then padding on either side is exact)."""
    import inspect

    cls = type(model)
    if cls not in _POSITION_IDS:
        try:
            _POSITION_IDS[cls] = "position_ids" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _POSITION_IDS[cls] = False
    return _POSITION_IDS[cls]


def label_keys(loaded: LoadedModel) -> list[str]:
    """The parameters of the output layer whose size is the number of labels: the only part of a
    fine-tuned classifier that cannot carry over to a task with other labels."""
    model = loaded.model
    n = model.config.num_labels
    keys = []
    for owner in sorted({k.rsplit(".", 1)[0] for k in loaded.new_keys}):
        layer = model.get_submodule(owner)
        if isinstance(layer, torch.nn.Linear) and layer.out_features == n:
            keys += [f"{owner}.{name}" for name, _ in layer.named_parameters()]
    return keys


def reinit_new_parameters(model: torch.nn.Module, new_keys: Sequence[str], seed: int) -> None:
    """Initialise the parameters a checkpoint did not provide (a fresh head) from ``seed`` with
    the model's own initialiser, as ``from_pretrained`` does: transformers initialises every
    module whose weights are not flagged as loaded, children before parents."""
    torch.manual_seed(seed)
    if not new_keys:
        return
    new = set(new_keys)
    for name, param in model.named_parameters():
        param._is_hf_initialized = name not in new
    for buf in model.buffers():
        buf._is_hf_initialized = True
    for module in model.modules():
        module._is_hf_initialized = False
    model.initialize_weights()
    for param in model.parameters():
        param._is_hf_initialized = True
