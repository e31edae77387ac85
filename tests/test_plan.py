import pytest

from dataclasses import replace

from harness import grids, plan, tasks
from harness.configs import DataSource, FinetuneConfig, Recipe, ScoringConfig
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
    assert (h.recipe.warmup_ratio, h.max_length, h.recipe.betas, h.recipe.eps) == (0.06, 512, (0.9, 0.98), 1e-6)


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
    assert [c.task.name for c in enc][-4:] == ["rte"] * 4  # waits for mnli: runs last for its model
    assert all(c.warm_start_from == "mnli" and c.waiting for c in enc if c.task.name == "rte")
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


def test_grids_reject_values_that_cannot_train():
    with pytest.raises(UserError, match="finite"):
        grids.parse_floats("nan", "--lr")
    with pytest.raises(UserError, match="finite"):
        grids.parse_floats("1e-5,inf", "--weight-decay")
    with pytest.raises(UserError, match="above 0"):
        FinetuneConfig(lr=0.0, weight_decay=0.0, batch_size=16, epochs=1)


def sst2_cell(glue, **changes):
    base = dict(model=suite(["17m"], "encoder")[0], task=glue["sst2"],
                config=FinetuneConfig(lr=3e-5, weight_decay=8e-6, batch_size=32, epochs=2), data=DataSource(), seed=0)
    return plan.Cell(**{**base, **changes})


def test_cell_keys_are_fixed_values(glue):
    """A change to what a key hashes would silently orphan every stored record: it must be deliberate
    (and come with a PROTOCOL_VERSION bump when numbers change)."""
    cell = sst2_cell(glue)
    assert cell.key == "ettin-encoder-17m__sst2__595f0cbe8a527cb8"
    gen = plan.Cell(model=suite(["17m"], "decoder")[0], task=plan.LmEvalTask("piqa", fingerprint="abc"),
                    config=ScoringConfig(mntp=False))
    assert gen.key == "ettin-decoder-17m__piqa__a56df7937fc92d44"


def test_everything_that_can_change_a_number_changes_the_key(glue):
    cell = sst2_cell(glue)
    edited = replace(glue["sst2"], text_fields=("sentence", "other"))
    changes = {
        "task YAML": dict(task=edited),
        "recipe": dict(config=replace(cell.config, recipe=Recipe(warmup_ratio=0.1))),
        "head init": dict(config=replace(cell.config, recipe=Recipe(head_init="fresh"))),
        "learning rate": dict(config=replace(cell.config, lr=5e-5)),
        "data source": dict(data=DataSource(folder="/data", fingerprint="aa")),
        "data content": dict(data=DataSource(folder="/data", fingerprint="bb")),
        "limit": dict(data=DataSource(limit=10)),
        "seed": dict(seed=1),
    }
    keys = {name: sst2_cell(glue, **c).key for name, c in changes.items()}
    assert len(set(keys.values()) | {cell.key}) == len(changes) + 1, keys
    # moving a data folder keeps the key (content, not path); the grid a config came from does too
    assert sst2_cell(glue, data=DataSource(folder="/a", fingerprint="aa")).key == keys["data source"]
    assert sst2_cell(glue, grid="small").key == cell.key
    # scoring options: only those of the model's architecture count
    dec = suite(["17m"], "decoder")[0]
    piqa = plan.LmEvalTask("piqa", fingerprint="abc")
    base = plan.Cell(model=dec, task=piqa, config=ScoringConfig())
    assert plan.Cell(model=dec, task=piqa, config=ScoringConfig(num_masks=5)).key == base.key
    assert plan.Cell(model=dec, task=piqa, config=ScoringConfig(add_bos_token=False)).key != base.key
    assert plan.Cell(model=dec, task=plan.LmEvalTask("piqa", fingerprint="abd"), config=ScoringConfig()).key != base.key


def test_seeds_share_a_config_key_and_configs_a_protocol_key(glue):
    cell = sst2_cell(glue)
    assert sst2_cell(glue, seed=3).config_key == cell.config_key
    assert cell.with_init("mnli-best").config_key == cell.config_key
    other_lr = sst2_cell(glue, config=replace(cell.config, lr=1e-4))
    assert other_lr.config_key != cell.config_key and other_lr.protocol_key == cell.protocol_key
    assert sst2_cell(glue, data=DataSource(limit=10)).protocol_key != cell.protocol_key
    fresh = sst2_cell(glue, config=replace(cell.config, recipe=Recipe(head_init="fresh")))
    assert fresh.protocol_key != cell.protocol_key
