"""EncoderLM's batched mask-append scoring against the one-row-at-a-time computation that Ettin's
lm-eval fork ran (written out here from the method's definition), for many requests of different
lengths, with and without the [SEP] term and with other numbers of masks; greedy generation with
a stop string; and a whole lm-eval task."""

from __future__ import annotations

import pytest
import torch

from generative_fixtures import cpu_runner, instance, spec_of, task_requests, tiny_paths  # noqa: F401

TOL = 1e-4


def reference_rows(tok, context: str, continuation: str, score_sep: bool):
    """([CLS] ctx, continuation tokens) as the method defines them."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    prefix = tok(stripped)["input_ids"][:-1]  # [CLS] ctx, its [SEP] moved to the end
    cont = tok(stripped + continuation)["input_ids"][len(prefix):]
    return prefix, (cont if score_sep else cont[:-1])


@torch.no_grad()
def reference_score(model, tok, prefix, cont, num_masks: int):
    """One model call per continuation token, full logits, read at the first [MASK]."""
    total, greedy = 0.0, True
    for i, target in enumerate(cont):
        ids = prefix + cont[:i] + [tok.mask_token_id] * num_masks + [tok.sep_token_id]
        logits = model(input_ids=torch.tensor([ids])).logits[0, len(prefix) + i].float()
        total += float(torch.log_softmax(logits, -1)[target])
        greedy &= int(logits.argmax()) == target
    return total, greedy


@torch.no_grad()
def reference_generate(model, tok, context: str, stops: list[str], max_new: int, num_masks: int = 3) -> str:
    prefix = tok(context)["input_ids"][:-1]
    new = []
    while len(new) < max_new:
        ids = prefix + new + [tok.mask_token_id] * num_masks + [tok.sep_token_id]
        token = int(model(input_ids=torch.tensor([ids])).logits[0, len(prefix) + len(new)].argmax())
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
    from harness.adapters.mask_append import EncoderLM

    return EncoderLM(runner=runner, spec=spec_of(path), **options)


def scoring_requests() -> list:
    reqs = task_requests("arc_easy_local", limit=2) + task_requests("piqa_local", limit=2)
    reqs += task_requests("lambada_openai_local", limit=3) + task_requests("winogrande_local", limit=1)
    reqs += [instance("loglikelihood", args) for args in [
        ("", "an empty context"), ("Trailing spaces move  ", "to the continuation"),
        ("A question is answered with a short answer. " * 6, " yes"), ("One", " two three four five six seven")]]
    return reqs


@pytest.mark.parametrize("num_masks,score_sep", [(3, True), (2, False)])
def test_batched_scores_equal_one_row_reference(tiny_paths, small_budget_runner, num_masks, score_sep):
    lm = encoder_lm(small_budget_runner, tiny_paths["encoder"], num_masks=num_masks, score_sep=score_sep)
    reqs = scoring_requests()
    ours = lm.loglikelihood(reqs)
    for req, (logprob, greedy) in zip(reqs, ours):
        prefix, cont = reference_rows(lm.tokenizer, *req.args, score_sep=score_sep)
        expected = reference_score(lm.model, lm.tokenizer, prefix, cont, num_masks)
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


def test_generation_stops_at_stop_string_and_matches_reference(tiny_paths):
    from harness.runner import Runner

    runner = Runner(device="cpu", dtype="fp32", token_budget=256)  # its own copy: the weights change below
    lm = encoder_lm(runner, tiny_paths["encoder"])
    with torch.no_grad():  # forbid special and unused ids (a random model favours them) so text comes out
        lm.model.decoder.bias[lm.tokenizer.all_special_ids] = -1e4
        lm.model.decoder.bias[len(lm.tokenizer):] = -1e4
    contexts = ["The quick brown", "Question: What is the capital of France?\nAnswer:", "A"]
    unstopped = [reference_generate(lm.model, lm.tokenizer, c, [], 12) for c in contexts]
    stop = next(ch for ch in unstopped[0][2:] if ch.strip() and ch != "\ufffd")  # a character it will produce
    reqs = [instance("generate_until", (c, {"until": [stop], "max_gen_toks": 12})) for c in contexts]
    ours = lm.generate_until(reqs)
    expected = [reference_generate(lm.model, lm.tokenizer, c, [stop, "[SEP]"], 12) for c in contexts]
    assert ours == expected
    assert stop not in ours[0] and len(ours[0]) < len(unstopped[0])


def test_evaluate_task_with_samples(tiny_paths, cpu_runner):
    from harness.adapters.lm_eval_bridge import evaluate_task

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
    from harness.adapters.lm_eval_bridge import evaluate_task
    from harness.errors import UserError

    with pytest.raises(UserError, match="num_masks"):
        encoder_lm(cpu_runner, tiny_paths["encoder"], num_masks=0)
    with pytest.raises(UserError, match="unknown option"):
        evaluate_task(cpu_runner, spec_of(tiny_paths["encoder"]), "generative_demo", options={"add_bos_token": True})
