"""EncoderLM: an encoder scores and generates text by mask-append (Samuel 2024), as Ettin's
lm-eval fork did for its encoders.

A context is encoded with the tokenizer's special tokens, ``[CLS] ctx [SEP]``; its final ``[SEP]``
moves to the end of the continuation, so the model must also predict where the text ends
(``score_sep=False`` leaves that out). For each continuation token t_i the model reads

    [CLS] ctx t_1 .. t_{i-1} [MASK] x num_masks [SEP]

and log P(t_i) is the log-softmax at the first [MASK]. A request's score is the sum over i; it is
greedy when every t_i is the argmax. The fork ran one such row at a time; here the rows of many
requests are length-sorted into token-budget batches, right-padded (the padding is masked out of
attention and never read), and the LM head runs only at the read positions.
"""

from __future__ import annotations

import torch
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from harness.adapters.decoder_lm import RunnerLM, _flag
from harness.errors import UserError
from harness.runner import pad_batch


def mask_append_rows(prefix: list[int], continuation: list[int], mask_id: int, sep_id: int, num_masks: int = 3,
                     max_length: int | None = None) -> list[tuple[list[int], int, int]]:
    """(input ids, position read, target) for every continuation token.

    When a row is longer than ``max_length`` the oldest tokens after the first ([CLS]) go.
    """
    rows = []
    for i, target in enumerate(continuation):
        ids = list(prefix) + list(continuation[:i]) + [mask_id] * num_masks + [sep_id]
        read = len(prefix) + i
        if max_length and len(ids) > max_length:
            cut = len(ids) - max_length
            ids = ids[:1] + ids[1 + cut:]
            read -= cut
        rows.append((ids, read, target))
    return rows


class EncoderLM(RunnerLM):
    """Masked-LM backend: loglikelihood, loglikelihood_rolling and generate_until by mask-append."""

    head = "masked-lm"

    def __init__(self, pretrained: str | None = None, *, num_masks: int = 3, score_sep=True, **kwargs):
        super().__init__(pretrained, **kwargs)
        self.num_masks = int(num_masks)
        self.score_sep = _flag(score_sep)
        tok = self.tokenizer
        missing = [name for name in ("cls_token_id", "sep_token_id", "mask_token_id") if getattr(tok, name) is None]
        if missing or self.num_masks < 1:
            raise UserError(f"mask-append scoring needs [CLS], [SEP] and [MASK] tokens and num_masks >= 1; "
                            f"'{self.spec.model_id}' lacks {', '.join(missing) or 'a valid num_masks'}")
        self.cls_id, self.sep_id, self.mask_id = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id

    @property
    def eot_token_id(self) -> int:
        return self.sep_id

    @property
    def prefix_token_id(self) -> int:
        return self.cls_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        positions = getattr(self.model.config, "max_position_embeddings", None)
        tok_max = getattr(self.tokenizer, "model_max_length", None) or 0
        candidates = [n for n in (positions, tok_max if tok_max < 10**9 else None) if n]
        return min(candidates) if candidates else 512

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=True if add_special_tokens is None else add_special_tokens)

    def context_prefix(self, context: str) -> list[int]:
        """``[CLS] ctx``: the context with its special tokens but without the final ``[SEP]``."""
        prefix = self.tok_encode(context)
        return prefix[:-1] if prefix and prefix[-1] == self.sep_id else prefix

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(``[CLS] ctx``, continuation tokens ending in the context's ``[SEP]``) for one request."""
        spaces = len(context) - len(context.rstrip())
        if spaces:  # as lm-eval does: trailing spaces of the context belong to the continuation
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        prefix = self.context_prefix(context)
        cont = whole[len(prefix):]
        if not self.score_sep and cont and cont[-1] == self.sep_id:
            cont = cont[:-1]
        return prefix, cont

    # -- scoring --------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        answers = self.score_tokens([self.encode_pair(*req.args) for req in requests])
        for req, answer in zip(requests, answers):
            self.cache_hook.add_partial("loglikelihood", req.args, answer)
        return answers

    def _loglikelihood_tokens(self, requests, **kwargs) -> list[tuple[float, bool]]:
        return self.score_tokens([(ctx, cont) for _, ctx, cont in requests])

    def score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of mask-append log-probabilities, all tokens greedy) per (prefix, continuation)."""
        rows, owner = [], []
        for i, (prefix, cont) in enumerate(pairs):
            for row in mask_append_rows(prefix, cont, self.mask_id, self.sep_id, self.num_masks, self.max_length):
                rows.append(row)
                owner.append(i)
        results = self._read_rows(rows)
        totals = [0.0] * len(pairs)
        greedy = [True] * len(pairs)
        for i, (logprob, top), (_, _, target) in zip(owner, results, rows):
            totals[i] += logprob
            greedy[i] &= top == target
        return list(zip(totals, greedy))

    def _read_rows(self, rows: list[tuple[list[int], int, int]]) -> list[tuple[float, int]]:
        """(log P(target), argmax) at each row's read position, batched by the runner."""

        def run(idx):
            batch = pad_batch([rows[j][0] for j in idx], self.tokenizer.pad_token_id, side="right",
                              device=self.runner.device)
            self._count(batch["attention_mask"])
            device = self.runner.device
            lp, top = self._score_at(batch, torch.arange(len(idx), device=device),
                                     torch.tensor([rows[j][1] for j in idx], device=device),
                                     torch.tensor([rows[j][2] for j in idx], device=device))
            return list(zip(lp.tolist(), top.tolist()))

        return self.runner.map_batches([len(r[0]) for r in rows], run)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        tail = [self.sep_id] if self.score_sep else []
        pairs = [([self.cls_id], self.tokenizer.encode(req.args[0], add_special_tokens=False) + tail)
                 for req in requests]
        totals = [logprob for logprob, _ in self.score_tokens(pairs)]
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # -- generation -----------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy mask-append decoding: append the argmax at the first [MASK] until a stop string,
        [SEP] or max_gen_toks; every step runs all unfinished requests in one set of batches."""
        eos = self.tokenizer.decode([self.sep_id])
        states = []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), 256)
            if kwargs.get("do_sample"):
                raise UserError("mask-append generation is greedy; do_sample=True cannot be used with encoders")
            prefix = self.context_prefix(context)
            states.append({"prefix": prefix, "new": [], "until": handle_stop_sequences(kwargs.get("until"), eos=eos),
                           "max": int(kwargs["max_gen_toks"]), "done": int(kwargs["max_gen_toks"]) <= 0})
        while True:
            active = [s for s in states if not s["done"]]
            if not active:
                break
            rows = [mask_append_rows(s["prefix"] + s["new"], [self.sep_id], self.mask_id, self.sep_id,
                                     self.num_masks, self.max_length)[0] for s in active]
            for s, (_, token) in zip(active, self._read_rows(rows)):
                if token == self.sep_id:
                    s["done"] = True
                    continue
                s["new"].append(token)
                text = self.tokenizer.decode(s["new"], skip_special_tokens=True)
                s["done"] = len(s["new"]) >= s["max"] or any(stop and stop in text for stop in s["until"])
        out = []
        for req, s in zip(requests, states):
            text = postprocess_generated_text(self.tokenizer.decode(s["new"], skip_special_tokens=True), s["until"], None)
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out
