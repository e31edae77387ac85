import json

import pytest
from sklearn.metrics import accuracy_score

from conftest import run_cli
from harness.results import ResultStore


def records(path):
    return {(r["model_name"], r["task"]): r for r in ResultStore(path).records()}


@pytest.fixture(scope="module")
def sst2_run(tiny_pair, demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sst2")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--tasks", "sst2",
                   "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "3", "--batch-size", "32",
                   "--output-path", out, "--quiet", "--device", "cpu")
    assert code == 0
    return out


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_both_architectures_learn_a_separable_task(sst2_run, arch):
    rec = records(sst2_run)[(arch, "sst2")]
    assert rec["architecture"] == arch
    assert rec["status"] == "ok" and rec["split"] == "validation"
    assert rec["metrics"]["accuracy"] >= 0.9
    assert rec["n_examples"] == 200 and rec["tokens_processed"] > 0 and rec["wall_time_s"] > 0
    assert rec["hyperparameters"]["lr"] == 1e-3 and rec["hyperparameters"]["epochs"] == 3
    assert {"harness", "transformers", "torch"} <= set(rec["versions"])


def test_stored_predictions_reproduce_the_metric(sst2_run):
    store = ResultStore(sst2_run)
    for rec in store.records():
        rows = store.read_samples(rec)
        assert len(rows) == rec["n_examples"]
        acc = accuracy_score([r["label"] for r in rows], [r["pred"] for r in rows])
        assert acc == pytest.approx(rec["metrics"]["accuracy"])


@pytest.fixture(scope="module")
def nli_run(tiny_pair, demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("nli")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "mnli,rte,stsb", "--data-dir", demo_data,
                   "--lr", "1e-3,3e-3", "--epochs", "1", "--limit", "120", "--output-path", out, "--quiet")
    assert code == 0
    return out


def test_mnli_scores_matched_and_mismatched(nli_run):
    store = ResultStore(nli_run)
    for rec in store.records():
        if rec["task"] != "mnli":
            continue
        assert rec["split"] == "validation_matched"
        rows = store.read_samples(rec)
        for split, name in (("validation_matched", "accuracy"), ("validation_mismatched", "accuracy_mismatched")):
            part = [r for r in rows if r["split"] == split]
            assert len(part) == 120
            expected = accuracy_score([r["label"] for r in part], [r["pred"] for r in part])
            assert rec["metrics"][name] == pytest.approx(expected)


def test_rte_and_stsb_start_from_the_best_mnli_checkpoint(nli_run):
    store = ResultStore(nli_run)
    recs = store.records()
    mnli = [r for r in recs if r["task"] == "mnli"]
    assert len(mnli) == 2
    top = max(r["metrics"]["accuracy"] for r in mnli)
    best_keys = {r["cell_key"] for r in mnli if r["metrics"]["accuracy"] == top}  # a tie is possible
    sources = set()
    for task in ("rte", "stsb"):
        dependants = [r for r in recs if r["task"] == task]
        assert len(dependants) == 2
        for r in dependants:
            sources.add(r["hyperparameters"]["init_from"])
            assert r["hyperparameters"]["warm_start_from"] == "mnli"
    assert len(sources) == 1 and sources <= best_keys
    # one checkpoint kept per (model, task): the best one, which the dependants started from
    kept = sorted(p.name for p in store.checkpoints_dir.iterdir())
    assert kept == [sources.pop() + ".safetensors"]
    stsb = next(r for r in recs if r["task"] == "stsb")
    assert set(stsb["metrics"]) == {"pearson", "spearmanr"} and stsb["headline_metric"] == "spearmanr"


def test_no_warm_start_flag(tiny_pair, demo_data, tmp_path):
    code = run_cli("run", "--model", tiny_pair["decoder"], "--tasks", "mnli,rte", "--data-dir", demo_data,
                   "--lr", "1e-3", "--epochs", "1", "--limit", "40", "--output-path", tmp_path, "--quiet",
                   "--no-mnli-warm-start")
    assert code == 0
    rte = [r for r in ResultStore(tmp_path).records() if r["task"] == "rte"]
    assert rte and rte[0]["hyperparameters"]["init_from"] is None
    assert not (tmp_path / "checkpoints").exists()


def test_tidy_export_has_one_row_per_record_and_metric(nli_run, tmp_path):
    out = tmp_path / "tidy.csv"
    assert run_cli("export", nli_run, "--tidy", out) == 0
    import pandas as pd

    tidy = pd.read_csv(out)
    recs = ResultStore(nli_run).records()
    assert len(tidy) == sum(len(r["metrics"]) for r in recs)
    row = tidy[(tidy.task == "mnli") & (tidy.metric == "accuracy_mismatched")].iloc[0]
    rec = next(r for r in recs if r["cell_key"] == row["cell_key"])
    assert row["value"] == pytest.approx(rec["metrics"]["accuracy_mismatched"])
    assert json.loads(row["hyperparameters"])["lr"] == rec["hyperparameters"]["lr"]
