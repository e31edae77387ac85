"""Bootstrap confidence intervals and the paired encoder-vs-decoder test on planted outputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_report_frame import put

from harness.metrics import matthews_correlation
from harness.report import bootstrap_ci, build_report, paired_bootstrap
from harness.report.significance import Outputs


def classification(correct: list[bool], seed_rows=None) -> Outputs:
    """Outputs of a binary classifier whose prediction is right exactly where ``correct`` says."""
    labels = np.arange(len(correct)) % 2
    preds = np.where(correct, labels, 1 - labels)
    return Outputs("accuracy", [("validation", i) for i in range(len(correct))], preds[None, :], labels)


def rows(correct: list[bool], split: str = "validation") -> list[dict]:
    return [{"split": split, "idx": i, "pred": int(i % 2 if c else 1 - i % 2), "label": i % 2}
            for i, c in enumerate(correct)]


def test_ci_contains_the_point_estimate_and_has_the_binomial_width():
    out = classification([i % 10 < 7 for i in range(400)])  # accuracy exactly 0.70
    point, lo, hi = bootstrap_ci(out, n_boot=2000, seed=1)
    assert point == pytest.approx(0.70)
    assert lo < point < hi
    half = 1.96 * np.sqrt(0.7 * 0.3 / 400)  # normal approximation: 0.0449
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)


def test_other_metrics_are_recomputed_with_harness_metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120)
    preds = np.where(rng.random(120) < 0.8, labels, 1 - labels)
    out = Outputs("matthews_correlation", list(range(120)), preds[None, :], labels)
    point, lo, hi = bootstrap_ci(out, n_boot=200)
    assert point == pytest.approx(matthews_correlation(preds, labels))
    assert lo < point < hi


def test_several_seeds_score_as_their_mean():
    labels = np.zeros(10, dtype=int)
    values = np.array([[0] * 8 + [1] * 2, [0] * 6 + [1] * 4])  # seed accuracies 0.8 and 0.6
    out = Outputs("accuracy", list(range(10)), values, labels)
    assert out.score() == pytest.approx(0.7)


def test_paired_test_finds_a_planted_difference():
    enc = classification([i % 10 < 9 for i in range(300)])  # 0.90
    dec = classification([i % 10 < 6 for i in range(300)])  # 0.60, wrong wherever the encoder is wrong
    test = paired_bootstrap(enc, dec, n_boot=1000)
    assert test["diff"] == pytest.approx(0.30)
    assert test["significant"] and test["p_value"] < 0.01
    assert test["lo"] < 0.30 < test["hi"] and test["lo"] > 0


def test_paired_test_does_not_flag_a_planted_tie():
    # both 0.50 accurate, right on different examples: the gap is exactly zero
    enc = classification([i % 2 == 0 for i in range(300)])
    dec = classification([i % 2 == 1 for i in range(300)])
    test = paired_bootstrap(enc, dec, n_boot=1000)
    assert test["diff"] == 0.0
    assert not test["significant"] and test["p_value"] > 0.5
    assert test["lo"] < 0 < test["hi"]


def test_pairing_uses_example_identity_not_position():
    enc = Outputs("acc", [("doc", i) for i in range(50)], np.ones((1, 50)))
    # the decoder's rows come in reverse order and miss doc 0; it is wrong on docs 1..10 only
    ids = [("doc", i) for i in range(49, 0, -1)]
    dec = Outputs("acc", ids, np.array([[0.0 if i <= 10 else 1.0 for _, i in ids]]))
    test = paired_bootstrap(enc, dec, n_boot=200)
    assert test["n"] == 49
    assert test["diff"] == pytest.approx(10 / 49)


def test_significance_table_from_the_store_pairs_classification_and_generative_rows(tmp_path):
    sst2_enc = rows([i % 10 < 9 for i in range(200)])
    sst2_dec = rows([i % 10 < 5 for i in range(200)])
    # MNLI keeps both dev splits in one file: only the record's split (matched) counts
    mnli_enc = rows([i % 2 == 0 for i in range(100)], "validation_matched") + rows([False] * 100, "validation_mm")
    mnli_dec = rows([i % 2 == 1 for i in range(100)], "validation_matched") + rows([True] * 100, "validation_mm")
    put(tmp_path, "encoder", "17m", "sst2", 0.9, samples=sst2_enc)
    put(tmp_path, "decoder", "17m", "sst2", 0.5, samples=sst2_dec)
    put(tmp_path, "encoder", "17m", "mnli", 0.5, samples=mnli_enc, split="validation_matched")
    put(tmp_path, "decoder", "17m", "mnli", 0.5, samples=mnli_dec, split="validation_matched")
    gen = [{"doc_id": i, "acc_norm": float(i % 4 == 0), "acc": 1.0} for i in range(80)]  # acc_norm (headline) 0.25
    put(tmp_path, "decoder", "17m", "piqa", 0.25, samples=gen)
    put(tmp_path, "encoder", "17m", "winogrande", 0.6)  # no per-example outputs: left out
    report = build_report([tmp_path], n_boot=300)
    sig = report.significance.set_index("task")
    assert sorted(sig.index) == ["mnli", "piqa", "sst2"]
    assert sig.at["sst2", "gap"] == pytest.approx(40.0) and sig.at["sst2", "significant"]
    assert sig.at["mnli", "gap"] == pytest.approx(0.0) and not sig.at["mnli", "significant"]
    assert sig.at["mnli", "n_examples"] == 100
    assert sig.at["piqa", "decoder"] == pytest.approx(25.0)
    assert sig.at["piqa", "decoder_lo"] < 25.0 < sig.at["piqa", "decoder_hi"]
    assert np.isnan(sig.at["piqa", "p_value"])  # one architecture only: no test
    text = report.text()
    assert "0.0†" in text and "40.0†" not in text and "40.0" in text
