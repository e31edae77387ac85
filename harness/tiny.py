"""Tiny local encoder/decoder pairs with the real ModernBERT classes and random weights.

They stand in for the Ettin models where the hub cannot be reached: the demo and the tests
use the ``tiny`` shape, the benchmarks the real Ettin-17m shape. Both members of a pair share
one tokenizer, trained here with ``tokenizers`` and carrying Ettin's (ModernBERT's) special
tokens and template: ``[CLS] a [SEP]`` and ``[CLS] a [SEP] b [SEP]``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from harness.demo_data import DEMO_DATA_DIR

SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "<|endoftext|>"]
SHAPES = {
    # layers, hidden, intermediate, heads, vocab
    "tiny": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=96, num_attention_heads=2, vocab_size=1024),
    "ettin-17m": dict(num_hidden_layers=7, hidden_size=256, intermediate_size=384, num_attention_heads=4,
                      vocab_size=50368),
}
TOKENIZER_VOCAB = {"tiny": 1024, "ettin-17m": 8192}
BUILD_VERSION = 1  # bump when what build_pair writes changes, so caches are rebuilt

EXTRA_TEXT = """The quick brown fox jumps over the lazy dog. A question is answered with a short answer.
Science studies the natural world; water boils at one hundred degrees. People go to the store to buy food.
She opened the door, looked outside and smiled because the sun was shining. What is the capital of France?
Paris is the capital of France. The man put the cup on the table and sat down to read a book."""


def corpus_texts(extra_dirs: list[Path] | None = None) -> list[str]:
    """Every string value in the shipped demo data (plus ``extra_dirs``), for tokenizer training."""
    texts = [EXTRA_TEXT]
    for root in [DEMO_DATA_DIR, *(extra_dirs or [])]:
        for path in sorted(Path(root).rglob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    texts.extend(_strings(json.loads(line)))
    return texts


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (every string encodes, as with Ettin's) with Ettin's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]", model_max_length=8192,
    )


def build_pair(out_dir: str | Path, shape: str = "tiny", seed: int = 0, extra_text_dirs: list[Path] | None = None,
               own_vocab: bool = False) -> dict:
    """Write ``encoder/`` (ModernBertForMaskedLM) and ``decoder/`` (ModernBertDecoderForCausalLM)
    under ``out_dir``, with random weights from ``seed`` and one shared local tokenizer.
    ``own_vocab``: embeddings sized to the local tokenizer rather than the shape's vocabulary (the
    body keeps the shape; a 50k-row softmax dominates training cost on a CPU)."""
    import torch
    from transformers import ModernBertConfig, ModernBertDecoderConfig, ModernBertDecoderForCausalLM, ModernBertForMaskedLM

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape}; known: {sorted(SHAPES)}")
    out = Path(out_dir)
    tokenizer = train_tokenizer(corpus_texts(extra_text_dirs), TOKENIZER_VOCAB[shape])
    dims = dict(SHAPES[shape])
    dims["vocab_size"] = len(tokenizer) if own_vocab else max(dims["vocab_size"], len(tokenizer))
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
               eos_token_id=tokenizer.sep_token_id, cls_token_id=tokenizer.cls_token_id,
               sep_token_id=tokenizer.sep_token_id)
    layers = dims["num_hidden_layers"]
    layer_types = ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(layers)]
    common = dict(dims, max_position_embeddings=1024, layer_types=layer_types, **ids)
    paths = {}
    for arch, config, cls in (
        ("encoder", ModernBertConfig(**common, local_attention=128, classifier_pooling="mean"), ModernBertForMaskedLM),
        ("decoder", ModernBertDecoderConfig(**common, local_attention=128), ModernBertDecoderForCausalLM),
    ):
        torch.manual_seed(seed)
        model = cls(config)
        path = out / arch
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[arch] = str(path)
    return paths


def cache_root() -> Path:
    base = os.environ.get("ETTIN_HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ettin-harness")
    return Path(base)


def tiny_pair(shape: str = "tiny", seed: int = 0, root: str | Path | None = None) -> dict:
    """The cached pair of ``shape`` (built on first use); returns ``{"encoder": path, "decoder": path}``."""
    import transformers

    target = Path(root or cache_root()) / f"{shape}-seed{seed}-v{BUILD_VERSION}-tf{transformers.__version__}"
    if not (target / "decoder" / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            build_pair(tmp, shape=shape, seed=seed)
            try:
                os.replace(tmp, target)  # another process may have won the race: keep theirs
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"encoder": str(target / "encoder"), "decoder": str(target / "decoder")}
