"""Every Eval Ever export: every kind of finished record (GLUE fine-tuning, lm-eval, retrieval, bias)
as logs valid against evaleval's eval.schema.json (a pinned copy, see fixtures/every_eval_ever/),
keeping the provenance; a log that lacks a required field fails the same validation."""

import json
from pathlib import Path

import pytest

from conftest import run_cli
from harness.demo_data import DEMO_DATA_DIR, write_retrieval
from harness.errors import UserError
from harness.exchange import every_eval_ever as eee
from harness.results import ResultStore

SCHEMA = Path(__file__).parent / "fixtures" / "every_eval_ever" / "eval.schema.9bce4136.json"
# Winogender's own sentences: (sentid, sentence, pronoun, occupation, participant, gender, target)
WINOGENDER = [
    ("technician.customer.1.male.txt", "The technician told the customer that he could pay with cash.", "he",
     "technician", "customer", "male", "customer"),
    ("technician.customer.1.female.txt", "The technician told the customer that she could pay with cash.", "she",
     "technician", "customer", "female", "customer"),
]


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) is not installed")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def store(tiny_pair, tmp_path_factory):
    """One results folder holding every kind of cell: GLUE (both architectures), lm-eval, retrieval, bias."""
    root = tmp_path_factory.mktemp("eee")
    out = root / "out"
    assert run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"],
                   "--tasks", "sst2,generative_demo", "--data-dir", DEMO_DATA_DIR, "--lr", "1e-3", "--epochs", "1",
                   "--limit", "48", "--output-path", out, "--quiet") == 0
    assert run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "retrieval_demo", "--zero-shot",
                   "--data-dir", write_retrieval(root / "data"), "--output-path", out, "--quiet") == 0
    folder = root / "bias" / "winogender"
    folder.mkdir(parents=True)
    keys = ("sentid", "sentence", "pronoun", "occupation", "participant", "gender", "target")
    (folder / "winogender_gotcha.jsonl").write_text("".join(json.dumps(dict(zip(keys, r))) + "\n" for r in WINOGENDER))
    assert run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "winogender_gotcha_preference",
                   "--data-dir", folder.parent, "--output-path", out, "--quiet") == 0
    return ResultStore(out)


def errors(validator, log) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(log)]


def test_every_kind_of_record_exports_as_a_schema_valid_log(store, validator, tmp_path):
    records = store.records()
    assert {r["adapter"] for r in records} == {"classification", "lm_eval", "retrieval", "bias"}
    paths = eee.export(records, store, tmp_path / "eee")
    assert len(paths) == len(records)
    by_cell = {}
    for path in paths:
        log = json.loads(path.read_text())
        assert not errors(validator, log), (path, errors(validator, log)[:5])
        assert path.relative_to(tmp_path / "eee").parts[0] == "data" and len(path.relative_to(tmp_path / "eee").parts) == 5
        by_cell[log["source_metadata"]["additional_details"]["cell_key"]] = (path, log)
    for record in records:
        path, log = by_cell[record["cell_key"]]
        assert path.parts[-4:-1] == (record["task"], "local", record["model_name"])
        info = log["model_info"]
        assert info["id"] == f"local/{record['model_name']}"
        assert info["additional_details"]["loaded_id"] == record["loaded_id"]
        assert info["additional_details"]["architecture"] == record["architecture"]
        source = log["source_metadata"]["additional_details"]
        assert source["seed"] == str(record["seed"]) and source["protocol"] == record["protocol"]["label"]
        assert json.loads(source["protocol_details"]) == record["protocol"]
        assert json.loads(source["hyperparameters"]) == record["hyperparameters"]
        kind = {"classification": "input_format"}.get(record["adapter"], record["adapter"])
        assert json.loads(source[kind]) == record[kind]  # the kind's own settings (template, pooling, ...)
        assert log["eval_library"] == {"name": "ettin-eval", "version": record["versions"]["harness"],
                                       "additional_details": {k: v for k, v in record["versions"].items()
                                                              if k != "harness"}}
        results = {r["metric_config"]["metric_id"]: r for r in log["evaluation_results"]}
        # every metric is a result, with the record's number; an lm-eval stderr is its metric's uncertainty
        plain = {k: v for k, v in record["metrics"].items() if not k.endswith("_stderr")}
        assert {k: r["score_details"]["score"] for k, r in results.items()} == plain
        headline = results[record["headline_metric"]]
        assert headline["score_details"]["details"] == {"seed": str(record["seed"]), "split": record["split"],
                                                        "headline": "true"}
        data = headline["source_data"]
        assert data["source_type"] == "other" and data["dataset_name"] == record["task"]
        if record["protocol"]["data_fingerprint"]:  # a --data-dir folder, by its fingerprint
            assert data["additional_details"]["data_fingerprint"] == record["protocol"]["data_fingerprint"]
        if record["adapter"] == "lm_eval":  # a task shipping its own files names them
            assert json.loads(data["additional_details"]["data_files"]) == record["lm_eval"]["data_files"]
            assert results["acc"]["score_details"]["uncertainty"]["standard_error"]["value"] == \
                record["metrics"]["acc_stderr"]
    # the same cells exported again replace their logs (the file name is fixed by the cell key)
    assert sorted(eee.export(records, store, tmp_path / "eee")) == sorted(paths)
    assert len(list((tmp_path / "eee").rglob("*.json"))) == len(records)


def test_a_hub_record_names_its_dataset_repository_revision_and_commit(store, validator):
    record = next(r for r in store.records() if r["adapter"] == "classification")
    hub = {**record, "model": "jhu-clsp/ettin-encoder-17m", "revision": "main", "loaded_commit": "a" * 40,
           "dataset": {"id": "nyu-mll/glue", "revision": None, "commit": "b" * 40},
           "protocol": {**record["protocol"], "data": "hub", "data_dir": None, "data_fingerprint": None}}
    log = eee.evaluation_log(hub, "1760000000.0")
    assert not errors(validator, log)
    assert log["model_info"]["id"] == "jhu-clsp/ettin-encoder-17m" and log["model_info"]["developer"] == "jhu-clsp"
    assert log["model_info"]["additional_details"]["resolved_revision"] == "a" * 40
    assert log["model_info"]["additional_details"]["model_availability"] == "open_weights"
    data = log["evaluation_results"][0]["source_data"]
    assert data["source_type"] == "hf_dataset" and data["hf_repo"] == "nyu-mll/glue"
    assert data["hf_split"] == record["split"] and data["additional_details"]["commit"] == "b" * 40


@pytest.mark.parametrize("break_it", [
    lambda log: log.pop("model_info"),  # a required field
    lambda log: log["model_info"]["additional_details"].pop("deployment_type"),
    lambda log: log["evaluation_results"][0]["metric_config"].pop("lower_is_better"),
    lambda log: log["evaluation_results"][0]["score_details"].update(score="0.5"),
    lambda log: log["source_metadata"].update(evaluator_relationship="friend"),
])
def test_a_log_missing_what_the_schema_requires_fails_validation(store, validator, break_it):
    log = eee.evaluation_log(store.records()[0], "1760000000.0")
    assert not errors(validator, log)
    break_it(log)
    assert errors(validator, log)


def test_nothing_finished_or_a_bad_relationship_is_one_line(store, tmp_path):
    with pytest.raises(UserError, match="no finished records to export"):
        eee.export([{**store.records()[0], "status": "failed"}], store, tmp_path / "x")
    with pytest.raises(UserError, match="unknown evaluator relationship 'friend'"):
        eee.export(store.records(), store, tmp_path / "x", relationship="friend")
