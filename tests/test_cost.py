"""The bill before the run (harness/cost.py): the arithmetic on a hand-computed plan, the tokenizer
and meta-device counts of a local model, measured throughput from the store, the paper sweep."""

import json
import math

import pytest

from conftest import run_cli
from harness import cost, models, plan, tasks
from harness.adapters.base import CellResult
from harness.records import build_record
from harness.results import ResultStore

N_17M = 16_797_440 - 50_368 * 256  # the registry's 17m backbone minus its token embeddings


@pytest.fixture
def ten_words(tmp_path):
    """An SST-2 folder whose every row has exactly 10 words: 4 train rows, 2 dev rows."""
    folder = tmp_path / "data" / "sst2"
    folder.mkdir(parents=True)
    row = " ".join(["word"] * 10)
    for split, n in (("train", 4), ("validation", 2)):
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps({"sentence": row, "label": i % 2, "idx": i}) + "\n" for i in range(n)))
    return str(tmp_path / "data")


def small_plan(data_dir, seeds=1):
    spec = tasks.select(["sst2"], tasks.load_tasks())
    model = models.ettin("encoder", "17m")
    overrides = {"lr": (1e-5, 3e-5), "weight_decay": (1e-6,), "batch_size": (2,), "epochs": (1, 2)}
    return plan.classification_cells([model], spec, "paper", overrides, seeds=seeds, data_dir=data_dir)


def test_the_arithmetic_of_a_known_plan(ten_words):
    cells = small_plan(ten_words)
    (line,), notes = cost.estimate(cells, gpu="h100", utilization=0.4)
    # a row: 1.3 x 10 words + [CLS] and [SEP] = 15 tokens; 4 train rows = 60 tokens an epoch
    assert line.cells == 4 and len(line.configs) == 4 and line.seeds == {0} and line.stored == 0
    assert line.train_tokens == 60 * (1 + 2) * 2  # epochs 1 and 2, at two learning rates: 360
    assert line.score_tokens == 2 * 15 * 4  # 2 dev rows per cell: 120
    assert line.flops == 6 * N_17M * 360 + 2 * N_17M * 120 == 9_367_756_800
    # steps: ceil(4 / 2) = 2 an epoch, 12 over the plan; 7 layers x 0.6 ms each; 3 s a cell
    expected = 9_367_756_800 / (0.4 * 989e12) + 12 * 7 * 0.6e-3 + 4 * 3.0
    assert math.isclose(line.seconds, expected, rel_tol=1e-12) and math.isclose(line.todo_seconds, expected)
    assert any("estimated: 1.3 x words" in n and "sst2" in n for n in notes)
    assert any(f"{cost.human(N_17M)}/7" in n for n in notes)


def test_a_calibration_record_replaces_the_assumed_throughput(ten_words, tmp_path):
    cells = small_plan(ten_words)
    store = ResultStore(tmp_path / "runs")
    result = CellResult(metrics={"accuracy": 0.9}, headline_metric="accuracy", split="validation", n_examples=2,
                        details={"train_tokens": 1_000_000, "train_time_s": 10.0})
    store.write(build_record(cells[0], result, 12.0, "cuda (NVIDIA H100 80GB HBM3), bf16, attention sdpa", None))
    (line,), _ = cost.estimate(cells, roots=[store.root], gpu="h100")
    per_second = 1_000_000 / 10.0  # measured training tokens/s; scoring at 3x that
    expected = 360 / per_second + 120 / (3 * per_second) + 4 * 3.0
    assert math.isclose(line.seconds, expected) and line.stored == 1
    assert line.throughput == "measured 100,000 tok/s (1 records)"
    assert math.isclose(line.todo_seconds, expected - (60 / per_second + 30 / (3 * per_second) + 3.0))
    (on_a100,), _ = cost.estimate(cells, roots=[store.root], gpu="a100")  # measured on an H100 only
    assert on_a100.throughput == "assumed"


def test_device_kinds_and_asha_fractions():
    assert cost.device_kind("cuda (NVIDIA H100 80GB HBM3), bf16, attention sdpa") == "h100"
    assert cost.device_kind("cuda (NVIDIA A100-SXM4-40GB), bf16") == "a100"
    assert cost.device_kind("cuda (NVIDIA L4), bf16") == "l4"
    assert cost.device_kind("cuda (NVIDIA A10G), bf16") == "a10g"
    assert cost.device_kind("cpu, float32, attention sdpa, token budget 8192") == "cpu"
    from harness.search import AshaSettings

    assert math.isclose(AshaSettings(4, 3).nominal_fraction(), 1 / 16 + (1 / 4 - 1 / 16) / 4 + (1 - 1 / 4) / 16)
    assert math.isclose(AshaSettings(3, 3).nominal_fraction(), 1 / 9 + (2 / 9) / 3 + (2 / 3) / 9)


def test_a_local_model_is_counted_with_its_tokenizer_and_config(tiny_pair, demo_data):
    from transformers import AutoModel, AutoTokenizer

    from harness.adapters import inputs
    from harness.tasks import load_split

    spec = tasks.select(["rte"], tasks.load_tasks())
    model = models.resolve(tiny_pair["decoder"])
    (cell,) = plan.classification_cells([model], spec, "small", {"lr": (1e-3,), "epochs": (3,)}, limit=40,
                                        data_dir=demo_data)
    got = cost.cell_cost(cell)
    ds = load_split(spec[0], "train", data_dir=demo_data, limit=40)
    ids = inputs.encode(AutoTokenizer.from_pretrained(tiny_pair["decoder"]), "decoder",
                        [list(ds["sentence1"]), list(ds["sentence2"])], 512)
    assert got.train_tokens == 3 * sum(len(i) for i in ids) and got.train_rows == 40
    loaded = AutoModel.from_pretrained(tiny_pair["decoder"])
    size = cost.model_size(model)
    assert size.non_embedding == sum(p.numel() for p in loaded.parameters()) - loaded.get_input_embeddings().weight.numel()
    assert size.layers == loaded.config.num_hidden_layers


def test_the_paper_sweep_prints_offline(tmp_path, capsys):
    code = run_cli("plan", "--sizes", "17m,32m,68m,150m,400m,1b", "--arch", "both", "--tasks", "glue", "--grid",
                   "paper", "--output-path", tmp_path / "none")
    out = capsys.readouterr().out
    assert code == 0 and "12 models x 9 tasks x up to 160 configurations x 1 seeds = 17,280 cells" in out
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert 1_600 < float(total[-2].replace(",", "")) < 1_800  # GPU-hours: the README's ~1,700
    assert "FLOPs at 40% of that peak (--utilization)" in out and "GLUE_HUB" in out
    assert not (tmp_path / "none").exists()  # a plan writes nothing


def test_dry_run_is_the_plan_and_prices_asha(ten_words, tmp_path, capsys):
    argv = ["--sizes", "17m", "--arch", "encoder", "--tasks", "sst2", "--data-dir", ten_words, "--lr", "1e-5,3e-5",
            "--weight-decay", "1e-6", "--batch-size", "2", "--epochs", "1,2", "--output-path", tmp_path / "out"]
    assert run_cli("run", "--dry-run", *argv) == 0
    dry = capsys.readouterr().out
    assert run_cli("plan", *argv) == 0
    assert capsys.readouterr().out == dry and "= 4 cells" in dry and not (tmp_path / "out").exists()
    assert run_cli("plan", *argv, "--search", "asha", "--gpu", "l4", "--utilization", "0.3") == 0
    out = capsys.readouterr().out
    assert "reduction factor 4, rungs at 1/16, 1/4, 1 of each configuration's steps): about 16%" in out
    assert "NVIDIA L4, bf16 dense peak 121 TFLOP/s" in out and "FLOPs at 30% of that peak" in out
    assert "run one trial at a time, where the first trials to reach a rung always go on: about" in out
    assert "(4 configurations per experiment;" in out


def test_the_simulated_asha_share_follows_tunes_bracket():
    """Two trials, rungs at 1/4 and 1, one at a time: the first always completes; the second goes on
    past 1/4 when its random score beats the first's (probability 1/2): (1 + 1/2 + 1/8) / 2."""
    from dataclasses import dataclass

    from harness.search import AshaSettings
    from harness.search.estimate import simulated_share

    @dataclass(frozen=True)
    class Config:
        epochs: int
        lr: float

    @dataclass(frozen=True)
    class Task:
        name: str

    @dataclass(frozen=True)
    class Cell:
        model: str
        task: Task
        data: str
        protocol_key: str
        config: Config
        seed: int

    def cells(configs: int, seeds: int = 1, epochs=(1,)):
        return [Cell("m", Task("t"), "d", "p", Config(e, lr), s)
                for e in epochs for lr in range(configs) for s in range(seeds)]

    share, sizes = simulated_share(cells(2, seeds=3), AshaSettings(4, 2), repeats=4000)
    assert sizes == [2] and share == pytest.approx(0.8125, abs=0.01)
    # more configurations per experiment: the free pass weighs less, towards the synchronous share
    shares = [simulated_share(cells(n, epochs=(1, 2, 3, 4)), AshaSettings(4, 3))[0] for n in (2, 10, 40)]
    assert shares[0] > shares[1] > shares[2] > AshaSettings(4, 3).nominal_fraction()


@pytest.mark.parametrize("flags,message", [(["--gpu", "tpu"], "unknown --gpu 'tpu'"),
                                           (["--utilization", "1.5"], "--utilization must be above 0"),
                                           (["--search", "random"], "unknown --search 'random'")])
def test_bad_plan_flags_are_one_line(flags, message, tmp_path, capsys):
    code = run_cli("plan", "--sizes", "17m", "--tasks", "sst2", "--output-path", tmp_path, *flags)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
