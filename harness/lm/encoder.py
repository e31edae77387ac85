"""EncoderLM: an encoder scores and generates text by mask-append (Samuel 2024), as Ettin's
lm-eval fork did for its encoders.

The fork is orionw/lm-evaluation-harness at commit b4b572810c4eea6e21aecffc23c9938244de6ea0
("add winogender; fix MNTP"): ``EncoderAsPseudoCausalLM`` in lm_eval/models/utils.py (lines
738-862) and the ``is_encoder`` branches of lm_eval/models/huggingface.py (scoring, lines
1052-1142) and lm_eval/api/model.py (lines 350-357). Its head 26eaf68 ("matched") cannot be
imported (a default argument reads ``self``, utils.py:761 there); at b4b5728 scoring runs, and
generation builds the rows below but returns logits of a shape HF ``generate`` cannot index
(``squeeze(0)``, utils.py:833; 26eaf68 fixes that but also moves the read one token earlier, which
is not followed here).

A context is encoded with the tokenizer's special tokens, ``[CLS] ctx [SEP]``; its final ``[SEP]``
moves to the end of the continuation, so the model must also predict where the text ends
(``score_sep=False`` leaves that out). For each continuation token t_i the model reads

    [CLS] ctx t_1 .. t_{i-1} [MASK] x num_masks [SEP]

and log P(t_i) is the log-softmax at the first [MASK]; with ``mntp=True`` (masked next-token
prediction, the fork's ``uses_mtnp``, which its run_eval.sh sets for an encoder-from-decoder
model) it is read one position earlier, at t_{i-1} (at the last context token for t_1). A
request's score is the sum over i; it is greedy when every t_i is the argmax.

Greedy generation appends the argmax of the same read to the sequence, with its own number of
masks (``gen_num_masks``). As in the fork, the context's final ``[SEP]`` is dropped only while
nothing has been generated: HF ``generate`` feeds the model ``[CLS] ctx [SEP] t_1 .. t_k`` and
the fork removes a trailing ``[SEP]`` only, so later rows are
``[CLS] ctx [SEP] t_1 .. t_k [MASK] x gen_num_masks [SEP]``.

The defaults are the fork's (``num_future_masks=2``, utils.py:743): 3 masks for scoring (the
[MASK] huggingface.py:1089 appends and two more, utils.py:766-779 and 798-801; read at
utils.py:811-812) and 2 for generation (the [SEP] takes the third slot, utils.py:818-823; read
at utils.py:832-833).

The fork ran one row at a time; here the rows of many requests are length-sorted into
token-budget batches, right-padded (the padding is masked out of attention and never read), and
the LM head runs only at the read positions. Rows are built per batch from their lengths, so a
long document's rolling log-likelihood keeps one batch of rows in memory, not all of them.
"""

from __future__ import annotations

import torch
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from harness.lm import reuse
from harness.lm.base import RunnerLM, flag
from harness.errors import UserError
from harness.runner import pad_batch

FORK_COMMIT = "orionw/lm-evaluation-harness@b4b572810c4eea6e21aecffc23c9938244de6ea0"
SCORE_MASKS = 3  # the fork's scoring: the appended [MASK] and num_future_masks=2 more
GEN_MASKS = 2  # the fork's generation: num_future_masks=2, the last slot is the [SEP]

def mask_append_row(seq: list[int], mask_id: int, sep_id: int, num_masks: int, mntp: bool = False,
                    max_length: int | None = None) -> tuple[list[int], int]:
    """(``seq [MASK] x num_masks [SEP]``, the position read: the first [MASK], or the one before it
    with ``mntp``). Over ``max_length``, the oldest tokens after the first ([CLS]) go."""
    if max_length and num_masks + 2 + int(mntp) > max_length:  # the read position would fall off the row
        raise UserError(f"--num-masks {num_masks} leaves no room for text in a row of at most {max_length} tokens; "
                        f"use fewer masks or a longer --max-length")
    ids = list(seq) + [mask_id] * num_masks + [sep_id]
    if max_length and len(ids) > max_length:
        ids = ids[:1] + ids[len(ids) - max_length + 1:]
    return ids, len(ids) - num_masks - 1 - int(mntp)


def mask_append_rows(prefix: list[int], continuation: list[int], mask_id: int, sep_id: int,
                     num_masks: int = SCORE_MASKS, max_length: int | None = None,
                     mntp: bool = False) -> list[tuple[list[int], int, int]]:
    """(input ids, position read, target) for every continuation token."""
    return [(*mask_append_row(list(prefix) + list(continuation[:i]), mask_id, sep_id, num_masks, mntp, max_length), t)
            for i, t in enumerate(continuation)]


def _mntp_option(value) -> bool | None:
    """None for "auto" (decide by model), else the flag; lm-eval passes "true"/"false" as bools."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "none", ""):
        return None
    if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise UserError(f"mntp must be true, false or auto, not '{value}'")
    return flag(text)


def _count_option(name: str, value) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise UserError(f"mask-append needs {name} >= 1 (a whole number), not '{value}'")
    return int(value)


class MaskAppendGeneration:
    """Greedy mask-append generation (the fork's ``EncoderAsPseudoCausalLM``): each step appends
    the argmax of the read position of a row built by ``generation_row``."""

    def generation_row(self, context_ids: list[int], new: list[int]) -> tuple[list[int], int, int]:
        """The row that picks the next token after ``new``: ``context_ids`` (``[CLS] ctx [SEP]``)
        then ``new``, a trailing [SEP] dropped (fork utils.py:818-821), and ``gen_num_masks`` masks."""
        seq = list(context_ids) + list(new)
        if seq[-1] == self.sep_id:
            seq = seq[:-1]
        ids, read = mask_append_row(seq, self.mask_id, self.sep_id, self.gen_num_masks, self.mntp, self.max_length)
        return ids, read, self.sep_id  # the target is unused: only the argmax is kept

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy mask-append decoding: append the argmax of each step's row until a stop string,
        [SEP] or max_gen_toks; every step runs all unfinished requests in one set of batches."""
        eos = self.tokenizer.decode([self.sep_id])
        states = []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), 256)
            if kwargs.get("do_sample"):
                raise UserError("mask-append generation is greedy; do_sample=True cannot be used with encoders")
            states.append({"context": self.tok_encode(context), "new": [], "max": int(kwargs["max_gen_toks"]),
                           "until": handle_stop_sequences(kwargs.get("until"), eos=eos),
                           "done": int(kwargs["max_gen_toks"]) <= 0})
        while True:
            active = [s for s in states if not s["done"]]
            if not active:
                break
            rows = [self.generation_row(s["context"], s["new"]) for s in active]
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


class EncoderLM(MaskAppendGeneration, RunnerLM):
    """Masked-LM backend: loglikelihood, loglikelihood_rolling and generate_until by mask-append.

    Model arguments (lm-eval ``model_args``): ``num_masks`` (scoring, default 3), ``gen_num_masks``
    (generation, default 2), ``mntp`` (true, false or auto: true for encoder-from-decoder models),
    ``score_sep`` (default true), and the runner's ``device``, ``dtype``, ``token_budget``,
    ``max_length``.
    """

    head = "masked-lm"

    def __init__(self, pretrained: str | None = None, *, num_masks=SCORE_MASKS, gen_num_masks=GEN_MASKS,
                 mntp="auto", score_sep=True, **kwargs):
        counts = _count_option("num_masks", num_masks), _count_option("gen_num_masks", gen_num_masks)
        mntp = _mntp_option(mntp)
        super().__init__(pretrained, **kwargs)
        self.num_masks, self.gen_num_masks = counts
        self.mntp = self.spec.mntp if mntp is None else mntp  # auto: as the registry says
        self.score_sep = flag(score_sep)
        tok = self.tokenizer
        missing = [name for name in ("cls_token_id", "sep_token_id", "mask_token_id") if getattr(tok, name) is None]
        if missing:
            raise UserError(f"mask-append scoring needs [CLS], [SEP] and [MASK] tokens; "
                            f"'{self.spec.model_id}' lacks {', '.join(missing)}")
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

    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "mask_append": {
            "num_masks": self.num_masks, "gen_num_masks": self.gen_num_masks, "mntp": self.mntp,
            "score_sep": self.score_sep, "fork": FORK_COMMIT}}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return reuse.encode(self.tokenizer, string, True if add_special_tokens is None else add_special_tokens)

    def context_prefix(self, context: str) -> list[int]:
        """``[CLS] ctx``: the context with its special tokens but without the final ``[SEP]``."""
        prefix = self.tok_encode(context)
        return prefix[:-1] if prefix and prefix[-1] == self.sep_id else prefix

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(``[CLS] ctx``, continuation tokens ending in the context's ``[SEP]``) for one request, as
        the fork builds them (api/model.py:343-357): trailing spaces of the context move to the
        continuation, which is encoded on its own (no merge across the boundary)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        cont = self.tok_encode(continuation, add_special_tokens=False)
        return self.context_prefix(context), (cont + [self.sep_id] if self.score_sep else cont)

    # -- scoring --------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        answers = self.score_tokens([self.encode_pair(*req.args) for req in requests])
        for req, answer in zip(requests, answers):
            self.cache_hook.add_partial("loglikelihood", req.args, answer)
        return answers

    def _loglikelihood_tokens(self, requests, **kwargs) -> list[tuple[float, bool]]:
        return self.score_tokens([(ctx, cont) for _, ctx, cont in requests])

    def score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of mask-append log-probabilities, all tokens greedy) per (prefix, continuation).

        A row per continuation token, each nearly as long as its request: rows are built per
        batch, from their lengths alone until then, so a long document (rolling log-likelihood)
        holds one batch of rows in memory, not every row of every request."""
        max_length, extra = self.max_length, self.num_masks + 1
        slots = [(i, k) for i, (_, cont) in enumerate(pairs) for k in range(len(cont))]
        if slots:  # too many masks for a row: say so before any batch runs
            mask_append_row([], self.mask_id, self.sep_id, self.num_masks, self.mntp, max_length)
        lengths = [min(len(pairs[i][0]) + k + extra, max_length) if max_length else len(pairs[i][0]) + k + extra
                   for i, k in slots]

        def row(j: int) -> tuple[list[int], int, int]:
            i, k = slots[j]
            prefix, cont = pairs[i]
            return (*mask_append_row(list(prefix) + list(cont[:k]), self.mask_id, self.sep_id, self.num_masks,
                                     self.mntp, max_length), cont[k])

        results = self._read(lengths, row)
        totals = [0.0] * len(pairs)
        greedy = [True] * len(pairs)
        for (i, k), (logprob, top) in zip(slots, results):
            totals[i] += logprob
            greedy[i] &= top == pairs[i][1][k]
        return list(zip(totals, greedy))

    def _read_rows(self, rows: list[tuple[list[int], int, int]]) -> list[tuple[float, int]]:
        """(log P(target), argmax) at each row's read position, batched by the runner."""
        return self._read([len(r[0]) for r in rows], rows.__getitem__)

    def _read(self, lengths: list[int], row) -> list[tuple[float, int]]:
        """``_read_rows`` of the rows ``row(j)`` builds (``lengths[j]`` tokens long), built per batch."""

        def run(idx):
            built = [row(j) for j in idx]
            batch = pad_batch([ids for ids, _, _ in built], self.tokenizer.pad_token_id, side="right",
                              device=self.runner.device)
            self._count(batch["attention_mask"])
            device = self.runner.device
            lp, top = self._score_at(batch, torch.arange(len(idx), device=device),
                                     torch.tensor([read for _, read, _ in built], device=device),
                                     torch.tensor([target for _, _, target in built], device=device))
            return list(zip(lp.tolist(), top.tolist()))

        return self.runner.map_batches(lengths, run)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        tail = [self.sep_id] if self.score_sep else []
        pairs = [([self.cls_id], self.tokenizer.encode(req.args[0], add_special_tokens=False) + tail)
                 for req in requests]
        totals = [logprob for logprob, _ in self.score_tokens(pairs)]
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals
