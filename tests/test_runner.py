import pytest
import torch

from harness.adapters import finetune, inputs
from harness.models import resolve
from harness.runner import Runner, length_batches, pad_batch


def test_length_batches_cover_every_row_within_budget():
    lengths = [5, 100, 7, 33, 33, 2, 64, 64, 64, 1, 250]
    batches = length_batches(lengths, budget=128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert width * len(b) <= 128 or len(b) == 1
    # longest first, so an out-of-memory error shows up in the first batch
    assert batches[0] == [10]


def test_length_batches_max_rows():
    batches = length_batches([3] * 10, budget=10_000, max_rows=4)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_pad_batch_left_and_right():
    right = pad_batch([[5, 6, 7], [8]], pad_id=0)
    left = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert left["position_ids"][1, 2].item() == 0 and right["position_ids"][0].tolist() == [0, 1, 2]


def test_out_of_memory_halves_the_budget_and_keeps_order():
    runner = Runner(device="cpu", token_budget=1024)
    lengths = [10, 200, 30, 120, 50, 80, 10, 5]
    seen = []

    def fn(idx):
        seen.append(len(idx))
        if max(lengths[i] for i in idx) * len(idx) > 256:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return [lengths[i] * 2 for i in idx]

    out = runner.map_batches(lengths, fn)
    assert out == [x * 2 for x in lengths]
    assert runner.token_budget == 256  # 1024 -> 512 -> 256, then kept for the process


def test_out_of_memory_on_a_single_minimal_row_is_raised():
    runner = Runner(device="cpu", token_budget=64)

    def fn(idx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner.map_batches([50], fn)


def test_other_errors_are_not_retried():
    runner = Runner(device="cpu", token_budget=64)
    with pytest.raises(ValueError):
        runner.map_batches([3, 4], lambda idx: (_ for _ in ()).throw(ValueError("bad row")))
    assert runner.token_budget == 64


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_fresh_resets_backbone_and_seeds_the_head(tiny_pair, arch):
    runner = Runner(device="cpu")
    loaded = runner.load(resolve(tiny_pair[arch]), "sequence-classification", num_labels=2, training=True)
    assert "classifier.weight" in loaded.new_keys
    model = runner.fresh(loaded, seed=0)
    head0 = model.classifier.weight.detach().clone()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if k not in loaded.new_keys}
    with torch.no_grad():  # a "training" step that changes everything
        for p in model.parameters():
            p.add_(1.0)
    model = runner.fresh(loaded, seed=1)
    assert not torch.equal(model.classifier.weight, head0)
    for k, v in model.state_dict().items():
        if k not in loaded.new_keys:
            assert torch.equal(v, backbone[k]), k
    model = runner.fresh(loaded, seed=0)
    assert torch.equal(model.classifier.weight, head0)
    # the same weights and head are not loaded twice in one process
    again = runner.load(resolve(tiny_pair[arch]), "sequence-classification", num_labels=2, training=True)
    assert again is loaded and runner.loads == 1


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_classification_logits_do_not_depend_on_padding(tiny_pair, arch):
    runner = Runner(device="cpu")
    loaded = runner.load(resolve(tiny_pair[arch]), "sequence-classification", num_labels=3, training=True)
    model = runner.fresh(loaded, seed=3).eval()
    tok = loaded.tokenizer
    assert model.config.pad_token_id == tok.pad_token_id
    texts = ["the film was good", "a very long and rather dull story about a cat and a dog", "fine"]
    seqs = inputs.encode(tok, arch, [texts], 64)
    with torch.no_grad():
        right = runner.forward_logits(model, pad_batch(seqs, tok.pad_token_id, "right"))
        left = runner.forward_logits(model, pad_batch(seqs, tok.pad_token_id, "left"))
        alone = torch.cat([runner.forward_logits(model, pad_batch([s], tok.pad_token_id)) for s in seqs])
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, right, atol=1e-5, rtol=0)
    # and the batched prediction path gives the same numbers, in input order
    torch.testing.assert_close(finetune.predict(runner, model, seqs, tok.pad_token_id), right, atol=1e-5, rtol=0)


def test_training_step_does_not_depend_on_micro_batching(tiny_pair):
    """A step split into token-budget micro-batches gives the update of one big batch."""
    import torch.nn.functional as F

    results = []
    for budget in (100_000, 40):
        runner = Runner(device="cpu", token_budget=budget)
        loaded = runner.load(resolve(tiny_pair["encoder"]), "sequence-classification", num_labels=2, training=True)
        model = runner.fresh(loaded, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        tok = loaded.tokenizer
        seqs = tok(["good film", "bad and dull film indeed", "great", "awful awful plot"])["input_ids"]
        labels = torch.tensor([1, 0, 1, 0])
        finetune.train_step(runner, model, opt, seqs, labels, tok.pad_token_id, F.cross_entropy)
        results.append(model.classifier.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_one_load_serves_every_label_count(tiny_pair, arch):
    """GLUE needs 2-way, 3-way and regression heads: the weights are read once."""
    runner = Runner(device="cpu")
    spec = resolve(tiny_pair[arch])
    seqs = [[1, 5, 6, 2], [1, 7, 2]]
    shapes = []
    for labels, problem in ((2, "single_label_classification"), (3, "single_label_classification"),
                            (1, "regression"), (2, "single_label_classification")):
        loaded = runner.load(spec, "sequence-classification", num_labels=labels, problem_type=problem, training=True)
        model = runner.fresh(loaded, seed=0)
        assert model.config.num_labels == labels and model.config.problem_type == problem
        shapes.append(tuple(finetune.predict(runner, model, seqs, loaded.tokenizer.pad_token_id).shape))
    assert shapes == [(2, 2), (2, 3), (2, 1), (2, 2)]
    assert runner.loads == 1


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_new_head_is_initialised_as_from_pretrained_does(tiny_pair, arch):
    """Each new module gets its model's own initialiser (e.g. the decoder's fresh prediction
    head its scaled std, not the generic 0.02), and only the label layer is task-specific."""
    from harness.runner import label_keys

    runner = Runner(device="cpu")
    loaded = runner.load(resolve(tiny_pair[arch]), "sequence-classification", num_labels=3, training=True,
                         pretrained_head=False)
    config = loaded.model.config
    model = runner.fresh(loaded, seed=0)
    final_std = config.hidden_size ** -0.5
    assert model.classifier.weight.std().item() == pytest.approx(final_std, rel=0.3)
    if arch == "decoder":  # without the pretrained LM head, its prediction head starts fresh
        out_std = config.initializer_range / (2.0 * config.num_hidden_layers) ** 0.5
        assert "head.dense.weight" in loaded.new_keys
        assert model.head.dense.weight.std().item() == pytest.approx(out_std, rel=0.3)
        assert torch.equal(model.head.norm.weight, torch.ones_like(model.head.norm.weight))
    assert set(label_keys(loaded)) == {k for k in loaded.new_keys if k.startswith("classifier.")}


def test_warm_start_carries_everything_but_the_label_layer(tiny_pair):
    from harness.adapters.classification import backbone_state

    runner = Runner(device="cpu")
    spec = resolve(tiny_pair["decoder"])
    loaded = runner.load(spec, "sequence-classification", num_labels=3, training=True)
    model = runner.fresh(loaded, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # stands in for fine-tuning on MNLI
    state = backbone_state(loaded)
    assert "classifier.weight" not in state and "head.dense.weight" in state
    loaded = runner.load(spec, "sequence-classification", num_labels=2, training=True)
    model = runner.fresh(loaded, seed=1, init_state=state)
    assert torch.equal(model.head.dense.weight, state["head.dense.weight"])
    assert model.classifier.weight.shape[0] == 2 and runner.loads == 1


def test_a_checkpoint_missing_backbone_weights_is_an_error_naming_them(tiny_pair, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from harness.errors import UserError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pair["encoder"], broken)
    (weights,) = broken.glob("*.safetensors")
    state = load_file(weights)
    lost = next(k for k in state if "layers.0" in k and k.endswith("weight"))
    del state[lost]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"lacks 1 weight.*layers\.0"):
        Runner(device="cpu").load(resolve(str(broken)), "sequence-classification", num_labels=2, training=True)
