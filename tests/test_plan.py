import pytest

from harness import grids, plan, tasks
from harness.errors import UserError
from harness.models import suite


@pytest.fixture(scope="module")
def glue():
    return tasks.load_tasks()


def test_glue_group_has_the_nine_tasks(glue):
    assert sorted(t.name for t in tasks.select(["glue"], glue)) == sorted(
        ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"])
    mnli = glue["mnli"]
    assert [e.split for e in mnli.eval_splits] == ["validation_matched", "validation_mismatched"]
    assert glue["stsb"].is_regression and glue["stsb"].headline_metric == "spearmanr"
    assert glue["cola"].metrics == ("matthews_correlation",)
    assert set(glue["mrpc"].metrics) == set(glue["qqp"].metrics) == {"accuracy", "f1"}
    assert {t for t in glue if glue[t].warm_start_from == "mnli"} == {"rte", "mrpc", "stsb"}


def test_paper_grid(glue):
    short = grids.grid(glue["sst2"], "paper")
    assert len(short) == 5 * 4 * 2 * 4
    assert {h.epochs for h in short} == {1, 2, 3, 4}
    assert {h.epochs for h in grids.grid(glue["cola"], "paper")} == {2, 5, 10, 12}
    h = short[0]
    assert (h.warmup_ratio, h.max_length) == (0.06, 512)


def test_small_grid_and_overrides(glue):
    small = grids.grid(glue["sst2"], "small")
    assert [h.lr for h in small] == [1e-5, 3e-5, 5e-5, 8e-5, 1e-4]
    assert len({(h.weight_decay, h.batch_size, h.epochs) for h in small}) == 1
    over = grids.grid(glue["sst2"], "paper", lr=(3e-5,), batch_size=(32,))
    assert len(over) == 4 * 4 and {h.lr for h in over} == {3e-5}
    with pytest.raises(UserError):
        grids.grid(glue["sst2"], "tiny")


def test_cells_order_keys_and_warm_start(glue):
    models = suite(["17m"], "both")
    specs = tasks.select(["rte", "mnli", "sst2"], glue)
    cells = plan.classification_cells(models, specs, "small", {"lr": (3e-5, 5e-5)}, seeds=2)
    assert len(cells) == 2 * 3 * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    enc = [c for c in cells if c.model.architecture == "encoder"]
    assert [c.task for c in enc][-4:] == ["rte"] * 4  # waits for mnli: runs last for its model
    assert all(c.warm_start_from == "mnli" and c.waiting for c in enc if c.task == "rte")
    rte = enc[-1]
    assert rte.with_init("abc").key != rte.key
    # same inputs, same keys (resume depends on it)
    again = plan.classification_cells(models, specs, "small", {"lr": (3e-5, 5e-5)}, seeds=2)
    assert [c.key for c in again] == [c.key for c in cells]
    alone = plan.classification_cells(models, tasks.select(["rte"], glue), "small")
    assert all(c.warm_start_from is None for c in alone)


def test_each_task_reads_the_first_data_dir_that_has_it(tmp_path):
    glue_dir, mc_dir = tmp_path / "glue", tmp_path / "mc"
    (glue_dir / "sst2").mkdir(parents=True)
    (mc_dir / "siqa").mkdir(parents=True)
    (mc_dir / "sst2").mkdir(parents=True)
    dirs = [str(glue_dir), str(mc_dir)]
    assert plan.pick_data_dirs(dirs, {"sst2": ["sst2"], "cola": ["cola"]}) == {"sst2": str(glue_dir),
                                                                               "cola": str(glue_dir)}
    got = plan.pick_data_dirs(dirs, {"social_iqa": ["social_iqa", "siqa"], "piqa": ["piqa"]}, fallback_first=False)
    assert got == {"social_iqa": str(mc_dir), "piqa": None}
    assert plan.pick_data_dirs([], {"sst2": ["sst2"]}) == {"sst2": None}
