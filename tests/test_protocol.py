"""The fine-tuning protocol held to its sources: DecoupledAdamW's weight decay, which weights
decay, the warmup rounding, each architecture's input template and pooled position, the decoder's
pretrained head, the samples a reviewer reads, bad data that must never become a number."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from harness.adapters import finetune, inputs
from harness.configs import FinetuneConfig
from harness.models import ModelSpec, resolve
from harness.results import ResultStore
from harness.runner import Runner, pad_batch


class Toy(torch.nn.Module):
    """Parameters of every kind the filter must tell apart, named as transformers names them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Embedding(11, 4)
        self.dense = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.classifier = torch.nn.Linear(4, 2)


def decoupled_adamw_reference(params: dict, grads: list[dict], lrs: list[float], lr_peak: float, wd: float,
                              betas=(0.9, 0.98), eps=1e-6) -> dict:
    """Composer's DecoupledAdamW written out (composer/optim/decoupled_weight_decay.py): decay by
    wd * lr_t / lr_peak first, then the bias-corrected Adam step with eps outside the square root."""
    p = {k: v.clone().double() for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for step, (grad, lr) in enumerate(zip(grads, lrs), start=1):
        for k in p:
            g = grad[k].double()
            if p[k].ndim > 1 and not k.endswith(".bias"):
                p[k] = p[k] * (1 - wd * lr / lr_peak)
            m[k] = betas[0] * m[k] + (1 - betas[0]) * g
            v2[k] = betas[1] * v2[k] + (1 - betas[1]) * g * g
            denom = (v2[k] / (1 - betas[1] ** step)).sqrt() + eps
            p[k] = p[k] - lr / (1 - betas[0] ** step) * m[k] / denom
    return p


def test_the_optimizer_is_decoupled_adamw_to_1e_6():
    model = Toy()
    config = FinetuneConfig(lr=1e-3, weight_decay=1e-2, batch_size=8, epochs=1)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = finetune.optimizer_for(model, config)
    steps = 6
    scheduler = finetune.schedule_for(optimizer, steps, finetune.warmup_steps(steps, 0.5))
    gen = torch.Generator().manual_seed(1)
    grads, lrs = [], []
    for _ in range(steps):
        grad = {k: torch.randn(v.shape, generator=gen) for k, v in model.named_parameters()}
        lrs.append(optimizer.param_groups[0]["lr"])
        for k, p in model.named_parameters():
            p.grad = grad[k].clone()
        optimizer.step()
        scheduler.step()
        grads.append(grad)
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-3)  # warmup from 0 to the peak, then decay
    expected = decoupled_adamw_reference(start, grads, lrs, 1e-3, 1e-2)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach().double(), expected[k], atol=1e-6, rtol=0)


def test_weight_decay_multiplies_by_one_minus_wd_at_the_peak_learning_rate():
    """The paper grid's weight decays (1e-6 .. 1e-5) shrink a weight by that fraction per step at
    the peak lr; torch's plain lr * wd would shrink it by ~1e-10, i.e. not at all."""
    model = Toy()
    config = FinetuneConfig(lr=5e-5, weight_decay=1e-5, batch_size=8, epochs=1)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = finetune.optimizer_for(model, config)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    decayed = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    assert decayed == {"embeddings.weight", "dense.weight", "classifier.weight"}  # no biases, no norm weights
    for k in decayed:
        torch.testing.assert_close(dict(model.named_parameters())[k].detach(), before[k] * (1 - 1e-5),
                                   atol=1e-9, rtol=0)


def test_warmup_rounds_down_as_composer_does():
    assert finetune.warmup_steps(63, 0.06) == 3 and finetune.warmup_steps(10, 0.06) == 0


def test_decay_filter_on_a_real_classification_model(tiny_pair):
    runner = Runner("cpu")
    loaded = runner.load(resolve(tiny_pair["encoder"]), "sequence-classification", num_labels=2, training=True)
    names = dict(loaded.model.named_parameters())
    groups = finetune.optimizer_for(loaded.model, FinetuneConfig(lr=1e-4, weight_decay=1e-5, batch_size=8,
                                                                 epochs=1)).param_groups
    decayed = {n for n, p in names.items() if any(p is q for q in groups[0]["params"])}
    assert groups[0]["weight_decay"] == pytest.approx(1e-5 / 1e-4) and groups[1]["weight_decay"] == 0
    assert "model.embeddings.tok_embeddings.weight" in decayed and "classifier.weight" in decayed
    assert not any("norm" in n or n.endswith(".bias") for n in decayed)
    assert len(decayed) + len(groups[1]["params"]) == len(names)


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_input_templates(tiny_pair, arch):
    tok = Runner("cpu").tokenizer(resolve(tiny_pair[arch]))
    pair = inputs.encode(tok, arch, [["the cat is red"], ["the dog"]], 64)[0]
    single = inputs.encode(tok, arch, [["the cat is red"]], 64)[0]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    a = tok("the cat is red", add_special_tokens=False)["input_ids"]
    b = tok("the dog", add_special_tokens=False)["input_ids"]
    # Ettin's tokenizer makes both architectures read [CLS] a [SEP] b [SEP]
    assert pair == [cls, *a, sep, *b, sep] and single == [cls, *a, sep]
    if arch == "encoder":
        assert pair == tok("the cat is red", "the dog")["input_ids"]  # the tokenizer's own template
    fmt = inputs.describe(tok, arch, True, True, ("head.dense.weight",))
    assert fmt.template == "[CLS] a [SEP] b [SEP]"
    assert fmt.pooled.startswith("first token") if arch == "encoder" else fmt.pooled.startswith("last token")
    # truncation is longest-first and never drops the special tokens
    long = inputs.encode(tok, arch, [["one two three four five six seven eight nine ten " * 4], ["the dog"]], 16)[0]
    assert len(long) == 16 and long[0] == cls and long[-1] == sep and long.count(sep) == 2


def test_the_decoder_pools_at_the_appended_end_token(tiny_pair):
    runner = Runner("cpu")
    loaded = runner.load(resolve(tiny_pair["decoder"]), "sequence-classification", num_labels=3, training=True)
    model = runner.fresh(loaded, seed=0).eval()
    tok = loaded.tokenizer
    assert tok.pad_token_id != tok.eos_token_id  # else the rightmost non-pad token would not be the end token
    seqs = inputs.encode(tok, "decoder", [["a red cat", "the dog is very big"], ["a cat", "the dog"]], 64)
    batch = pad_batch(seqs, tok.pad_token_id)
    with torch.no_grad():
        logits = runner.forward_logits(model, batch)
        hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             position_ids=batch["position_ids"]).last_hidden_state
        for row, seq in enumerate(seqs):
            at_end = model.classifier(model.head(hidden[row, len(seq) - 1]))
            before = model.classifier(model.head(hidden[row, len(seq) - 2]))
            torch.testing.assert_close(logits[row], at_end, atol=1e-5, rtol=0)
            assert not torch.allclose(logits[row], before, atol=1e-4)


def test_the_decoder_head_starts_from_the_pretrained_lm_head(tiny_pair):
    from pathlib import Path

    from safetensors.torch import load_file

    checkpoint = load_file(str(Path(tiny_pair["decoder"]) / "model.safetensors"))
    runner = Runner("cpu")
    spec = resolve(tiny_pair["decoder"])
    loaded = runner.load(spec, "sequence-classification", num_labels=2, training=True)
    model = runner.fresh(loaded, seed=0)
    for part in ("dense.weight", "norm.weight"):
        assert torch.equal(model.state_dict()[f"head.{part}"], checkpoint[f"lm_head.{part}"]), part
    assert not any(k.startswith("head.") for k in loaded.new_keys)
    assert "classifier.weight" in loaded.new_keys and set(loaded.new_keys) <= {"classifier.weight", "classifier.bias"}
    fresh = runner.load(spec, "sequence-classification", num_labels=2, training=True, pretrained_head=False)
    assert "head.dense.weight" in fresh.new_keys
    assert not torch.equal(runner.fresh(fresh, seed=0).head.dense.weight, checkpoint["lm_head.dense.weight"])


def test_a_missing_primary_id_loads_an_alias_and_says_which(tiny_pair):
    spec = ModelSpec(model_id="jhu-clsp/not-on-this-machine", architecture="encoder", name="aliased",
                     aliases=(tiny_pair["encoder"],))
    loaded = Runner("cpu").load(spec, "masked-lm")
    assert loaded.loaded_id == tiny_pair["encoder"]


@pytest.fixture(scope="module")
def recorded(tiny_pair, demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("recorded")
    assert run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--tasks", "sst2,stsb",
                   "--data-dir", demo_data, "--lr", "1e-3", "--epochs", "1", "--limit", "24", "--output-path", out,
                   "--quiet", "--pair", "tiny-pair") == 0
    return ResultStore(out)


def test_samples_show_what_the_model_saw_and_said(recorded):
    for record in recorded.records():
        rows = recorded.read_samples(record)
        assert rows and all(r["input"].startswith("[CLS]") and r["input"].endswith("[SEP]") for r in rows)
        for r in rows:
            if record["task"] == "stsb":
                assert r["score"] == r["pred"] and isinstance(r["score"], float)
            else:
                assert math.isclose(sum(r["probs"]), 1.0, abs_tol=1e-4)
                assert r["pred"] == max(range(len(r["probs"])), key=r["probs"].__getitem__)


def test_records_carry_the_protocol_behind_their_number(recorded):
    for record in recorded.records():
        protocol = record["protocol"]
        no_mnli = ", no MNLI warm start" if record["task"] == "stsb" else ""  # MNLI is not in this run
        assert protocol["label"] == f"custom grid{no_mnli}, limit 24, local data" and protocol["version"] >= 2
        assert protocol["recipe"]["optimizer"] == "decoupled_adamw" and protocol["recipe"]["max_grad_norm"] is None
        fmt = record["input_format"]
        assert fmt["template"] == "[CLS] a [SEP] b [SEP]" if record["task"] == "stsb" else "[CLS] a [SEP]"
        if record["architecture"] == "decoder":
            assert fmt["head_init"].startswith("pretrained LM head") and fmt["pooled"].startswith("last token")
        else:
            assert fmt["classifier_pooling"] == "cls"
        assert record["pair"] == "tiny-pair" and record["train_tokens"] > 0 and record["peak_fraction"] > 0
    params = {r["parameters"] for r in recorded.records() if r["architecture"] == "encoder"}
    assert len(params) == 1  # one count per model, whatever the head


BAD_DATA = [
    ("validation", {"sentence": "a fine film", "label": 7}, "label 7 is not one of the classes 0..1 of task 'sst2'"),
    ("validation", {"sentence": "a fine film", "label": -1}, "-1 marks an unlabelled test split"),
    ("train", {"sentence": None, "label": 1}, "column 'sentence' is empty"),
]


def write_split(folder, task, split, rows, raw: bytes | None = None):
    path = folder / task / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def good_rows(n=8):
    return [{"sentence": f"film number {i}", "label": i % 2} for i in range(n)]


def run_bad(tiny_pair, folder, out, task="sst2"):
    return run_cli("run", "--model", tiny_pair["encoder"], "--tasks", task, "--data-dir", folder, "--lr", "1e-3",
                   "--epochs", "1", "--output-path", out, "--quiet")


@pytest.mark.parametrize("split,bad,message", BAD_DATA)
def test_bad_labels_and_texts_stop_with_one_line_naming_file_and_row(split, bad, message, tiny_pair, tmp_path, capsys):
    rows = {"train": good_rows(), "validation": good_rows(4)}
    rows[split] = rows[split][:2] + [bad] + rows[split][2:]
    for name, content in rows.items():
        write_split(tmp_path / "data", "sst2", name, content)
    assert run_bad(tiny_pair, tmp_path / "data", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert f"sst2/{split}.jsonl row 3" in err
    assert not list((tmp_path / "out").glob("records/*.json"))


def test_nan_or_text_regression_labels_empty_splits_and_latin1_bytes_stop(tiny_pair, tmp_path, capsys):
    pairs = [{"sentence1": "a cat", "sentence2": "a dog", "label": 2.5}] * 4
    cases = {
        "nan": ("stsb", {"train": pairs, "validation": pairs[:2] + [{**pairs[0], "label": float("nan")}]},
                "stsb/validation.jsonl row 3: label nan is not a finite number"),
        "text": ("stsb", {"train": pairs + [{**pairs[0], "label": "high"}], "validation": pairs},
                 "stsb/train.jsonl row 5: label 'high' is not a finite number"),
        "empty": ("sst2", {"train": good_rows(), "validation": []}, "sst2/validation.jsonl holds no rows"),
    }
    for name, (task, splits, message) in cases.items():
        folder = tmp_path / name
        for split, rows in splits.items():
            write_split(folder, task, split, rows)  # json.dumps writes NaN for a float nan
        assert run_bad(tiny_pair, folder, tmp_path / f"out-{name}", task) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
    folder = tmp_path / "latin1"
    write_split(folder, "sst2", "train", good_rows())
    raw = ("".join(json.dumps(r) + "\n" for r in good_rows(3)) + '{"sentence": "caf\xe9", "label": 1}\n')
    write_split(folder, "sst2", "validation", None, raw=raw.encode("latin-1"))
    assert run_bad(tiny_pair, folder, tmp_path / "out-latin1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "validation.jsonl (line 4) is not UTF-8 text" in err



def test_a_broken_json_line_is_named_in_one_line(tiny_pair, tmp_path, capsys):
    """datasets logs a parse error before raising a generic one: the user sees one line with the line number."""
    for name, bad, message in (("syntax", '{"sentence": "oops"', "validation.jsonl line 3 is not valid JSON"),
                               ("array", "[1, 2]", "validation.jsonl line 3 is not a JSON object")):
        folder = tmp_path / name
        write_split(folder, "sst2", "train", good_rows())
        raw = "".join(json.dumps(r) + "\n" for r in good_rows(2)) + bad + "\n"
        write_split(folder, "sst2", "validation", None, raw=raw.encode())
        assert run_bad(tiny_pair, folder, tmp_path / f"out-{name}") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not any((tmp_path / f"out-{name}" / "records").glob("*.json"))  # nothing written

def test_a_named_pair_is_one_row_with_its_gap(recorded):
    from harness.report import build_report

    table = build_report([recorded.root], n_boot=0).table
    assert list(table.index) == ["tiny-pair"]
    assert table[("sst2", "gap")].notna().all() and table[("stsb", "gap")].notna().all()


def test_a_bos_only_decoder_tokenizer_still_gets_separator_and_end_token(tiny_pair):
    """The real Ettin decoder tokenizer adds [CLS] and no [SEP] (transformers issue 35946): its own
    pair encoding runs the segments together; the harness's template does not."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_pair["decoder"])
    cls, sep = tok.cls_token_id, tok.sep_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", pair="[CLS] $A $B:1",
                                                                  special_tokens=[("[CLS]", cls)])
    a = tok("the cat", add_special_tokens=False)["input_ids"]
    b = tok("a dog", add_special_tokens=False)["input_ids"]
    assert tok("the cat", "a dog")["input_ids"] == [cls, *a, *b]  # what the tokenizer alone gives
    assert inputs.encode(tok, "decoder", [["the cat"], ["a dog"]], 64) == [[cls, *a, sep, *b, sep]]
    assert inputs.encode(tok, "decoder", [["the cat"]], 64) == [[cls, *a, sep]]
