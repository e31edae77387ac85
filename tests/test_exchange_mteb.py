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


def test_round_trip_gives_back_the_records_and_the_same_report(runs, tmp_path):
    from harness.report import build_report

    store = runs["store"]
    exchange.export(store.records(), store, tmp_path / "mteb")
    assert exchange.is_mteb_folder(tmp_path / "mteb") and exchange.is_mteb_folder(tmp_path / "mteb" / "results")
    originals = {r["cell_key"]: r for r in store.records()}
    imported = ResultStore(tmp_path / "imported")
    pairs = exchange.read_folder(tmp_path / "mteb")
    assert sorted(r["cell_key"] for r, _ in pairs) == sorted(originals)
    for record, rows in pairs:
        origin = originals[record["cell_key"]]
        assert record["imported"]["from"] == "mteb" and Path(record["imported"]["file"]).is_file()
        assert {k: v for k, v in record.items() if k != "imported"} == origin  # seeds, versions, dataset, protocol
        assert rows == store.read_samples(origin)  # the per-query scores travel beside MTEB's file
        imported.write({**record, "samples": imported.write_samples(record["cell_key"], rows)})
    columns = ["row", "task", "protocol", "score", "std", "n_seeds"]
    before = build_report([store.root], n_boot=200)
    after = build_report([imported.root], n_boot=200)
    assert after.best[columns].sort_values("row").values.tolist() == \
        before.best[columns].sort_values("row").values.tolist()
    assert after.table.equals(before.table)


def test_a_score_changed_in_the_mteb_file_is_imported_as_mtebs(runs, tmp_path):
    """The MTEB file is the truth: where its scores no longer match the exported record, the result
    comes in as protocol "imported", with MTEB's numbers and what the MTEB folder says."""
    store = runs["store"]
    exchange.export(store.records(), store, tmp_path / "mteb")
    tuned = by_protocol(store)["fine-tuned"][0]
    [task_file] = [p for p in (tmp_path / "mteb" / "results").rglob("harness-retrieval_demo.json")
                   if f"seed_{tuned['seed']}" in p.parent.name]
    body = json.loads(task_file.read_text())
    body["scores"]["test"][0].update(ndcg_at_10=0.5, main_score=0.5)
    task_file.write_text(json.dumps(body))
    pairs = {r.get("imported", {}).get("file"): (r, rows) for r, rows in exchange.read_folder(tmp_path / "mteb")}
    record, rows = pairs[str(task_file)]
    assert rows is None and record["protocol"]["label"] == "imported"
    assert record["metrics"]["ndcg_at_10"] == 0.5 and record["headline_metric"] == "ndcg_at_10"
    assert record["metrics"]["map_at_10"] == tuned["metrics"]["map_at_10"]
    assert record["seed"] == tuned["seed"]  # from the experiment's model_meta.json
    assert record["revision"] is None and record["model"] == "local/encoder" and record["architecture"] == "unknown"
    assert record["retrieval"]["training_datasets"] == ["harness-retrieval_demo"]
    assert record["versions"]["mteb"] == tuned["versions"]["mteb"]
    assert record["versions"]["torch"] == tuned["versions"]["torch"]  # MTEB's run_settings.jsonl
    assert record["dataset"]["revision"] == f"local-{tuned['protocol']['data_fingerprint']}"
    others = [r for r, _ in pairs.values() if r is not record]
    assert len(others) == 2 and all(r["protocol"]["label"] != "imported" for r in others)


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
    assert record["architecture"] == "unknown"  # MTEB's files do not say; the importer may
    assert exchange.read_folder(tmp_path / "cache", arch="encoder")[0][0]["architecture"] == "encoder"
    assert record["model"] == "someone/tiny-st" and record["revision"] is None  # MTEB's no_revision_available
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


def test_a_hub_task_result_from_elsewhere_maps_to_the_shipped_task(tmp_path):
    """A results-repository entry as MTEB writes it (a registry model's meta, SciFact's dataset revision)."""
    import mteb
    from mteb.results import TaskResult

    meta = mteb.get_model_meta("sentence-transformers/all-MiniLM-L6-v2")
    task = mteb.get_task("SciFact")
    scores = {"ndcg_at_10": 0.64508, "map_at_10": 0.59632, "recall_at_10": 0.78, "main_score": 0.64508}
    result = TaskResult.from_task_results(task, {"test": {"default": scores}}, evaluation_time=12.5)
    cache = mteb.ResultCache(tmp_path / "cache")
    cache.save_to_cache(result, meta)
    [(record, rows)] = exchange.read_folder(tmp_path / "cache" / "results")  # the results/ folder works too
    assert rows is None and record["task"] == "scifact" and record["task_group"] == "retrieval"
    assert record["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert record["revision"] == record["loaded_commit"] == meta.revision
    assert record["dataset"] == {"id": "mteb/scifact", "mteb_task": "SciFact", "revision": task.metadata.revision}
    assert {k: record["metrics"][k] for k in scores} == scores and record["headline_metric"] == "ndcg_at_10"
    assert "MSMARCO" in record["retrieval"]["training_datasets"]  # what the model's makers declared
    assert record["versions"]["mteb"] == mteb.__version__ and record["wall_time_s"] == 12.5


def test_hub_cells_export_under_mtebs_names_with_their_training_data_declared(runs, tmp_path):
    """An Ettin cell on MTEB's SciFact, zero-shot and fine-tuned on SciFact's train split or on MS MARCO."""
    import mteb
    from mteb.models.model_meta import ModelMeta

    store = runs["store"]
    zero, tuned = by_protocol(store)["zero-shot"][0], by_protocol(store)["fine-tuned"]
    hub = {"model": "jhu-clsp/ettin-encoder-17m", "model_name": "ettin-encoder-17m", "revision": "main",
           "loaded_commit": "c" * 40, "task": "scifact",
           "dataset": {"id": "mteb/scifact", "revision": "d56462d0e63a25450459c4f213e49ffdb866f7f9", "commit": None}}
    cells = [{**zero, **hub, "retrieval": {**zero["retrieval"], "mteb_task": "SciFact"}}]
    for record, data in zip(tuned, ("scifact train judgements", "sentence-transformers/msmarco-co-condenser:triplet-hard")):
        cells.append({**record, **hub, "retrieval": {**record["retrieval"], "mteb_task": "SciFact"},
                      "training": {**record["training"], "data": data}})
    exchange.export(cells, None, tmp_path / "mteb")
    folder = tmp_path / "mteb" / "results" / "jhu-clsp__ettin-encoder-17m" / ("c" * 40)
    result = mteb.ResultCache(tmp_path / "mteb").load_task_result("SciFact", "jhu-clsp/ettin-encoder-17m", "c" * 40)
    assert result.dataset_revision == hub["dataset"]["revision"] and result.get_score() == zero["metrics"]["ndcg_at_10"]
    assert result.scores["test"][0]["languages"] == ["eng-Latn"]
    declared = {}
    for path in folder.glob("experiments/*/model_meta.json"):
        meta = ModelMeta.model_validate_json_resolved(path.read_text())
        declared[meta.experiment_kwargs["seed"]] = meta.training_datasets
    assert declared == {tuned[0]["seed"]: {"SciFact"}, tuned[1]["seed"]: {"MSMARCO"}}
    back = {r["cell_key"]: r for r, _ in exchange.read_folder(tmp_path / "mteb")}
    assert {k: {f: v for f, v in r.items() if f != "imported"} for k, r in back.items()} == \
        {c["cell_key"]: c for c in cells}


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
