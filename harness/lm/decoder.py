"""DecoderLM: lm-eval's three requests for causal models, on the shared runner.

Tokenization follows lm-eval's ``hf`` model with ``add_bos_token=True`` (as Ettin's scripts ran
it), so every request gets the same tokens and the same log-likelihood as there. What differs
is the batching. Requests whose inputs share a prefix (a context and its choices, or two
WinoGrande sentences that differ late, or two PIQA solutions that start alike) are packed into
ONE row holding their prefix tree: each token once, laid out depth-first, with an attention
mask that lets every token see its ancestors only, so a shared prefix is encoded once and the
LM head (a 50k vocabulary: most of the work) runs once per distinct read position. Rows
(``harness.lm.packing``) are length-sorted into token-budget batches by the runner.

"""

from __future__ import annotations

from collections import defaultdict

import torch
from lm_eval import utils as lm_utils
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.models.utils_hf import stop_sequences_criteria

from harness.errors import UserError
from harness.lm import reuse
from harness.lm.base import RunnerLM, flag
from harness.lm.packing import MAX_TREE_WIDTH, TreeRow, pack_rows, tree_inputs
from harness.runner import length_batches, pad_batch

# Padded tokens per forward pass on a CPU: a runner batch (8192 tokens there) is split further,
# since a CPU gains nothing from bigger matmuls and a smaller batch pads less (a batch takes the
# width of its widest row); measured 5-15% faster on PIQA and WinoGrande rows.
FORWARD_TOKENS = {"cpu": 4096}



class CausalGeneration:
    """``generate_until`` for a causal model: HF ``generate`` on left-padded, length-batched
    contexts, one batch set per distinct set of generation arguments, as lm-eval's hf model."""

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


class DecoderLM(CausalGeneration, RunnerLM):
    """Causal LM backend: loglikelihood, loglikelihood_rolling and generate_until."""

    head = "causal-lm"

    def __init__(self, pretrained: str | None = None, *, add_bos_token=True, prefix_sharing="auto", **kwargs):
        super().__init__(pretrained, **kwargs)
        self.add_bos_token = flag(add_bos_token)
        attn = getattr(self.model.config, "_attn_implementation", "")
        layer_types = set(getattr(self.model.config, "layer_types", None) or ["full_attention"])
        # The tree mask is handed to the model as {layer type: 4-D mask}; only eager/sdpa
        # attention take an arbitrary mask, and only these two layer types are known here.
        supported = attn in ("sdpa", "eager") and layer_types <= {"full_attention", "sliding_attention"}
        self.prefix_sharing = supported if prefix_sharing in ("auto", None) else flag(prefix_sharing) and supported

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
        ids = reuse.encode(self.tokenizer, string)
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
        keys = []  # per pair: (model input, continuation), as lm-eval's hf model cuts them
        for ctx, cont in pairs:
            if not ctx:
                raise ValueError("a context needs at least one token (lm-eval gives an empty one the prefix token)")
            if not cont or len(cont) > limit:
                raise ValueError(f"a continuation of {len(cont)} tokens cannot be scored with max_length {limit}")
            # lm-eval's left truncation: keep the last max_length+1 tokens, drop the last input
            seq = (list(ctx) + list(cont))[-(limit + 1):]
            keys.append((tuple(seq[:-1]), tuple(seq[-len(cont):])))
        unique = list(dict.fromkeys(keys))  # a request asked twice is scored once
        rows = pack_rows([inp for inp, _ in unique], share=self.prefix_sharing,
                         max_width=max(1, min(limit, MAX_TREE_WIDTH)))
        scored = self.runner.map_batches([len(r.tokens) for r in rows],
                                         lambda idx: self._score_rows([rows[j] for j in idx], unique))
        answers = {}
        for row, results in zip(rows, scored):
            answers.update((unique[member], result) for member, result in zip(row.members, results))
        return [answers[key] for key in keys]

    def _score_rows(self, rows: list["TreeRow"], requests: list[tuple[tuple, tuple]]) -> list[list[tuple[float, bool]]]:
        """Score the requests of a batch of rows: per row, (log-likelihood, is_greedy) per member."""
        limit = FORWARD_TOKENS.get(self.runner.device.type)
        if limit is None:
            return self._forward_rows(rows, requests)
        out = [None] * len(rows)
        for part in length_batches([len(r.tokens) for r in rows], limit):
            for j, result in zip(part, self._forward_rows([rows[j] for j in part], requests)):
                out[j] = result
        return out

    def _forward_rows(self, rows: list["TreeRow"], requests: list[tuple[tuple, tuple]]) -> list[list[tuple[float, bool]]]:
        """One forward pass over ``rows``: per row, (log-likelihood, is_greedy) per member."""
        device = self.runner.device
        read_rows, read_cols, entry_read, targets, spans = [], [], [], [], []
        for b, row in enumerate(rows):
            slot = {}  # node -> index of its read in this batch: a position shared by several requests is read once
            for member, path in zip(row.members, row.paths):
                inp, cont = requests[member]
                start = len(targets)
                for node in path[len(inp) - len(cont):]:
                    if node not in slot:
                        slot[node] = len(read_rows)
                        read_rows.append(b)
                        read_cols.append(node)
                    entry_read.append(slot[node])
                targets += cont
                spans.append((start, len(targets)))
        if self.prefix_sharing:
            inputs = tree_inputs(rows, self.tokenizer.pad_token_id, self.model.config, device, self.runner.dtype)
        else:
            inputs = pad_batch([r.tokens for r in rows], self.tokenizer.pad_token_id, side="right", device=device)
        self.runner.tokens_processed += sum(len(r.tokens) for r in rows)
        logprob, greedy = self._read(inputs, torch.tensor(read_rows, device=device),
                                     torch.tensor(read_cols, device=device), torch.tensor(entry_read),
                                     torch.tensor(targets))
        answers = iter(spans)
        out = []
        for row in rows:
            row_out = []
            for _ in row.members:
                start, end = next(answers)
                # one float32 sum over the request's tokens, as lm-eval adds them up
                row_out.append((float(logprob[start:end].sum()), bool(greedy[start:end].all())))
            out.append(row_out)
        return out

    @torch.no_grad()
    def _read(self, inputs: dict, rows: torch.Tensor, cols: torch.Tensor, entry_read: torch.Tensor,
              targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per entry (a read position and a target token): log P(target) and whether the target is
        the argmax, as lm-eval's hf model decides it (argmax of the log-probabilities, first index
        on a tie). The LM head runs once per read position, however many entries read it."""
        hidden, project = self._hidden_at(inputs, rows, cols)
        logprob = torch.empty(len(targets))
        greedy = torch.zeros(len(targets), dtype=torch.bool)
        order = torch.argsort(entry_read, stable=True)
        by_read = entry_read[order]
        for start, lp, _ in self._logprob_chunks(hidden, project):
            lo, hi = torch.searchsorted(by_read, torch.tensor([start, start + lp.shape[0]])).tolist()
            sel = order[lo:hi]
            node, target = (entry_read[sel] - start).to(lp.device), targets[sel].to(lp.device)
            logprob[sel], greedy[sel] = lp[node, target].cpu(), is_argmax(lp, node, target).cpu()
        return logprob, greedy

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


def is_argmax(lp: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``lp[rows].argmax(-1) == targets`` (the first index wins a tie, as in torch.argmax), with
    an argmax only over the rows whose target reaches the row's max: a max over a 50k vocabulary
    is several times cheaper than an argmax, and few targets reach it."""
    top = lp[rows, targets] == lp.amax(-1)[rows]
    if bool(top.any()):
        hit = top.nonzero()[:, 0]
        top[hit] = lp[rows[hit]].argmax(-1) == targets[hit]
    return top
