"""DecoderLM against lm-eval's own ``hf`` model on the same tiny decoder: the same log-likelihood
per request (|delta| <= 1e-4 in fp32), the same is_greedy flags, rolling log-likelihoods and
greedy generations, with and without prefix sharing and left truncation; and the prefix-tree rows
(layout, mask, when a row grows, capped and split rows) against unpacked scoring."""

from __future__ import annotations

import pytest
import torch

from generative_fixtures import cpu_runner, instance, spec_of, task_requests, tiny_paths  # noqa: F401

TOL = 1e-4


@pytest.fixture(scope="module")
def hf(tiny_paths):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=tiny_paths["decoder"], add_bos_token=True, device="cpu", dtype="float32", batch_size=8)


@pytest.fixture(scope="module")
def decoder(tiny_paths, cpu_runner):
    from harness.lm.decoder import DecoderLM

    return DecoderLM(runner=cpu_runner, spec=spec_of(tiny_paths["decoder"]))


def mc_requests() -> list:
    reqs = []
    for task in ("arc_easy_local", "piqa_local", "hellaswag_local", "winogrande_local", "lambada_openai_local"):
        reqs += task_requests(task)
    reqs += [instance("loglikelihood", args) for args in [
        ("", "an empty context"), ("Trailing spaces move  ", "to the continuation"), ("Paris is", " Paris is")]]
    return reqs


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    deltas = [abs(a[0] - b[0]) for a, b in zip(ours, theirs)]
    assert max(deltas) <= TOL, max(deltas)
    assert [a[1] for a in ours] == [b[1] for b in theirs]


@pytest.mark.parametrize("prefix_sharing", [True, False])
def test_loglikelihood_equals_hf_per_request(hf, decoder, prefix_sharing):
    reqs = mc_requests()
    decoder.prefix_sharing = prefix_sharing
    try:
        ours = decoder.loglikelihood(reqs, disable_tqdm=True)
    finally:
        decoder.prefix_sharing = True
    assert_same(ours, hf.loglikelihood(reqs, disable_tqdm=True))


def tree_requests(decoder) -> list:
    """Requests whose inputs share prefixes in every way a prefix tree merges them: choices of one
    context, contexts that differ late (WinoGrande), choices that start alike (PIQA), a choice that
    is a prefix of another, one-token choices (BoolQ), a repeated request, and a context longer
    than the sliding window (64 tokens in the tiny decoder)."""
    long_ctx = "Science studies the natural world; water boils at one hundred degrees. " * 4
    args = [("Question: What is the capital of France?\nAnswer:", c) for c in (" Paris", " Paris, France", " Lyon")]
    args += [(f"The trophy does not fit into the suitcase because the {w}", " is too large.") for w in ("trophy", "suitcase")]
    args += [("Q: How do I cool down a hot drink?\nA:", c) for c in (
        " Add a few ice cubes to the drink and stir.", " Add a few ice cubes to the cup and wait.", " Heat it.")]
    args += [(long_ctx + "Question: does water boil?\nAnswer:", c) for c in (" yes", " no", " yes")]
    args += [(long_ctx + "The quick brown fox", c) for c in (" jumps over the lazy dog.", " sleeps.")]
    return [instance("loglikelihood", a) for a in args]


def test_prefix_trees_equal_hf_and_unpacked(hf, decoder):
    reqs = tree_requests(decoder) + mc_requests()[:40]
    packed = decoder.loglikelihood(reqs)
    decoder.prefix_sharing = False
    try:
        plain = decoder.loglikelihood(reqs)
    finally:
        decoder.prefix_sharing = True
    assert_same(packed, hf.loglikelihood(reqs, disable_tqdm=True))
    assert_same(packed, plain)


def test_long_capped_and_split_rows_equal_unpacked(hf, decoder, monkeypatch):
    from harness.lm import decoder as decoder_lm

    # one context with 40 choices: a row far wider than the sliding window
    words = "water plant animal sun light energy heat rock soil cloud rain wind magnet iron seed leaf".split()
    reqs = [instance("loglikelihood", ("Question: Which of these is found in nature?\nAnswer:",
                                       f" the {words[i % 16]} and the {words[(3 * i + 1) % 16]}")) for i in range(40)]
    reqs += tree_requests(decoder)
    theirs = hf.loglikelihood(reqs, disable_tqdm=True)
    runner = decoder.runner
    before = runner.tokens_processed
    long_rows = decoder.loglikelihood(reqs)
    packed_tokens = runner.tokens_processed - before
    assert_same(long_rows, theirs)
    monkeypatch.setattr(decoder_lm, "MAX_TREE_WIDTH", 24)  # capped: the choices spread over many rows
    monkeypatch.setattr(decoder_lm, "FORWARD_TOKENS", {"cpu": 64})  # and a runner batch is split further
    before = runner.tokens_processed
    capped = decoder.loglikelihood(reqs)
    assert runner.tokens_processed - before > packed_tokens
    assert_same(capped, theirs)
    decoder.prefix_sharing = False
    try:
        before = runner.tokens_processed
        plain = decoder.loglikelihood(reqs)
        assert runner.tokens_processed - before > 2 * packed_tokens
    finally:
        decoder.prefix_sharing = True
    assert_same(plain, theirs)


def test_pack_rows_lays_out_prefix_trees_depth_first(decoder):
    from harness.lm.packing import pack_rows, tree_inputs

    seqs = [(1, 2, 3, 4), (1, 2, 5), (1, 2, 3, 6, 7), (1, 2, 3, 4), (9, 8)]
    tree, lone = pack_rows(seqs, max_width=64)
    assert tree.tokens == [1, 2, 3, 4, 6, 7, 5] and tree.positions == [0, 1, 2, 3, 3, 4, 2]
    assert tree.ends == [7, 7, 6, 4, 6, 6, 7]  # node i's subtree is i .. ends[i]-1
    assert tree.members == [0, 3, 2, 1]  # sorted order; the repeated sequence adds no token
    assert tree.paths == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 4, 5], [0, 1, 6]]
    assert (lone.tokens, lone.positions, lone.ends, lone.members) == ([9, 8], [0, 1], [2, 2], [4])
    # the mask: each token sees exactly its ancestors and itself, padding only itself
    inputs = tree_inputs([tree, lone], decoder.tokenizer.pad_token_id, decoder.model.config,
                         decoder.runner.device, decoder.runner.dtype)
    mask = inputs["attention_mask"]["full_attention"][:, 0] == 0
    for b, row in enumerate((tree, lone)):
        for path in row.paths:
            for depth, node in enumerate(path):
                assert mask[b, node].nonzero()[:, 0].tolist() == sorted(path[:depth + 1])
    assert mask[1, 5].nonzero()[:, 0].tolist() == [5]
    # a width cap starts a new row; without sharing only a repeated sequence joins
    assert [r.members for r in pack_rows(seqs, max_width=6)] == [[0, 3, 2], [1], [4]]
    assert [r.members for r in pack_rows(seqs, share=False)] == [[0, 3], [2], [1], [4]]


def test_pack_rows_keeps_unrelated_sequences_apart():
    from harness.lm.packing import pack_rows

    # sharing only a first (BOS) token saves one token but makes every token of the row attend
    # over a row twice as wide: a row of its own is cheaper
    a, b = (1, *range(10, 40)), (1, *range(50, 80))
    assert len(pack_rows([a, b])) == 2
    # sharing most of the input is worth a wider row
    c = (*a[:25], 99, 98)
    assert len(pack_rows([a, c])) == 1


def test_is_argmax_takes_the_first_index_on_a_tie():
    from harness.lm.decoder import is_argmax

    lp = torch.tensor([[0.0, -1.0, 0.0], [-2.0, -1.0, -3.0]])
    rows, targets = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 2, 1, 1, 0])
    assert is_argmax(lp, rows, targets).tolist() == [True, False, False, True, False]
    assert is_argmax(lp, rows, targets).tolist() == (lp[rows].argmax(-1) == targets).tolist()


def test_is_greedy_flags_equal_hf_on_greedy_continuations(hf, decoder):
    # Continuations the model itself prefers (argmax chains), so is_greedy is True for them;
    # each shares its context with a non-greedy sibling, as a multiple-choice task would.
    tok = decoder.tokenizer
    pairs = []
    for text in ["Question: What is the capital of France?\nAnswer:", "The quick brown fox", "A"]:
        ctx = decoder.tok_encode(text)
        greedy = []
        with torch.no_grad():
            for _ in range(4):
                greedy.append(int(decoder.model(torch.tensor([ctx + greedy])).logits[0, -1].argmax()))
        pairs += [(ctx, greedy), (ctx, greedy[:1]), (ctx, tok.encode(" not this one", add_special_tokens=False))]
    requests = [(("c", "x"), c, x) for c, x in pairs]
    ours = decoder._loglikelihood_tokens(requests)
    assert sum(flag for _, flag in ours) >= 6
    assert_same(ours, hf._loglikelihood_tokens(requests, disable_tqdm=True))


def test_left_truncation_equals_hf(tiny_paths, cpu_runner):
    from lm_eval.models.huggingface import HFLM

    from harness.lm.decoder import DecoderLM

    short_hf = HFLM(pretrained=tiny_paths["decoder"], add_bos_token=True, device="cpu", dtype="float32",
                    batch_size=4, max_length=24)
    short = DecoderLM(runner=cpu_runner, spec=spec_of(tiny_paths["decoder"]), max_length=24)
    long_ctx = "Science studies the natural world; water boils at one hundred degrees. " * 3
    reqs = [instance("loglikelihood", (long_ctx, cont)) for cont in (" yes", " no, it does not", " maybe")]
    reqs += task_requests("arc_challenge_local")[:8]
    assert_same(short.loglikelihood(reqs), short_hf.loglikelihood(reqs, disable_tqdm=True))


def test_loglikelihood_rolling_equals_hf(tiny_paths, cpu_runner):
    from lm_eval.models.huggingface import HFLM

    from harness.lm.decoder import DecoderLM

    # a short max_length makes every document span several rolling windows
    hf64 = HFLM(pretrained=tiny_paths["decoder"], add_bos_token=True, device="cpu", dtype="float32",
                batch_size=8, max_length=64)
    ours = DecoderLM(runner=cpu_runner, spec=spec_of(tiny_paths["decoder"]), max_length=64)
    reqs = task_requests("wikitext_local") + [instance("loglikelihood_rolling", ("Short text.",))]
    theirs = hf64.loglikelihood_rolling(reqs, disable_tqdm=True)
    mine = ours.loglikelihood_rolling(reqs)
    assert max(abs(a - b) for a, b in zip(mine, theirs)) <= TOL


def test_generate_until_equals_hf(hf, decoder):
    reqs = [instance("generate_until", (ctx, {"until": [".", "\n"], "max_gen_toks": 12, "do_sample": False}))
            for ctx in ["Question: What is the capital of France?\nAnswer:", "The quick brown", "Water boils at"]]
    reqs.append(instance("generate_until", ("Paris is", {"until": ["zz"], "max_gen_toks": 5})))
    assert decoder.generate_until(reqs) == hf.generate_until(reqs, disable_tqdm=True)


def test_evaluate_task_matches_hf_simple_evaluate(tiny_paths, cpu_runner):
    from lm_eval.evaluator import simple_evaluate

    from harness.lm.evaluate import evaluate_task
    from harness.lm.tasks import build_task

    result = evaluate_task(cpu_runner, spec_of(tiny_paths["decoder"]), "arc_easy_local", log_samples=True)
    manager, task = build_task("arc_easy_local")
    reference = simple_evaluate(model="hf", model_args={"pretrained": tiny_paths["decoder"], "add_bos_token": True,
                                                       "dtype": "float32"}, device="cpu", batch_size=8,
                                tasks=[task], task_manager=manager, log_samples=False)["results"]["arc_easy_local"]
    assert result["metrics"]["acc"] == pytest.approx(reference["acc,none"])
    assert result["metrics"]["acc_norm"] == pytest.approx(reference["acc_norm,none"])
    assert result["n_examples"] == 8 and result["split"] == "test" and result["headline_metric"] == "acc_norm"
    assert result["tokens_processed"] > 0
    samples = result["samples"]
    assert len(samples) == 8 and all(s["acc"] in (0, 1) and "acc_norm" in s for s in samples)
    assert sum(s["acc"] for s in samples) / 8 == pytest.approx(result["metrics"]["acc"])


def test_registered_backend_runs_through_simple_evaluate(tiny_paths):
    from lm_eval.evaluator import simple_evaluate

    from harness.lm import register
    from harness.lm.tasks import task_manager

    register()

    out = simple_evaluate(model="ettin-decoder", model_args=f"pretrained={tiny_paths['decoder']},device=cpu,token_budget=512",
                          tasks=["generative_demo"], task_manager=task_manager(), limit=3, log_samples=False)
    assert 0.0 <= out["results"]["generative_demo"]["acc,none"] <= 1.0
