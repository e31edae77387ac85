"""What each architecture sees and where its classification head reads: the input templates.

- encoder: the tokenizer's own template, ``[CLS] a [SEP] b [SEP]`` (ModernBERT's GLUE code calls
  ``tokenizer(text, text_pair, truncation=True)``); the head pools the first token ([CLS]) as
  FlexBERT's GLUE head does (``pooling_type`` default "cls").
- decoder: one BOS, the separator between the segments and an end token appended, ``[CLS] a [SEP]
  b [SEP]`` with Ettin's tokenizer (the Ettin GLUE runs used one tokenizer and template for both
  architectures); the head pools the last real token, the appended end token, which has read the
  whole input (bert24's ``FlexGPTForSequenceClassification``: ``attention_mask.sum(dim=1) - 1``).
Truncation is longest-first over the segments and never drops a special token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Encoders of these model types get their pooling set explicitly (the checkpoint's config may say otherwise).
ENCODER_POOLING = {"modernbert": {"classifier_pooling": "cls"}}


@dataclass(frozen=True)
class InputFormat:
    architecture: str
    template: str  # with the tokenizer's own special tokens, e.g. "[CLS] a [SEP] b [SEP]"
    pooled: str  # the position the classification head reads
    head_init: str  # where the classification head's weights come from

    def to_dict(self) -> dict:
        return asdict(self)


def special_ids(tok) -> tuple[int, int, int]:
    """(BOS, separator, end) ids a decoder's classification input is built from."""
    end = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    bos = tok.bos_token_id if tok.bos_token_id is not None else (tok.cls_token_id if tok.cls_token_id is not None else end)
    sep = tok.sep_token_id if tok.sep_token_id is not None else end
    if end is None:
        raise ValueError("the tokenizer has no end token (eos or sep) for a decoder's classification input")
    return bos, sep, end


def describe(tok, architecture: str, pairs: bool, pretrained_head: bool, head_from: tuple = ()) -> InputFormat:
    if architecture == "encoder":
        sample = tok("a", "b") if pairs else tok("a")
        words = tok.convert_ids_to_tokens(sample["input_ids"])
        template = " ".join("a" if w in ("a", "Ġa", "▁a") else "b" if w in ("b", "Ġb", "▁b") else w for w in words)
        return InputFormat("encoder", template, "first token (classifier_pooling cls)",
                           "pretrained MLM head (head.*), new classifier")
    bos, sep, end = (tok.convert_ids_to_tokens(i) for i in special_ids(tok))
    template = f"{bos} a {sep} b {end}" if pairs else f"{bos} a {end}"
    head = ("pretrained LM head (lm_head.dense/norm -> head.dense/norm), new classifier"
            if pretrained_head and head_from else "new head and classifier (seeded initialiser)")
    return InputFormat("decoder", template, f"last token (the appended {end})", head)


def _truncate(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Longest-first truncation of one or two segments to ``budget`` tokens in all (as the
    tokenizers' ``truncation='longest_first'``: the longer loses a token, the second on a tie)."""
    if b is None:
        return a[:max(budget, 0)], None
    a, b = list(a), list(b)
    while len(a) + len(b) > budget and (a or b):
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def encode(tok, architecture: str, columns: list[list[str]], max_length: int) -> list[list[int]]:
    """Token ids of every row (one or two text columns) in ``architecture``'s template."""
    if architecture == "encoder":
        return tok(*columns, truncation=True, max_length=max_length)["input_ids"]
    bos, sep, end = special_ids(tok)
    parts = [tok(col, add_special_tokens=False)["input_ids"] for col in columns]
    rows = []
    for i in range(len(columns[0])):
        if len(parts) == 1:
            a, _ = _truncate(parts[0][i], None, max_length - 2)
            rows.append([bos, *a, end])
        else:
            a, b = _truncate(parts[0][i], parts[1][i], max_length - 3)
            rows.append([bos, *a, sep, *b, end])
    return rows
