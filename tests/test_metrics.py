import math

import numpy as np
import pytest

from harness import metrics
from harness.suite import suite


def test_accuracy_and_f1_textbook():
    preds = [1, 1, 0, 1, 0, 0, 1, 0]
    refs = [1, 0, 0, 1, 1, 0, 1, 0]
    # tp=3 (idx 0,3,6), fp=1 (idx 1), fn=1 (idx 4), tn=3
    assert metrics.accuracy(preds, refs) == pytest.approx(6 / 8)
    precision, recall = 3 / 4, 3 / 4
    assert metrics.f1(preds, refs) == pytest.approx(2 * precision * recall / (precision + recall))


def test_matthews_textbook():
    preds = [1, 1, 1, 0, 0, 1, 0, 0, 0, 1]
    refs = [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]
    tp = sum(p == 1 and r == 1 for p, r in zip(preds, refs))
    tn = sum(p == 0 and r == 0 for p, r in zip(preds, refs))
    fp = sum(p == 1 and r == 0 for p, r in zip(preds, refs))
    fn = sum(p == 0 and r == 1 for p, r in zip(preds, refs))
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert (tp, tn, fp, fn) == (3, 4, 2, 1)
    assert metrics.matthews_correlation(preds, refs) == pytest.approx(expected)


def test_pearson_and_spearman_textbook():
    x = [0.5, 2.0, 1.0, 4.0, 3.5]
    y = [1.0, 2.5, 0.5, 5.0, 3.0]
    xm, ym = np.mean(x), np.mean(y)
    r = sum((a - xm) * (b - ym) for a, b in zip(x, y)) / math.sqrt(
        sum((a - xm) ** 2 for a in x) * sum((b - ym) ** 2 for b in y))
    assert metrics.pearson(x, y) == pytest.approx(r)
    # ranks of x: 1,3,2,5,4 ; ranks of y: 2,3,1,5,4 -> d^2 = 1+0+1+0+0
    assert metrics.spearman(x, y) == pytest.approx(1 - 6 * 2 / (5 * (25 - 1)))


def test_compute_uses_evaluate_names_and_rejects_unknown():
    out = metrics.compute(["accuracy", "f1"], [1, 0], [1, 1])
    assert set(out) == {"accuracy", "f1"}
    with pytest.raises(ValueError):
        metrics.compute(["bleu"], [1], [1])


def test_glue_average_needs_all_eight_tasks():
    s = suite()
    assert s.averaged("glue") == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
    scores = {t: 0.5 for t in s.averaged("glue")}
    assert s.average("glue", scores) == pytest.approx(0.5)
    scores["cola"] = 0.1
    assert s.average("glue", scores) == pytest.approx((0.5 * 7 + 0.1) / 8)
    assert s.average("glue", {**scores, "wnli": 0.0}) == pytest.approx((0.5 * 7 + 0.1) / 8)
    del scores["rte"]
    assert s.average("glue", scores) is None


def test_generative_average_needs_all_ten_tasks():
    s = suite()
    scores = {t: 0.4 for t in s.averaged("generative")}
    assert len(scores) == 10 and "arc_easy" not in scores
    scores["piqa"] = 0.9
    assert s.average("generative", {**scores, "arc_easy": 0.0}) == pytest.approx((0.4 * 9 + 0.9) / 10)
    del scores["wsc273"]
    assert s.average("generative", scores) is None


def test_the_suite_is_the_one_list_of_tasks():
    s = suite()
    assert s.expand("glue") == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    assert s.expand("generative") == ("arc_challenge", "hellaswag", "lambada_openai", "openbookqa", "piqa", "sciq",
                                      "social_iqa", "triviaqa", "winogrande", "wsc273")
    assert s.headline("stsb") == "spearmanr" and s.headline("arc_easy_local") == "acc_norm"
    assert s.display("mnli") == "MNLI" and s.display("glue_avg") == "GLUE avg"
