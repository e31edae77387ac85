"""MTEB result folders: the harness's retrieval records exported and read back by MTEB's own reader
(ResultCache, TaskResult, ModelMeta), folders MTEB wrote itself imported as records, the round trip,
and bad input as one line."""

import json
import math
from pathlib import Path

import pytest

from conftest import run_cli
from harness.demo_data import write_retrieval
from harness.errors import UserError
from harness.exchange import mteb as exchange
from harness.results import ResultStore


@pytest.fixture(scope="module")
def runs(tiny_pair, tmp_path_factory):
    """The tiny encoder on the synthetic retrieval set: zero-shot, and fine-tuned (two seeds)."""
    root = tmp_path_factory.mktemp("mteb-exchange")
    data = write_retrieval(root / "data")
    base = ["--model", tiny_pair["encoder"], "--tasks", "retrieval_demo", "--data-dir", data, "--quiet",
            "--output-path", root / "out"]
    assert run_cli("run", *base, "--zero-shot") == 0
    assert run_cli("run", *base, "--lr", "3e-3", "--epochs", "1", "--batch-size", "16", "--seeds", "2") == 0
    return {"store": ResultStore(root / "out"), "data": data / "retrieval_demo", "root": root}


def by_protocol(store):
    out = {}
    for r in store.records():
        out.setdefault(r["retrieval"]["protocol"], []).append(r)
    return out


def test_export_is_read_by_mtebs_own_reader_with_the_records_scores(runs, tmp_path):
    import mteb
    from mteb.models.model_meta import ModelMeta

    store = runs["store"]
    records = store.records()
    assert len(records) == 3
    paths = exchange.export(records, store, tmp_path / "mteb")
    loaded = mteb.ResultCache(tmp_path / "mteb").load_results(include_remote=False, load_experiments="match_name")
    found = {}
    for model in loaded.model_results:
        assert model.model_name == "local/encoder"
        for result in model.task_results:
            assert result.task_name == "harness-retrieval_demo"
            found[model.experiment_name] = (model, result)
    assert len(found) == 3  # zero-shot in the revision folder, each fine-tuned seed an experiment
    zero, tuned = by_protocol(store)["zero-shot"][0], by_protocol(store)["fine-tuned"]
    matched = [(zero, found[None])] + [(r, next(v for k, v in found.items() if k and f"seed_{r['seed']}" in k))
                                       for r in tuned]
    for record, (model, result) in matched:
        scores = result.scores["test"][0]
        assert result.get_score() == record["metrics"]["ndcg_at_10"]  # MTEB's main score, exactly
        for name, value in record["metrics"].items():
            assert scores[name] == value, name
        assert result.mteb_version == record["versions"]["mteb"]
        assert result.dataset_revision == f"local-{record['protocol']['data_fingerprint']}"
        assert model.model_revision == exchange.NO_REVISION  # a local folder has no commit
    # the training data is declared where MTEB asks for it: ModelMeta.training_datasets
    metas = sorted(p for p in paths if p.name == "model_meta.json")
    assert len(metas) == 3
    declared = {}
    for path in metas:
        meta = ModelMeta.model_validate_json_resolved(path.read_text())
        declared[(meta.experiment_kwargs or {}).get("seed")] = meta
    assert declared[None].training_datasets is None  # zero-shot: nothing declared
    for record in tuned:
        meta = declared[record["seed"]]
        assert meta.training_datasets == {"harness-retrieval_demo"}
        assert meta.is_zero_shot_on(["harness-retrieval_demo"]) is False
        assert meta.experiment_kwargs == {"protocol": "fine-tuned", "seed": record["seed"],
                                          "config": record["config_key"]}
        assert meta.public_training_data == "retrieval_demo train judgements"


def test_round_trip_keeps_scores_samples_and_provenance_in_the_report(runs, tmp_path):
    from harness.report import build_report
    from harness.report.frame import headline_frame

    store = runs["store"]
    exchange.export(store.records(), store, tmp_path / "mteb")
    assert exchange.is_mteb_folder(tmp_path / "mteb") and exchange.is_mteb_folder(tmp_path / "mteb" / "results")
    imported = ResultStore(tmp_path / "imported")
    pairs = exchange.read_folder(tmp_path / "mteb")
    assert len(pairs) == 3
    for record, rows in pairs:
        assert rows, record["cell_key"]  # a harness folder keeps the per-query scores
        imported.write({**record, "samples": imported.write_samples(record["cell_key"], rows)})
    originals = {r["cell_key"]: r for r in store.records()}
    for record in imported.records():
        origin = originals[record["imported"]["origin_cell_key"]]
        assert record["protocol"]["label"] == "imported"
        assert record["protocol"]["origin_label"] == origin["protocol"]["label"]
        assert record["metrics"] == {k: v for k, v in origin["metrics"].items()}
        for field in ("seed", "architecture", "task", "split", "n_examples", "config_key"):
            assert record[field] == origin[field], field
        assert record["versions"]["harness"] == origin["versions"]["harness"]
        assert record["versions"]["mteb"] == origin["versions"]["mteb"]
        assert record["dataset"]["revision"] == f"local-{origin['protocol']['data_fingerprint']}"
        assert imported.read_samples(record) == store.read_samples(origin)
    before = headline_frame(store.root).sort_values("cell_key")
    after = headline_frame(imported.root)
    after = after.set_index(after["imported"].map(lambda i: i["origin_cell_key"])).loc[before["cell_key"]]
    assert list(after["score"]) == list(before["score"])
    report = build_report([store.root, imported.root], n_boot=0)
    labels = set(report.best["protocol"])
    assert {"imported", "zero-shot, local data"} <= labels
    # the imported copies score as their origins: the zero-shot cell, and the fine-tuned one's two seeds
    imported_best = report.best[report.best["protocol"] == "imported"].set_index("n_seeds")["score"]
    origin_best = report.best[report.best["protocol"] != "imported"].set_index("n_seeds")["score"]
    assert sorted(imported_best.index) == [1, 2]
    assert imported_best.sort_index().tolist() == origin_best.sort_index().tolist()


def tiny_sentence_transformer(encoder: str, name: str):
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(encoder)
    model = SentenceTransformer(modules=[transformer, models.Pooling(64, "mean")], device="cpu")
    model.model_card_data.model_name = name
    return model


def test_a_folder_mteb_wrote_imports_with_mtebs_scores_beside_the_harness_cells(runs, tiny_pair, tmp_path):
    import mteb

    from harness.report import build_report
    from harness.retrieval.beir import read_split
    from harness.retrieval.mteb_bridge import local_task

    model = tiny_sentence_transformer(tiny_pair["encoder"], "someone/tiny-st")
    task = local_task("retrieval_demo", "test", read_split(runs["data"], "test"))
    direct = mteb.evaluate(model, task, cache=mteb.ResultCache(tmp_path / "cache"), co2_tracker=False)
    expected = direct.task_results[0].scores["test"][0]
    [(record, rows)] = exchange.read_folder(tmp_path / "cache")
    assert rows is None  # MTEB's files hold no per-query scores: no paired tests for this record
    assert record["model"] == "someone/tiny-st" and record["revision"] == exchange.NO_REVISION
    assert record["task"] == "retrieval_demo" and record["split"] == "test"
    assert record["protocol"]["label"] == "imported" and record["protocol"]["mteb_version"] == mteb.__version__
    assert record["versions"]["mteb"] == mteb.__version__
    assert record["versions"]["sentence_transformers"] and record["versions"]["transformers"]
    assert record["dataset"] == {"id": None, "mteb_task": "harness-retrieval_demo", "revision": "local"}
    [on_disk] = mteb.ResultCache(tmp_path / "cache").load_results(include_remote=False).model_results
    written = on_disk.task_results[0].scores["test"][0]  # MTEB rounds to 6 decimals when it writes
    for name in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr_at_10", "main_score"):
        assert record["metrics"][name] == written[name], name
        assert record["metrics"][name] == pytest.approx(expected[name], abs=1e-6), name
    numbers = {k for k, v in written.items() if isinstance(v, float)}
    undefined = sorted(k for k in numbers if math.isnan(written[k]))  # MTEB writes NaN; a record names it
    assert undefined and record["retrieval"]["undefined_scores"] == undefined
    assert set(record["metrics"]) == numbers - set(undefined)
    assert record["headline_metric"] == "ndcg_at_10"
    # into a store beside the harness's own cells: the report shows both, the same model scoring the same
    store = ResultStore(tmp_path / "imported")
    store.write(record)
    report = build_report([runs["store"].root, store.root], n_boot=200)
    best = report.best.set_index("protocol")
    assert best.loc["imported", "score"] == pytest.approx(best.loc["zero-shot, local data", "score"], abs=1e-5)
    assert "someone/tiny-st" in set(report.best["model_name"])


def test_nothing_to_export_or_import_is_one_line(runs, tmp_path):
    glue_like = {**runs["store"].records()[0], "adapter": "classification"}
    with pytest.raises(UserError, match="no retrieval records to export"):
        exchange.export([glue_like], runs["store"], tmp_path / "out")
    assert not exchange.is_mteb_folder(tmp_path)
    assert not exchange.is_mteb_folder(runs["store"].root)  # a harness results folder is not one
    with pytest.raises(UserError, match="is not an MTEB results folder"):
        exchange.read_folder(runs["store"].root)


def test_a_damaged_result_file_is_named_in_one_line(runs, tmp_path):
    exchange.export(runs["store"].records(), runs["store"], tmp_path / "mteb")
    [task_file] = (tmp_path / "mteb" / "results").glob("*/*/harness-retrieval_demo.json")
    body = json.loads(task_file.read_text())
    del body["scores"]["test"][0]["main_score"]
    task_file.write_text(json.dumps(body))
    with pytest.raises(UserError) as caught:
        exchange.read_folder(tmp_path / "mteb")
    message = str(caught.value)
    assert str(task_file) in message and "not an MTEB task result" in message and "\n" not in message
