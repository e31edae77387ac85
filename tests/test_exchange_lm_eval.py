"""lm-eval's format both ways, checked by lm-eval's own code: the harness's records exported as
results and samples files that lm-eval's readers (lm_eval.utils, as its scripts use them, and
make_table) load; folders written by the real ``lm_eval`` command line imported into a store and
reported beside a harness run; and export then import giving the same report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

LIMIT = 4


@pytest.fixture(scope="module")
def harness_run(tiny_pair, demo_data, tmp_path_factory) -> str:
    """The tiny pair run by the harness: the generative demo task and SST-2 with two seeds, samples kept."""
    out = tmp_path_factory.mktemp("harness-run")
    code = run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--pair", "tiny",
                   "--tasks", "generative_demo,sst2", "--data-dir", demo_data, "--limit", 8, "--epochs", 1,
                   "--lr", "1e-3", "--seeds", 2, "--log-samples", "--quiet", "--output-path", out)
    assert code == 0
    from harness.bundled import tasks_dir

    code = run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--pair", "tiny",
                   "--tasks", "winogender_gotcha_preference", "--data-dir", tasks_dir() / "generative" / "data",
                   "--log-samples", "--quiet", "--output-path", out)
    assert code == 0
    return str(out)


def run_lm_eval(model: str, out: Path, limit: int = LIMIT) -> Path:
    """The real lm-eval command line on a local task YAML with a local data file."""
    from harness.bundled import tasks_dir

    argv = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
            "--tasks", "generative_demo", "--include_path", str(tasks_dir() / "generative"), "--output_path",
            str(out), "--log_samples", "--limit", str(limit), "--device", "cpu", "--batch_size", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    done = subprocess.run(argv, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def lm_eval_run(tiny_pair, tmp_path_factory) -> Path:
    return run_lm_eval(tiny_pair["decoder"], tmp_path_factory.mktemp("lm-eval") / "out")


def lm_eval_view(folder: Path) -> dict:
    """What lm-eval's scripts (scripts/zeno_visualize.py) read of an output folder, with its own
    helpers: per model folder the latest results file, its tasks' configs and each task's latest
    samples file."""
    from lm_eval.utils import (get_file_task_name, get_latest_filename, get_results_filenames,
                               get_sample_results_filenames)

    view = {}
    for model_dir in sorted(p for p in folder.rglob("*") if p.is_dir()):
        files = [p.as_posix() for p in model_dir.iterdir() if p.is_file()]
        if not get_results_filenames(files):
            continue
        latest = get_latest_filename(get_results_filenames(files))
        body = json.load(open(latest, encoding="utf-8"))
        samples = {}
        for task in body["configs"]:
            named = [f for f in get_sample_results_filenames(files) if get_file_task_name(Path(f).name) == task]
            if named:
                with open(get_latest_filename(named), encoding="utf-8") as f:
                    samples[task] = [json.loads(line) for line in f]
        view[model_dir.name] = {"results": body, "samples": samples, "file": latest}
    return view


def records_of(root) -> dict:
    from harness.results import ResultStore

    return {r["cell_key"]: r for r in ResultStore(root).records()}


def test_an_export_is_read_by_lm_evals_own_readers(harness_run, tmp_path):
    from lm_eval.utils import make_table, sanitize_model_name

    assert run_cli("export", harness_run, "--format", "lm-eval", "--out", tmp_path / "lm") == 0
    view = lm_eval_view(tmp_path / "lm")
    records = list(records_of(harness_run).values())
    decoder = next(r for r in records if r["architecture"] == "decoder" and r["task"] == "generative_demo")
    assert set(view) == {sanitize_model_name(r["model"]) for r in records}  # <out>/<model_name_sanitized>/
    body, samples = view[sanitize_model_name(decoder["model"])]["results"], \
        view[sanitize_model_name(decoder["model"])]["samples"]
    # generative: lm-eval's own numbers and stderr, under "<metric>,<filter>"
    assert body["results"]["generative_demo"]["acc_norm,none"] == decoder["metrics"]["acc_norm"]
    assert body["results"]["generative_demo"]["acc_norm_stderr,none"] == decoder["metrics"]["acc_norm_stderr"]
    assert body["n-samples"]["generative_demo"]["effective"] == decoder["n_examples"]
    # GLUE: the mean over both seeds of the best configuration, stderr from the harness's bootstrap
    sst2 = [r for r in records if r["architecture"] == "decoder" and r["task"] == "sst2"]
    assert sorted(r["seed"] for r in sst2) == [0, 1]
    mean = sum(r["metrics"]["accuracy"] for r in sst2) / 2
    assert body["results"]["sst2"]["accuracy,none"] == pytest.approx(mean)
    stderr = body["results"]["sst2"]["accuracy_stderr,none"]
    assert isinstance(stderr, float) and 0 < stderr < 0.5
    # the run's config: model, args, revision, dtype, seeds, producer, versions, git hash, date
    config = body["config"]
    assert config["model_args"]["pretrained"] == decoder["model"] and config["model_revision"] == "main"
    assert config["seeds"] == [0, 1] and config["producer"] == "ettin-eval" and config["model_dtype"] == "fp32"
    assert body["lm_eval_version"] == decoder["versions"]["lm_eval"] and body["git_hash"]
    assert body["transformers_version"] == decoder["versions"]["transformers"] and body["date"] > 0
    # samples: one row per example and seed, with doc_id and each metric's per-example value
    assert len(samples["generative_demo"]) == decoder["n_examples"]
    assert {s["doc_id"] for s in samples["generative_demo"]} == set(range(decoder["n_examples"]))
    assert all(isinstance(s["arguments"]["gen_args_0"]["arg_0"], str) for s in samples["generative_demo"])
    assert len(samples["sst2"]) == 2 * 8 and all(s["accuracy"] in (0.0, 1.0) for s in samples["sst2"])
    for task, config in body["configs"].items():  # what zeno_visualize reads of a task's config
        assert config["output_type"] and all(m["metric"] in samples[task][0] for m in config["metric_list"])
    table = make_table(body)
    assert "generative_demo" in table and "sst2" in table
    assert f"{decoder['metrics']['acc_norm']:.4f}" in table and f"{stderr:.4f}" in table


def test_a_run_of_the_lm_eval_command_line_imports_with_the_files_numbers(lm_eval_run, tiny_pair, tmp_path):
    store = tmp_path / "store"
    assert run_cli("import", lm_eval_run, "--output-path", store) == 0
    (model,) = lm_eval_view(lm_eval_run).values()
    scores = model["results"]["results"]["generative_demo"]
    (record,) = records_of(store).values()
    for key, value in scores.items():
        metric, comma, _ = key.partition(",")
        if comma and isinstance(value, float):
            assert record["metrics"][metric] == value
    assert record["protocol"]["label"] == "imported" and record["protocol"]["tool_versions"]["lm_eval"] == "0.4.13"
    assert record["versions"]["lm_eval"] == "0.4.13" and record["versions"]["harness"]
    assert record["model"] == tiny_pair["decoder"] and record["architecture"] == "decoder"  # from its config.json
    assert record["n_examples"] == LIMIT and record["limit"] == LIMIT and record["seed"] == 0
    assert record["headline_metric"] == "acc_norm" and record["task_group"] == "generative"
    assert record["hyperparameters"]["seeds"]["fewshot_seed"] == 1234
    assert record["lm_eval"]["task_hash"] == model["results"]["task_hashes"]["generative_demo"]
    from harness.results import ResultStore

    rows = ResultStore(store).read_samples(record)
    assert [r["doc_id"] for r in rows] == list(range(LIMIT))
    assert [r["acc_norm"] for r in rows] == [s["acc_norm"] for s in model["samples"]["generative_demo"]]


def test_the_report_shows_an_imported_run_beside_a_harness_run(lm_eval_run, harness_run, capsys):
    (model,) = lm_eval_view(lm_eval_run).values()
    expected = model["results"]["results"]["generative_demo"]["acc_norm,none"] * 100
    capsys.readouterr()
    assert run_cli("report", lm_eval_run, harness_run, "--bootstrap", 0) == 0  # the lm-eval folder, read directly
    text = capsys.readouterr().out
    lines = text.splitlines()
    demo = lines.index(next(line for line in lines if line.startswith("Generative")))
    rows = {line.split()[0]: line.split()[1:] for line in lines[demo + 4: demo + 6]}
    assert set(rows) == {"tiny", "decoder"}  # the harness's pair and the imported model, one table
    assert rows["decoder"] == ["-", f"{expected:.1f}", "-"]
    assert "Protocol: imported for decoder" in text


def test_export_then_import_gives_the_same_report(harness_run, tmp_path):
    from harness.report import build_report

    assert run_cli("export", harness_run, "--format", "lm-eval", "--out", tmp_path / "lm") == 0
    assert run_cli("import", tmp_path / "lm", "--output-path", tmp_path / "back") == 0
    original, back = records_of(harness_run), records_of(tmp_path / "back")
    generative = {k for k, r in original.items() if r["task"] in ("generative_demo", "winogender_gotcha_preference")}
    assert len(generative) == 4 and generative <= set(back)
    for key in generative:  # the same record: keys, metrics, model, revision, seeds, protocol, versions, data
        kept = {k: v for k, v in back[key].items() if k not in ("imported", "samples")}
        assert kept == {k: v for k, v in original[key].items() if k != "samples"}
        assert back[key]["imported"]["from"] == "lm-eval"
    one = build_report([harness_run], n_boot=200)
    two = build_report([str(tmp_path / "back")], n_boot=200)
    assert one.text() == two.text()
    assert one.significance.equals(two.significance)  # the paired tests read the samples that came back
    assert one.significance["p_value"].notna().all()


def test_an_edited_export_is_read_as_lm_evals_numbers_not_as_the_records_it_keeps(harness_run, tmp_path):
    assert run_cli("export", harness_run, "--format", "lm-eval", "--out", tmp_path / "lm") == 0
    path = next(p for p in (tmp_path / "lm").rglob("results_*.json") if p.parent.name.endswith("decoder"))
    body = json.loads(path.read_text())
    body["results"]["generative_demo"]["acc_norm,none"] = 0.125
    path.write_text(json.dumps(body))
    assert run_cli("import", tmp_path / "lm", "--output-path", tmp_path / "back") == 0
    back = [r for r in records_of(tmp_path / "back").values() if r["architecture"] == "decoder"]
    edited = next(r for r in back if r["task"] == "generative_demo")
    assert edited["metrics"]["acc_norm"] == 0.125 and edited["protocol"]["label"] == "imported"
    assert next(r for r in back if r["task"] == "sst2")["cell_key"] in records_of(harness_run)  # untouched: kept


def test_paired_tests_run_on_imported_samples(lm_eval_run, tmp_path):
    """An encoder's and a decoder's lm-eval runs (here one run, told to be both) imported as one pair."""
    from harness.report import build_report

    store = tmp_path / "store"
    assert run_cli("import", lm_eval_run, "--output-path", store, "--arch", "decoder", "--pair", "duo") == 0
    assert run_cli("import", lm_eval_run, "--output-path", store, "--arch", "encoder", "--pair", "duo") == 0
    sig = build_report([str(store)], n_boot=200).significance
    (row,) = sig.to_dict("records")
    assert row["row"] == "duo" and row["n_examples"] == LIMIT and row["gap"] == 0 and row["p_value"] == 1.0


def test_a_second_export_adds_files_and_lm_eval_reads_the_newest(harness_run, tmp_path):
    from lm_eval.utils import get_latest_filename

    for _ in range(2):
        assert run_cli("export", harness_run, "--format", "lm-eval", "--out", tmp_path) == 0
    for folder in (p for p in tmp_path.iterdir() if p.is_dir()):
        results = sorted(p.as_posix() for p in folder.glob("results_*.json"))
        assert len(results) == 2 and get_latest_filename(results) == results[1]
        assert len(list(folder.glob("samples_sst2_*.jsonl"))) == 2


def test_the_architecture_of_an_imported_model():
    from harness.exchange.lm_eval_import import model_identity

    def who(pretrained, arch=None, **config):
        return model_identity({"config": {"model": "hf", "model_args": f"pretrained={pretrained}", **config}}, arch)

    ettin = who("jhu-clsp/ettin-encoder-150m", model_revision="step599525", model_sha="abc")
    assert (ettin["architecture"], ettin["size"], ettin["pair"], ettin["family"]) == ("encoder", "150m", "150m", "ettin")
    assert ettin["revision"] == "step599525" and ettin["loaded_commit"] == "abc"
    other = who("someone/some-causal-lm", model_revision="main")
    assert other["architecture"] == "decoder" and other["revision"] is None and other["family"] == "other"
    hinted = who("jhu-clsp/ettin-decoder-17m", arch="encoder")  # the hint wins, and the pair no longer holds
    assert hinted["architecture"] == "encoder" and hinted["pair"] is None


def test_an_lm_eval_stderr_it_could_not_compute_stays_out_of_the_metrics(tmp_path):
    from harness.exchange.lm_eval_import import foreign_record

    body = {"results": {}, "config": {"model_args": "pretrained=someone/lm", "limit": None},
            "n-samples": {"t": {"original": 3, "effective": 3}}}
    entry = {"alias": "t", "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": "N/A",
             "exact_match,flexible-extract": 0.7}
    record = foreign_record(str(tmp_path / "results_x.json"), body, "t", entry, {"task": "t"}, None)
    assert record["metrics"] == {"exact_match": 0.5} and record["headline_metric"] == "exact_match"
    assert not any(isinstance(v, float) and math.isnan(v) for v in record["metrics"].values())


def test_on_a_test_split_every_configuration_is_exported_none_chosen(tmp_path):
    from test_report_frame import put

    from harness.exchange.lm_eval import export
    from harness.results import ResultStore

    for split, root in (("test", tmp_path / "test"), ("validation", tmp_path / "dev")):
        for lr, score in ((1e-5, 0.7), (3e-5, 0.9)):
            put(root, "encoder", "17m", "sst2", score, lr=lr, split=split)
        store = ResultStore(root)
        export(store.records(), store, tmp_path / f"out-{split}")
    exported = {split: sorted(json.loads(p.read_text())["results"]["sst2"]["accuracy,none"]
                              for p in (tmp_path / f"out-{split}").rglob("results_*.json"))
                for split in ("test", "validation")}
    assert exported == {"test": [0.7, 0.9], "validation": [0.9]}
