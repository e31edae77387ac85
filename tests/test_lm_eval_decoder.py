"""DecoderLM against lm-eval's own ``hf`` model on the same tiny decoder: the same log-likelihood
per request (|delta| <= 1e-4 in fp32), the same is_greedy flags, rolling log-likelihoods and
greedy generations, with and without prefix sharing and left truncation."""

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
    from harness.adapters.decoder_lm import DecoderLM

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

    from harness.adapters.decoder_lm import DecoderLM

    short_hf = HFLM(pretrained=tiny_paths["decoder"], add_bos_token=True, device="cpu", dtype="float32",
                    batch_size=4, max_length=24)
    short = DecoderLM(runner=cpu_runner, spec=spec_of(tiny_paths["decoder"]), max_length=24)
    long_ctx = "Science studies the natural world; water boils at one hundred degrees. " * 3
    reqs = [instance("loglikelihood", (long_ctx, cont)) for cont in (" yes", " no, it does not", " maybe")]
    reqs += task_requests("arc_challenge_local")[:8]
    assert_same(short.loglikelihood(reqs), short_hf.loglikelihood(reqs, disable_tqdm=True))


def test_loglikelihood_rolling_equals_hf(tiny_paths, cpu_runner):
    from lm_eval.models.huggingface import HFLM

    from harness.adapters.decoder_lm import DecoderLM

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

    from harness.adapters.lm_eval_bridge import build_task, evaluate_task

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
    import harness.adapters.lm_eval_bridge  # noqa: F401  (registers the backends)
    from lm_eval.evaluator import simple_evaluate

    from harness.adapters.lm_eval_bridge import task_manager

    out = simple_evaluate(model="ettin-decoder", model_args=f"pretrained={tiny_paths['decoder']},device=cpu,token_budget=512",
                          tasks=["generative_demo"], task_manager=task_manager(), limit=3, log_samples=False)
    assert 0.0 <= out["results"]["generative_demo"]["acc,none"] <= 1.0
