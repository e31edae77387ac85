"""What a cell's key and a record's protocol name beyond the configuration: the compute dtype and
attention implementation it ran under (resolved), a shipped task a local YAML replaced, the
model revision that loaded."""

import pytest
import torch

from conftest import run_cli
from harness import commands, plan, tasks
from harness.adapters.base import RunOptions
from harness.cli import build_parser
from harness.configs import EmbeddingConfig
from harness.errors import UserError
from harness.execution.work import Job, execute
from harness.models import ModelSpec
from harness.records import protocol_label
from harness.results import ResultStore
from harness.runner import Runner
from harness.runner.device import Hardware


def planned(*flags):
    args = build_parser().parse_args(["plan", "--sizes", "17m", "--tasks", "sst2,rte", *flags])
    return commands.build_cells(args, check=False)


def test_the_resolved_dtype_and_attention_key_every_cell():
    auto = planned("--device", "cpu")
    fp32 = planned("--device", "cpu", "--dtype", "fp32", "--attn", "sdpa")
    bf16 = planned("--device", "cpu", "--dtype", "bf16")
    eager = planned("--device", "cpu", "--attn", "eager")
    assert [c.key for c in auto] == [c.key for c in fp32]  # auto on a CPU is fp32 with sdpa
    assert not {c.key for c in bf16} & {c.key for c in fp32}
    assert not {c.key for c in eager} & {c.key for c in fp32}
    assert not {c.protocol_key for c in bf16} & {c.protocol_key for c in fp32}  # never pooled in a report
    assert {protocol_label(c).split(", ")[-1] for c in bf16} == {"bf16"}
    assert "attention eager" in protocol_label(eager[0]) and "bf16" not in protocol_label(fp32[0])
    # the default adds nothing to the key: the stores of default runs keep their keys
    assert "compute" not in fp32[0].identity() and fp32[0].compute == plan.Compute()


def test_a_plan_for_an_absent_gpu_still_works_and_assumes_bf16(tmp_path, capsys):
    cells = planned("--device", "cuda", "--attn", "sdpa")
    assert {c.compute for c in cells} == {plan.Compute("bf16", "sdpa")}
    assert run_cli("plan", "--sizes", "17m", "--tasks", "sst2", "--device", "cuda", "--output-path", tmp_path) == 0


def test_a_bf16_run_does_not_reuse_fp32_records_and_says_bf16(tiny_pair, demo_data, tmp_path, capsys):
    def quick(*flags):
        return run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "rte", "--data-dir", demo_data, "--lr", "1e-3",
                       "--epochs", "1", "--limit", "16", "--device", "cpu", "--output-path", tmp_path, "--quiet", *flags)

    assert quick("--dtype", "fp32") == 0
    assert quick() == 0  # auto on a CPU is the same cell
    assert "0 cells run, 1 already in the store" in capsys.readouterr().out
    assert quick("--dtype", "bf16") == 0
    assert "1 cells run, 0 already in the store" in capsys.readouterr().out
    records = {r["protocol"]["dtype"]: r for r in ResultStore(tmp_path).records()}
    assert set(records) == {"fp32", "bf16"}
    assert "bf16" in records["bf16"]["protocol"]["label"] and "bf16" not in records["fp32"]["protocol"]["label"]
    assert records["bf16"]["protocol"]["attention"] == records["fp32"]["protocol"]["attention"] == "sdpa"


def test_fp16_fine_tuning_is_refused_in_one_line(tiny_pair, demo_data, tmp_path, capsys):
    code = run_cli("run", "--model", tiny_pair["encoder"], "--tasks", "rte", "--data-dir", demo_data, "--limit", "16",
                   "--device", "cpu", "--dtype", "fp16", "--output-path", tmp_path, "--quiet")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--dtype fp32" in err and "bf16" in err
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").iterdir())


def fp16_runner() -> Runner:
    """A runner whose hardware is what ``--dtype auto`` picks on a GPU without bf16."""
    runner = Runner("cpu", "fp32")
    runner.hardware = Hardware(torch.device("cpu"), torch.float16, "sdpa")
    return runner


def test_the_adapters_refuse_to_fine_tune_in_fp16(tiny_pair, demo_data):
    from harness.adapters import classification, retrieval
    from harness.retrieval.spec import load_retrieval_tasks

    encoder = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    [cell] = plan.classification_cells([encoder], tasks.select(["rte"], tasks.load_tasks()), "small",
                                       {"lr": (1e-3,), "epochs": (1,)}, limit=16, data_dir=demo_data)
    with pytest.raises(UserError, match="--dtype fp32"):
        classification.run(cell, fp16_runner(), RunOptions())
    spec = load_retrieval_tasks()["retrieval_demo"]
    [embed] = plan.retrieval_cells([encoder], [spec], EmbeddingConfig())
    with pytest.raises(UserError, match="--dtype fp32"):
        retrieval.run(embed, fp16_runner(), RunOptions())


def test_a_runner_that_computes_otherwise_than_the_cell_is_keyed_runs_nothing(tiny_pair, demo_data, monkeypatch):
    from harness.execution import work

    ran = []
    monkeypatch.setattr(work, "adapter_for", lambda name: lambda cell, runner, options: ran.append(cell))
    encoder = ModelSpec(model_id=tiny_pair["encoder"], architecture="encoder", name="encoder")
    [cell] = plan.classification_cells([encoder], tasks.select(["rte"], tasks.load_tasks()), "small",
                                       {"lr": (1e-3,), "epochs": (1,)}, limit=16, data_dir=demo_data)
    outcome = execute(Job(cell), Runner("cpu", "bf16"))
    assert isinstance(outcome.error, UserError) and "bf16" in str(outcome.error) and ran == []


def test_a_bf16_run_of_the_paper_protocol_is_still_the_papers_in_the_report():
    import pandas as pd

    from harness.report.frame import follows_paper, protocol_notes

    assert follows_paper("paper") and follows_paper("bf16, attention flash_attention_2")
    assert not follows_paper("fp16") and not follows_paper("bf16, limit 40") and not follows_paper("")
    notes = protocol_notes(pd.DataFrame({"protocol": ["bf16", "small grid, bf16"], "row": ["17m", "32m"]}))
    assert notes[0].startswith("Protocol: the paper's") and "computed in bf16" in notes[0]
    assert "NOT the paper's" in notes[1]


def test_an_include_path_yaml_under_a_shipped_name_is_warned_about_once_and_labelled_custom(tmp_path, caplog):
    import logging

    from harness.bundled import tasks_dir
    from harness.retrieval.spec import load_retrieval_tasks

    sst2 = (tasks_dir() / "glue" / "sst2.yaml").read_text()
    scifact = (tasks_dir() / "retrieval" / "scifact.yaml").read_text()
    (tmp_path / "sst2.yaml").write_text(sst2.replace("dataset_path: nyu-mll/glue", "dataset_path: me/my-sst2"))
    (tmp_path / "scifact.yaml").write_text(scifact + "headline_metric: recall_at_100\n")
    same = tmp_path / "same"
    same.mkdir()
    (same / "sst2.yaml").write_text(sst2)
    with caplog.at_level(logging.WARNING):
        specs = [tasks.load_tasks([str(tmp_path)]) for _ in range(2)]
        retrieval = [load_retrieval_tasks([str(tmp_path)]) for _ in range(2)]
        unchanged = tasks.load_tasks([str(same)])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("'sst2'" in w and str(tmp_path / "sst2.yaml") in w for w in warned) == 1  # once, naming the file
    assert sum("'scifact'" in w for w in warned) == 1
    assert specs[0]["sst2"].custom and retrieval[0]["scifact"].custom and not specs[0]["rte"].custom
    assert not unchanged["sst2"].custom  # the same content: the same task, keyed and labelled as the shipped one

    model = ModelSpec(model_id="/m/enc", architecture="encoder", name="enc")
    [cell] = plan.classification_cells([model], [specs[0]["sst2"]], "paper", {"lr": (1e-5,), "batch_size": (32,),
                                       "epochs": (1,), "weight_decay": (1e-5,)})
    [shipped] = plan.classification_cells([model], [tasks.load_tasks()["sst2"]], "paper", {"lr": (1e-5,),
                                          "batch_size": (32,), "epochs": (1,), "weight_decay": (1e-5,)})
    assert "custom spec" in protocol_label(cell) and "custom spec" not in protocol_label(shipped)
    [embed] = plan.retrieval_cells([model], [retrieval[0]["scifact"]], EmbeddingConfig())
    assert protocol_label(embed) == "custom spec"


def test_two_models_in_one_report_row_are_named_in_a_notice(tmp_path):
    from harness.adapters.base import CellResult
    from harness.records import build_record
    from harness.report import build_report

    store = ResultStore(tmp_path)
    # two encoders under one --pair name, each with a task of its own: one row, as if one model
    for model_id, arch, task, score in (("/a/enc-one", "encoder", "sst2", 0.8), ("/b/enc-two", "encoder", "rte", 0.7),
                                        ("/a/dec", "decoder", "sst2", 0.6), ("/a/dec", "decoder", "rte", 0.6)):
        spec = ModelSpec(model_id=model_id, architecture=arch, name=model_id.rsplit("/", 1)[-1], pair="mine")
        [cell] = plan.classification_cells([spec], [tasks.load_tasks()[task]], "paper", {
            "lr": (1e-5,), "batch_size": (32,), "epochs": (1,), "weight_decay": (1e-5,)})
        store.write(build_record(cell, CellResult(metrics={"accuracy": score}, headline_metric="accuracy",
                                                  split="validation", n_examples=10), 1.0, "cpu", None))
    report = build_report([tmp_path], n_boot=0)
    assert list(report.table.index) == ["mine"]
    notes = report.notes
    clash = [n for n in notes if "/a/enc-one" in n]
    assert len(clash) == 1 and "/b/enc-two" in clash[0] and "mine" in clash[0] and "\n" not in clash[0]
    assert not any("/a/dec" in n for n in notes)  # one decoder: no clash


def fake_hub_cache(root, repo: str, folder: str, sha: str = "0123456789abcdef0123456789abcdef01234567"):
    """``folder`` as the cached hub snapshot ``sha`` of ``repo`` (main points at it), as a download leaves it."""
    import shutil

    base = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, base / "snapshots" / sha)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(sha)
    return sha


def test_a_hub_id_is_resolved_once_and_records_the_id_and_commit_that_loaded(tiny_pair, demo_data, tmp_path,
                                                                               monkeypatch):
    from huggingface_hub import constants

    from harness.execution import ExecutionSettings, run_cells
    from harness.execution.local import LocalExecutor
    from harness.models import hub_commit
    from harness.report import build_report
    from harness.report.facts import models as model_facts
    from harness.runner import cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sha = fake_hub_cache(tmp_path / "hub", "fake-org/tiny-enc", tiny_pair["encoder"])
    assert hub_commit("fake-org/tiny-enc") == sha and hub_commit("fake-org/tiny-enc", sha) == sha
    assert hub_commit("fake-org/not-cached") is None and hub_commit(tiny_pair["encoder"]) is None
    tried = []
    real = cache.load_with_aliases
    monkeypatch.setattr(cache, "load_with_aliases", lambda spec, load: (tried.append(spec.model_id), real(spec, load))[1])

    spec = ModelSpec(model_id="fake-org/missing-enc", architecture="encoder", name="aliased",
                     aliases=("fake-org/tiny-enc",))
    local = ModelSpec(model_id=tiny_pair["decoder"], architecture="decoder", name="dec")
    cells = plan.classification_cells([spec, local], tasks.select(["rte"], tasks.load_tasks()), "small",
                                      {"lr": (1e-3,), "epochs": (1,)}, limit=16, data_dir=demo_data)
    summary = run_cells(cells, ResultStore(tmp_path / "out"), ExecutionSettings(quiet=True),
                        LocalExecutor(Runner("cpu", "fp32")))
    assert not summary.failed
    assert tried.count("fake-org/missing-enc") == 1  # the tokenizer resolved it; config and weights reuse that
    records = {r["model"]: r for r in ResultStore(tmp_path / "out").records()}
    assert records["fake-org/missing-enc"]["loaded_id"] == "fake-org/tiny-enc"
    assert records["fake-org/missing-enc"]["loaded_commit"] == sha
    assert records[tiny_pair["decoder"]]["loaded_commit"] is None  # a local folder has no commit
    report = build_report([tmp_path / "out"], n_boot=0)
    shown = {m["id"]: m for m in model_facts(report.best, report.frame)}
    assert shown["fake-org/missing-enc"]["loaded"] == "fake-org/tiny-enc" and shown[tiny_pair["decoder"]]["loaded"] == ""
    assert shown["fake-org/missing-enc"]["commit"] == sha[:10]
