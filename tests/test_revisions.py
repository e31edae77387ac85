"""--revisions: a model's checkpoints as one axis of the plan, in training order."""

import glob
import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from harness.errors import UserError
from harness.models import ettin, resolve
from harness.revisions import ETTIN_PRETRAIN_TOKENS, ettin_tokens, in_training_order, phase_ends, phase_of, select, tokens_seen


def test_revisions_sort_in_training_order_across_phases():
    mixed = ["decay100", "step200", "ext1000", "step10", "my-snapshot", "decay50", "ext20", "step9"]
    assert in_training_order(mixed) == ["step9", "step10", "step200", "ext20", "ext1000", "decay50", "decay100",
                                        "my-snapshot"]
    assert [phase_of(r) for r in ("step9", "ext20", "decay50", "checkpoint-500", "my-snapshot")] == \
        ["pretraining", "extension", "decay", "training", None]


def test_names_globs_all_and_every():
    revs = [f"step{i * 100}" for i in range(1, 11)] + ["ext10", "ext20", "decay5", "decay10"]
    assert select("decay*", revs) == ["decay5", "decay10"]
    assert select("step300,decay10,step100", revs) == ["step100", "step300", "decay10"]
    assert select("all", revs) == in_training_order(revs)
    assert select("every:5", revs) == ["step100", "step600", "ext10", "decay10"]  # the last one always kept
    assert select("step*,every:4", revs) == ["step100", "step500", "step900", "step1000"]
    with pytest.raises(UserError, match="'step7' names no revision"):
        select("step7", revs)
    with pytest.raises(UserError, match="K must be a whole number"):
        select("every:0", revs)


def test_ettin_tags_sit_on_the_tokens_axis_of_the_authors_configs():
    # the README's last two pretraining tags are one 8.5B-token save apart and end at max_duration 1.7T
    assert ettin_tokens("150m", "step599525") == pytest.approx(ETTIN_PRETRAIN_TOKENS, rel=5e-4)
    assert ettin_tokens("150m", "step599525") - ettin_tokens("150m", "step596528") == 8_500_000_000
    assert ettin_tokens("400m", "step590532") == pytest.approx(ETTIN_PRETRAIN_TOKENS - 3 * 8.5e9, rel=5e-4)
    tags = ["step599525", "ext100", "ext200", "ext400", "decay50", "decay100"]
    ends = phase_ends(tags)
    assert dict(ends) == {"step": 599525, "ext": 400, "decay": 100}
    # extension (250B, de_decay/) then decay (50B, prolong_decay/); the 1b runs are shorter (83.3B, 16.7B)
    assert ettin_tokens("17m", "ext100", ends) == 1_700_000_000_000 + 62_500_000_000
    assert ettin_tokens("17m", "ext400", ends) == 1_950_000_000_000
    assert ettin_tokens("17m", "decay50", ends) == 1_975_000_000_000
    assert ettin_tokens("1b", "decay100", ends) == 1_700_000_000_000 + 83_333_000_000 + 16_666_666_667
    positions = [ettin_tokens("68m", t, ends) for t in in_training_order(tags)]
    assert positions == sorted(positions)  # training order and the tokens axis agree across phases
    # without the model's tag list an ext/decay tag has no known position (placed by order), nor has a
    # cross-objective model or another repository's tag
    assert ettin_tokens("17m", "ext100") is None
    assert tokens_seen(ettin("encoder", "17m", "ext100")) == (None, None)
    spec = ettin("decoder", "32m", "step300000")
    assert tokens_seen(spec) == (round(300000 * 8.5e9 / 2997), "Ettin configs: step x 2.836M tokens")
    assert tokens_seen(ettin("encoder-from-decoder", "32m", "step300000")) == (None, None)


def test_listed_hub_tags_place_the_later_phases(monkeypatch):
    import harness.revisions as revisions

    tags = ["step599525", "step596528", "ext500", "ext1000", "decay100", "decay200"]
    monkeypatch.setattr(revisions, "hub_revisions", lambda model_id: tags)
    specs = revisions.expand([ettin("encoder", "17m")], "ext*,decay200", None)
    assert [s.revision for s in specs] == ["ext500", "ext1000", "decay200"]
    assert [tokens_seen(s)[0] for s in specs] == [1_825_000_000_000, 1_950_000_000_000, 2_000_000_000_000]


@pytest.fixture()
def run_folder(tiny_pair, tmp_path):
    """A local training run: the tiny encoder saved as three checkpoints, with the tokens each had seen."""
    run = tmp_path / "run"
    for rev, tokens in (("step200", 2000), ("step100", 1000), ("decay10", 3000)):
        shutil.copytree(tiny_pair["encoder"], run / rev)
        (run / rev / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": tokens}))
    return run


def test_a_trajectory_runs_resumes_and_records_its_place(run_folder, demo_data, tmp_path, capsys):
    assert tokens_seen(resolve(str(run_folder / "step100"))) == (1000, "trainer_state.json")
    out = tmp_path / "out"
    base = ["run", "--model", run_folder, "--tasks", "sst2", "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "1",
            "--limit", "32", "--max-length", "64", "--output-path", out, "--quiet"]
    assert run_cli(*base, "--revisions", "step100") == 0
    capsys.readouterr()
    assert run_cli(*base, "--revisions", "all") == 0  # resumes: only the two new checkpoints run
    assert "2 cells run, 1 already in the store" in capsys.readouterr().out
    records = sorted((json.loads(Path(p).read_text()) for p in glob.glob(f"{out}/records/*.json")),
                     key=lambda r: r["trajectory"]["tokens_seen"])
    assert [r["revision"] for r in records] == ["step100", "step200", "decay10"]
    assert [r["trajectory"]["phase"] for r in records] == ["pretraining", "pretraining", "decay"]
    assert {r["trajectory"]["tokens_source"] for r in records} == {"trainer_state.json"}
    assert len({r["model_name"] for r in records}) == 1 and len({r["cell_key"] for r in records}) == 3


def test_the_bill_prices_every_revision(run_folder, demo_data, capsys):
    assert run_cli("plan", "--model", run_folder, "--revisions", "step*", "--tasks", "sst2",
                   "--data-dir", demo_data, "--limit", "32") == 0
    out = capsys.readouterr().out
    assert "run@step100" in out and "run@step200" in out and "run@decay10" not in out  # a line per revision
    assert run_cli("plan", "--model", run_folder, "--revisions", "step*", "--revision", "step100", "--tasks", "sst2",
                   "--data-dir", demo_data) == 2


def test_every_task_kind_runs_once_per_revision(run_folder, demo_data, capsys):
    from harness.bundled import tasks_dir
    from harness.demo_data import DEMO_RETRIEVAL_DIR

    kinds = ["sst2", "generative_demo", "retrieval_demo", "winogender_gotcha_preference"]
    assert run_cli("plan", "--model", run_folder, "--revisions", "step*", "--tasks", ",".join(kinds), "--data-dir",
                   demo_data, "--data-dir", DEMO_RETRIEVAL_DIR, "--data-dir", tasks_dir() / "generative" / "data") == 0
    lines = capsys.readouterr().out.splitlines()
    for rev in ("step100", "step200"):
        for task in kinds:
            assert sum(line.split()[:2] == [f"run@{rev}", task] for line in lines) == 1, (rev, task)
