"""DecoderLM: lm-eval's three requests for causal models, on the shared runner.

Tokenization follows lm-eval's ``hf`` model with ``add_bos_token=True`` (as Ettin's scripts ran
it), so every request gets the same tokens and the same log-likelihood as there. What differs
is the batching: requests are grouped by their context and each group runs as ONE packed row
``ctx | choice_1[:-1] | choice_2[:-1] | ...`` whose attention mask is a tree (every choice sees
the context and itself, never another choice), so a context shared by four choices is encoded
once; rows are length-sorted into token-budget batches by the runner.

``RunnerLM`` holds what the decoder and the encoder backends share: building from a runner and a
model spec (or from lm-eval ``model_args``), and reading the LM head at chosen positions only.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text, resolve_max_length
from lm_eval.models.utils_hf import stop_sequences_criteria

from harness.errors import UserError
from harness.models import ModelSpec, resolve
from harness.runner import Runner, accepts_position_ids, pad_batch

HEAD_CHUNK = 1024  # positions per LM-head matmul: bounds the (positions x vocab) logits in memory


def _flag(value) -> bool:
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

    @torch.no_grad()
    def _score_at(self, inputs: dict, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor):
        """Log-probability of ``targets`` and the argmax token at (rows, cols) of the batch.

        The LM head runs on those positions only (when the model's head can be split off),
        which for a 50k vocabulary is most of the work of a full forward pass.
        """
        if not accepts_position_ids(self.model):
            inputs = {k: v for k, v in inputs.items() if k != "position_ids"}
        if self._lm_head is not None:
            hidden = self._backbone(**inputs).last_hidden_state[rows, cols]
            project = self._lm_head
        else:
            hidden = self.model(**inputs).logits[rows, cols]
            project = None
        logprobs, argmax = [], []
        for start in range(0, hidden.shape[0], HEAD_CHUNK):
            chunk = hidden[start:start + HEAD_CHUNK]
            logits = (project(chunk) if project is not None else chunk).float()
            lp = F.log_softmax(logits, dim=-1)
            logprobs.append(lp.gather(-1, targets[start:start + HEAD_CHUNK, None].to(lp.device))[:, 0])
            argmax.append(logits.argmax(-1))
        if not logprobs:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return torch.cat(logprobs).cpu(), torch.cat(argmax).cpu()


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


class DecoderLM(RunnerLM):
    """Causal LM backend: loglikelihood, loglikelihood_rolling and generate_until."""

    head = "causal-lm"

    def __init__(self, pretrained: str | None = None, *, add_bos_token=True, prefix_sharing="auto", **kwargs):
        super().__init__(pretrained, **kwargs)
        self.add_bos_token = _flag(add_bos_token)
        attn = getattr(self.model.config, "_attn_implementation", "")
        layer_types = set(getattr(self.model.config, "layer_types", None) or ["full_attention"])
        # The tree mask is handed to the model as {layer type: 4-D mask}; only eager/sdpa
        # attention take an arbitrary mask, and only these two layer types are known here.
        supported = attn in ("sdpa", "eager") and layer_types <= {"full_attention", "sliding_attention"}
        self.prefix_sharing = supported if prefix_sharing in ("auto", None) else _flag(prefix_sharing) and supported

    # -- tokens, exactly as lm-eval's hf model with add_bos_token ---------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs) -> list[int]:
        add_bos = self.add_bos_token if add_special_tokens is None else add_special_tokens
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            add_bos = False
        ids = self.tokenizer.encode(string, add_special_tokens=False)
        if add_bos:
            ids = [self.prefix_token_id] + ids
        return ids[-left_truncate_len:] if left_truncate_len else ids

    # -- scoring --------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        answers = self.score_tokens([(ctx, cont) for _, ctx, cont in requests])
        for (request, _, _), answer in zip(requests, answers):
            if request is not None:
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return answers

    def score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum log P(continuation | context), continuation is greedy) for token-id pairs."""
        limit = self.max_length
        groups: dict[tuple, list[tuple[int, tuple]]] = defaultdict(list)
        for i, (ctx, cont) in enumerate(pairs):
            if not cont or len(cont) > limit:
                raise ValueError(f"a continuation of {len(cont)} tokens cannot be scored with max_length {limit}")
            # lm-eval's left truncation: keep the last max_length+1 tokens, drop the last input
            seq = (list(ctx) + list(cont))[-(limit + 1):]
            cont = tuple(seq[-len(cont):])
            groups[tuple(seq[:-len(cont)])].append((i, cont))
        rows = []  # (prefix, [continuations])
        for prefix, members in groups.items():
            conts = list(dict.fromkeys(c for _, c in members))
            if not self.prefix_sharing:
                rows.extend((prefix, [c]) for c in conts)
                continue
            current, size = [], len(prefix)
            for c in conts:
                if current and size + len(c) - 1 > max(limit, len(prefix) + len(c)):
                    rows.append((prefix, current))
                    current, size = [], len(prefix)
                current.append(c)
                size += len(c) - 1
            rows.append((prefix, current))
        lengths = [len(p) + sum(len(c) - 1 for c in cs) for p, cs in rows]
        scored = self.runner.map_batches(lengths, lambda idx: self._score_rows([rows[j] for j in idx]))
        by_key = {}
        for (prefix, conts), results in zip(rows, scored):
            for c, r in zip(conts, results):
                by_key[(prefix, c)] = r
        out = [None] * len(pairs)
        for prefix, members in groups.items():
            for i, c in members:
                out[i] = by_key[(prefix, c)]
        return out

    def _score_rows(self, rows) -> list[list[tuple[float, bool]]]:
        ids, seg, pos, reads = [], [], [], []  # reads: per row, per continuation: (indices, targets)
        for prefix, conts in rows:
            r_ids, r_seg, r_pos, r_reads = list(prefix), [0] * len(prefix), list(range(len(prefix))), []
            for j, c in enumerate(conts, start=1):
                start = len(r_ids)
                r_ids += c[:-1]
                r_seg += [j] * (len(c) - 1)
                r_pos += range(len(prefix), len(prefix) + len(c) - 1)
                r_reads.append(([len(prefix) - 1] + list(range(start, start + len(c) - 1)), list(c)))
            ids.append(r_ids), seg.append(r_seg), pos.append(r_pos), reads.append(r_reads)
        if self.prefix_sharing:
            inputs, real = self._tree_inputs(ids, seg, pos)
        else:
            inputs = pad_batch(ids, self.tokenizer.pad_token_id, side="right", device=self.runner.device)
            real = inputs["attention_mask"]
        self._count(real)
        row_idx, col_idx, targets = [], [], []
        for b, r_reads in enumerate(reads):
            for cols, tgt in r_reads:
                row_idx += [b] * len(cols)
                col_idx += cols
                targets += tgt
        device = self.runner.device
        lp, top = self._score_at(inputs, torch.tensor(row_idx, device=device), torch.tensor(col_idx, device=device),
                                 torch.tensor(targets, device=device))
        out, k = [], 0
        for r_reads in reads:
            row_out = []
            for _, tgt in r_reads:
                n = len(tgt)
                row_out.append((float(lp[k:k + n].sum()), bool((top[k:k + n] == torch.tensor(tgt)).all())))
                k += n
            out.append(row_out)
        return out

    def _tree_inputs(self, ids, seg, pos) -> tuple[dict, torch.Tensor]:
        """Right-padded packed rows with one additive 4-D mask per attention layer type."""
        width = max(len(r) for r in ids)
        pad = self.tokenizer.pad_token_id
        device, dtype = self.runner.device, self.runner.dtype
        t_ids = torch.tensor([r + [pad] * (width - len(r)) for r in ids], device=device)
        t_seg = torch.tensor([r + [-1] * (width - len(r)) for r in seg], device=device)
        t_pos = torch.tensor([r + [0] * (width - len(r)) for r in pos], device=device)
        index = torch.arange(width, device=device)
        sq, sk = t_seg[:, :, None], t_seg[:, None, :]
        allowed = (index[None, None, :] <= index[None, :, None]) & ((sk == 0) | (sk == sq)) & (sk >= 0)
        allowed[:, :, 0] |= sq[:, :, 0] < 0  # padding queries look at one token instead of none (no NaN)
        masks = {}
        config = self.model.config
        for layer_type in set(getattr(config, "layer_types", None) or ["full_attention"]):
            keep = allowed
            if layer_type == "sliding_attention":
                # the model's own rule (kv > q - window), on positions rather than packed indices
                keep = allowed & (t_pos[:, None, :] > t_pos[:, :, None] - config.sliding_window)
                keep[:, :, 0] |= sq[:, :, 0] < 0
            mask = torch.zeros(keep.shape, dtype=dtype, device=device)
            masks[layer_type] = mask.masked_fill_(~keep, torch.finfo(dtype).min)[:, None]
        return {"input_ids": t_ids, "attention_mask": masks, "position_ids": t_pos}, t_seg >= 0

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((ctx, cont))
                owners.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owners, self.score_tokens(windows)):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # -- generation -----------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = [None] * len(requests)
        by_kwargs: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            by_kwargs[repr(sorted(req.args[1].items()))].append(i)
        eos = self.tokenizer.decode(self.eot_token_id)
        for members in by_kwargs.values():
            kwargs = normalize_gen_kwargs(dict(requests[members[0]].args[1]), 256)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen = kwargs.pop("max_gen_toks")
            if not kwargs.get("do_sample"):
                kwargs.pop("temperature", None)
                kwargs["do_sample"] = False
            keep = self.max_length - max_gen
            if keep <= 0:
                raise UserError(f"max_gen_toks {max_gen} leaves no room for a context in max_length {self.max_length}")
            contexts = [self.tok_encode(requests[i].args[0], left_truncate_len=keep) for i in members]

            def run(idx, contexts=contexts, until=until, max_gen=max_gen, kwargs=kwargs):
                batch = pad_batch([contexts[j] for j in idx], self.tokenizer.pad_token_id, side="left",
                                  device=self.runner.device)
                width = batch["input_ids"].shape[1]
                with torch.no_grad():
                    generated = self.model.generate(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        max_length=width + max_gen, pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
                        stopping_criteria=stop_sequences_criteria(self.tokenizer, until, width, len(idx)), **kwargs)
                self._count(batch["attention_mask"])
                texts = self.tokenizer.batch_decode(generated[:, width:].tolist(), skip_special_tokens=True)
                return [postprocess_generated_text(t, until, None) for t in texts]

            texts = self.runner.map_batches([len(c) + max_gen for c in contexts], run)
            for i, text in zip(members, texts):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out
