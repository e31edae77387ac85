"""EncoderLM's batched mask-append scoring against the one-row-at-a-time computation that Ettin's
lm-eval fork ran (written out here from the method's definition), for many requests of different
lengths, with and without the [SEP] term, with other numbers of masks and with the MNTP read
(one position before the first [MASK]); greedy generation with its own mask count and a stop
string; the options as lm-eval model_args; and a whole lm-eval task."""

from __future__ import annotations

import pytest
import torch

from generative_fixtures import cpu_runner, instance, spec_of, task_requests, tiny_paths  # noqa: F401

TOL = 1e-4


def reference_rows(tok, context: str, continuation: str, score_sep: bool):
    """([CLS] ctx, continuation tokens) as the fork builds them (lm_eval/api/model.py L343-357 at
    b4b5728): trailing spaces move to the continuation, the context is encoded with its special
    tokens and its final [SEP] moved to the end of the separately encoded continuation."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    context_ids = tok(stripped)["input_ids"]
    prefix, sep = context_ids[:-1], context_ids[-1]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    return prefix, (cont + [sep] if score_sep else cont)


@torch.no_grad()
def reference_score(model, tok, prefix, cont, num_masks: int, mntp: bool = False):
    """One model call per continuation token, full logits, read at the first [MASK] (MNTP: at the
    token before it, the last context token for the first continuation token)."""
    total, greedy = 0.0, True
    for i, target in enumerate(cont):
        ids = prefix + cont[:i] + [tok.mask_token_id] * num_masks + [tok.sep_token_id]
        read = len(prefix) + i - 1 if mntp else len(prefix) + i
        logits = model(input_ids=torch.tensor([ids])).logits[0, read].float()
        total += float(torch.log_softmax(logits, -1)[target])
        greedy &= int(logits.argmax()) == target
    return total, greedy


@torch.no_grad()
def reference_generate(model, tok, context: str, stops: list[str], max_new: int, num_masks: int = 2,
                       mntp: bool = False) -> str:
    """The fork's greedy loop: HF generate feeds ``[CLS] ctx [SEP] t_1..t_k``, the fork drops a
    trailing [SEP] (so only before the first token) and appends num_masks masks and a [SEP]."""
    context_ids = tok(context)["input_ids"]
    new = []
    while len(new) < max_new:
        seq = context_ids + new
        seq = seq[:-1] if seq[-1] == tok.sep_token_id else seq
        ids = seq + [tok.mask_token_id] * num_masks + [tok.sep_token_id]
        read = len(seq) - 1 if mntp else len(seq)
        token = int(model(input_ids=torch.tensor([ids])).logits[0, read].argmax())
        if token == tok.sep_token_id:
            break
        new.append(token)
        if any(s in tok.decode(new, skip_special_tokens=True) for s in stops):
            break
    text = tok.decode(new, skip_special_tokens=True)
    for s in stops:
        text = text.split(s)[0]
    return text


@pytest.fixture(scope="module")
def small_budget_runner():
    from harness.runner import Runner

    return Runner(device="cpu", dtype="fp32", token_budget=384)  # many batches, mixed lengths in each


def encoder_lm(runner, path, **options):
    from harness.lm.encoder import EncoderLM

    return EncoderLM(runner=runner, spec=spec_of(path), **options)


def scoring_requests() -> list:
    reqs = task_requests("arc_easy_local", limit=2) + task_requests("piqa_local", limit=2)
    reqs += task_requests("lambada_openai_local", limit=3) + task_requests("winogrande_local", limit=1)
    reqs += [instance("loglikelihood", args) for args in [
        ("", "an empty context"), ("Trailing spaces move  ", "to the continuation"),
        ("A question is answered with a short answer. " * 6, " yes"), ("One", " two three four five six seven")]]
    return reqs


@pytest.mark.parametrize("num_masks,score_sep,mntp", [(3, True, False), (2, False, False), (3, True, True)])
def test_batched_scores_equal_one_row_reference(tiny_paths, small_budget_runner, num_masks, score_sep, mntp):
    lm = encoder_lm(small_budget_runner, tiny_paths["encoder"], num_masks=num_masks, score_sep=score_sep, mntp=mntp)
    reqs = scoring_requests()
    ours = lm.loglikelihood(reqs)
    for req, (logprob, greedy) in zip(reqs, ours):
        prefix, cont = reference_rows(lm.tokenizer, *req.args, score_sep=score_sep)
        expected = reference_score(lm.model, lm.tokenizer, prefix, cont, num_masks, mntp)
        assert abs(logprob - expected[0]) <= TOL and greedy == expected[1], req.args


def test_sep_term_is_the_only_difference(tiny_paths, cpu_runner):
    with_sep = encoder_lm(cpu_runner, tiny_paths["encoder"], score_sep=True)
    without = encoder_lm(cpu_runner, tiny_paths["encoder"], score_sep="false")
    ctx, cont = "The quick brown fox", " jumps over"
    p_with, c_with = with_sep.encode_pair(ctx, cont)
    p_without, c_without = without.encode_pair(ctx, cont)
    assert p_with == p_without and p_with[0] == with_sep.cls_id and p_with[-1] != with_sep.sep_id
    assert c_with == c_without + [with_sep.sep_id]
    full, part = with_sep.score_tokens([(p_with, c_with)])[0][0], without.score_tokens([(p_without, c_without)])[0][0]
    sep_only = reference_score(with_sep.model, with_sep.tokenizer, p_with + c_without, [with_sep.sep_id], 3)[0]
    assert full == pytest.approx(part + sep_only, abs=TOL)


def test_greedy_flag_on_the_models_own_continuation(tiny_paths, cpu_runner):
    lm = encoder_lm(cpu_runner, tiny_paths["encoder"], score_sep=False)
    prefix = lm.tok_encode("Water boils at")[:-1]
    cont = []
    with torch.no_grad():
        for _ in range(4):
            ids = prefix + cont + [lm.mask_id] * 3 + [lm.sep_id]
            cont.append(int(lm.model(input_ids=torch.tensor([ids])).logits[0, len(prefix) + len(cont)].argmax()))
    (_, greedy), (_, not_greedy) = lm.score_tokens([(prefix, cont), (prefix, cont[:2] + [(cont[2] + 1) % 500])])
    assert greedy and not not_greedy


def test_loglikelihood_rolling_is_mask_append_from_cls(tiny_paths, small_budget_runner):
    lm = encoder_lm(small_budget_runner, tiny_paths["encoder"])
    reqs = task_requests("wikitext_local", limit=1) + [instance("loglikelihood_rolling", ("Short text.",))]
    for req, total in zip(reqs, lm.loglikelihood_rolling(reqs)):
        cont = lm.tokenizer(req.args[0])["input_ids"][1:]  # text tokens and the final [SEP]
        assert total == pytest.approx(reference_score(lm.model, lm.tokenizer, [lm.cls_id], cont, 3)[0], abs=TOL)


@pytest.mark.parametrize("options", [{}, {"mntp": True, "score_sep": False, "max_length": 24}])
def test_rolling_rows_are_built_per_batch_with_the_same_scores(tiny_paths, small_budget_runner, options, monkeypatch):
    from harness.lm import encoder
    from harness.lm.encoder import mask_append_rows

    lm = encoder_lm(small_budget_runner, tiny_paths["encoder"], **options)
    reqs = task_requests("wikitext_local", limit=3) + [instance("loglikelihood_rolling", ("Short text.",))]
    # every row of every request built first, then read: the scores before rows were built per batch
    tail = [lm.sep_id] if lm.score_sep else []
    pairs = [([lm.cls_id], lm.tokenizer.encode(r.args[0], add_special_tokens=False) + tail) for r in reqs]
    rows = [(i, row) for i, (p, c) in enumerate(pairs)
            for row in mask_append_rows(p, c, lm.mask_id, lm.sep_id, lm.num_masks, lm.max_length, lm.mntp)]
    read = lm._read_rows([row for _, row in rows])
    before = [sum(lp for (i, _), (lp, _) in zip(rows, read) if i == n) for n in range(len(reqs))]

    built, alive = [0], []  # rows built so far; rows built before each batch ran, and the batch size
    real_row, real_map = encoder.mask_append_row, small_budget_runner.map_batches

    def counted_row(*args, **kwargs):
        built[0] += 1
        return real_row(*args, **kwargs)

    def watched_map(lengths, fn, *args, **kwargs):
        def run(idx):
            alive.append((built[0], len(idx)))
            return fn(idx)
        return real_map(lengths, run, *args, **kwargs)

    monkeypatch.setattr(encoder, "mask_append_row", counted_row)
    monkeypatch.setattr(small_budget_runner, "map_batches", watched_map)
    assert lm.loglikelihood_rolling(reqs) == before  # the same batches: the same floats
    assert len(alive) > 3 and sum(n for _, n in alive) == len(rows)
    done = 1  # the mask check builds one empty row first
    for so_far, n in alive:  # before a batch runs, only the rows of the batches before it were built
        assert so_far == done
        done += n


@pytest.mark.parametrize("options", [{}, {"gen_num_masks": 1, "num_masks": 4, "mntp": True}])
def test_generation_stops_at_stop_string_and_matches_reference(tiny_paths, options):
    from harness.runner import Runner

    runner = Runner(device="cpu", dtype="fp32", token_budget=256)  # its own copy: the weights change below
    lm = encoder_lm(runner, tiny_paths["encoder"], **options)
    gen_masks, mntp = options.get("gen_num_masks", 2), options.get("mntp", False)  # the fork's: 2, no MNTP
    with torch.no_grad():  # forbid special and unused ids (a random model favours them) so text comes out
        lm.model.decoder.bias[lm.tokenizer.all_special_ids] = -1e4
        lm.model.decoder.bias[len(lm.tokenizer):] = -1e4
    contexts = ["The quick brown", "Question: What is the capital of France?\nAnswer:", "A"]
    unstopped = [reference_generate(lm.model, lm.tokenizer, c, [], 12, gen_masks, mntp) for c in contexts]
    stop = next(ch for ch in unstopped[0][2:] if ch.strip() and ch != "\ufffd")  # a character it will produce
    reqs = [instance("generate_until", (c, {"until": [stop], "max_gen_toks": 12})) for c in contexts]
    rows, read_rows = [], lm._read_rows
    lm._read_rows = lambda batch: rows.extend(batch) or read_rows(batch)
    ours = lm.generate_until(reqs)
    expected = [reference_generate(lm.model, lm.tokenizer, c, [stop, "[SEP]"], 12, gen_masks, mntp) for c in contexts]
    assert ours == expected
    assert stop not in ours[0] and len(ours[0]) < len(unstopped[0])
    assert lm.generate_until([instance("generate_until", (c, {"until": [], "max_gen_toks": 12}))
                              for c in contexts]) == unstopped
    # every row: gen_num_masks masks then [SEP], read at the first mask (MNTP: the token before it);
    # the context's [SEP] is dropped for the first token only, as in the fork
    sep, mask = lm.sep_id, lm.mask_id
    for ids, read, _ in rows:
        assert ids[-gen_masks - 1:] == [mask] * gen_masks + [sep] and ids.count(mask) == gen_masks
        assert read == len(ids) - gen_masks - 1 - int(mntp)
    seps = [ids.count(sep) for ids, _, _ in rows]
    assert seps.count(1) == 2 * len(contexts) and seps.count(2) == len(rows) - 2 * len(contexts) > 0


def test_lm_eval_model_args(tiny_paths):
    """The options as lm-eval passes them from a model_args string, and MNTP chosen by model."""
    import dataclasses

    from lm_eval.api.registry import get_model

    from harness.lm import register

    register()
    from harness.errors import UserError
    from harness.models import ettin, resolve

    cls = get_model("ettin-encoder")
    path = tiny_paths["encoder"]
    lm = cls.create_from_arg_string(f"pretrained={path},mntp=true,num_masks=4,gen_num_masks=1,score_sep=false",
                                    {"device": "cpu", "dtype": "fp32", "batch_size": 1})
    assert (lm.mntp, lm.num_masks, lm.gen_num_masks, lm.score_sep) == (True, 4, 1, False)
    lm = cls.create_from_arg_string(f"pretrained={path}", {"device": "cpu", "dtype": "fp32"})
    assert (lm.mntp, lm.num_masks, lm.gen_num_masks) == (False, 3, 2)  # the fork's defaults
    assert lm.get_model_info()["mask_append"]["mntp"] is False
    for bad in ("mntp=maybe", "gen_num_masks=0", "num_masks=two"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            cls.create_from_arg_string(f"pretrained={path},{bad}", {"device": "cpu"})
    for size in ("17m", "1b"):
        assert ettin("encoder-from-decoder", size).mntp
        assert not ettin("encoder", size).mntp and not ettin("decoder-from-encoder", size).mntp
    assert resolve("jhu-clsp/ettin-enc-from-dec-68m").mntp
    auto = cls(runner=lm.runner, spec=dataclasses.replace(lm.spec, mntp=True), mntp="auto")
    assert auto.mntp and not cls(runner=lm.runner, spec=auto.spec, mntp=False).mntp


def test_simple_evaluate_with_mntp_model_args(tiny_paths, cpu_runner):
    from lm_eval.evaluator import simple_evaluate

    from harness.lm.tasks import build_task

    manager, task = build_task("generative_demo")
    out = simple_evaluate(model="ettin-encoder", model_args=f"pretrained={tiny_paths['encoder']},mntp=true",
                          tasks=[task], task_manager=manager, limit=2, log_samples=True, device="cpu")
    assert out["config"]["mask_append"]["mntp"] is True
    lm = encoder_lm(cpu_runner, tiny_paths["encoder"])  # only for its model and tokenizer
    for sample in out["samples"]["generative_demo"]:
        for (context, continuation), resp in zip(sample["arguments"], sample["filtered_resps"]):
            prefix, cont = reference_rows(lm.tokenizer, context, continuation, score_sep=True)
            assert resp[0] == pytest.approx(reference_score(lm.model, lm.tokenizer, prefix, cont, 3, mntp=True)[0],
                                            abs=TOL)


def test_evaluate_task_with_samples(tiny_paths, cpu_runner):
    from harness.lm.evaluate import evaluate_task

    spec = spec_of(tiny_paths["encoder"])
    result = evaluate_task(cpu_runner, spec, "generative_demo", log_samples=True, options={"num_masks": 2})
    assert result["n_examples"] == 6 and result["split"] == "test" and result["headline_metric"] == "acc_norm"
    lm = encoder_lm(cpu_runner, tiny_paths["encoder"], num_masks=2)
    for sample in result["samples"]:
        scores = [logprob for logprob, _ in lm.loglikelihood([instance("loglikelihood", tuple(a))
                                                              for a in sample["arguments"]])]
        logged = [resp[0] for resp in sample["filtered_resps"]]
        assert logged == pytest.approx(scores, abs=TOL)
        assert sample["acc"] == float(max(range(len(scores)), key=scores.__getitem__) == sample["target"])
    assert sum(s["acc"] for s in result["samples"]) / 6 == pytest.approx(result["metrics"]["acc"])


def test_bad_options_are_user_errors(tiny_paths, cpu_runner):
    from harness.lm.evaluate import evaluate_task
    from harness.errors import UserError

    with pytest.raises(UserError, match="num_masks"):
        encoder_lm(cpu_runner, tiny_paths["encoder"], num_masks=0)
    with pytest.raises(UserError, match="unknown model argument"):
        evaluate_task(cpu_runner, spec_of(tiny_paths["encoder"]), "generative_demo", options={"add_bos_token": True})
