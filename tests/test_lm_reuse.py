"""Scoring many checkpoints of one model: the lm-eval task, its requests and their token ids are
built once and reused by the next checkpoint, and the second checkpoint's numbers equal those of
a cold start (nothing of the first model's responses leaks into the second's)."""

from __future__ import annotations

import shutil

import pytest
import torch

from generative_fixtures import cpu_runner, spec_of, tiny_paths  # noqa: F401
from harness.lm import reuse
from harness.lm.evaluate import evaluate_task


def perturbed(source: str, out: str, cls, seed: int) -> str:
    """A copy of ``source`` with its weights perturbed: another checkpoint of the same run (same tokenizer)."""
    shutil.copytree(source, out)
    model = cls.from_pretrained(out)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    return out


def scores(result) -> list:
    return [(s["doc_id"], [r[0] for r in s["filtered_resps"]]) for s in result["samples"]]


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_second_checkpoint_reuses_requests_and_tokens_and_scores_as_a_cold_start(tiny_paths, cpu_runner, arch,
                                                                               tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    first = tiny_paths[arch]
    cls = AutoModelForMaskedLM if arch == "encoder" else AutoModelForCausalLM
    second = perturbed(first, str(tmp_path / "step2"), cls, seed=1)
    reuse.clear()
    cold = evaluate_task(cpu_runner, spec_of(second), "arc_easy_local", log_samples=True)
    reuse.clear()
    evaluate_task(cpu_runner, spec_of(first), "arc_easy_local", log_samples=True)
    built, encoded = reuse.STATS["requests_built"], reuse.STATS["encoded"]
    assert built == 1 and encoded > 0
    warm = evaluate_task(cpu_runner, spec_of(second), "arc_easy_local", log_samples=True)
    # nothing rebuilt or re-tokenised for the second checkpoint: every string came from the cache
    assert reuse.STATS["requests_built"] == 1 and reuse.STATS["requests_reused"] == 1
    assert reuse.STATS["encoded"] == encoded and reuse.STATS["encode_reused"] >= encoded
    assert scores(warm) == scores(cold) and warm["metrics"] == cold["metrics"]
    assert scores(warm) != scores(evaluate_task(cpu_runner, spec_of(first), "arc_easy_local", log_samples=True))


def test_a_new_limit_or_fewshot_builds_new_requests(tiny_paths, cpu_runner):
    reuse.clear()
    spec = spec_of(tiny_paths["decoder"])
    a = evaluate_task(cpu_runner, spec, "arc_easy_local", limit=4)
    b = evaluate_task(cpu_runner, spec, "arc_easy_local", limit=6)
    c = evaluate_task(cpu_runner, spec, "arc_easy_local", limit=4, num_fewshot=1)
    assert (a["n_examples"], b["n_examples"], c["n_examples"]) == (4, 6, 4)
    assert reuse.STATS["requests_built"] == 3 and reuse.STATS["requests_reused"] == 0
    assert c["num_fewshot"] == 1 and a["num_fewshot"] == 0
