"""Prefix-tree rows: requests whose inputs share a prefix (a context and its choices, two
WinoGrande sentences that differ late, two PIQA solutions that start alike) packed into ONE row
holding their prefix tree, each token once, depth-first, with an attention mask that lets every
token see its ancestors only; so a shared prefix is encoded once and the LM head runs once per
distinct read position. A row grows only while that is cheaper than scoring the new sequence in a
row of its own (attention over a row costs width squared), which also caps its width."""

from __future__ import annotations

import os

import torch

# Prefix-tree rows: a row of width W costs about W + W*W/ATTENTION_SPAN token-forwards (the
# attention of every token over the whole row, whatever the mask lets through; measured on CPU
# with the Ettin-17m shape), and no row grows past MAX_TREE_WIDTH tokens.
ATTENTION_SPAN = 460
MAX_TREE_WIDTH = 1024

class TreeRow:
    """One packed row: the prefix tree of its members' inputs, depth-first.

    ``tokens[i]`` sits at ``positions[i]`` (its depth: the position it has in its own sequence)
    and its subtree spans the indices ``i .. ends[i]-1``; ``paths[m]`` lists the node of each
    input token of member ``members[m]``.
    """

    def __init__(self):
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.ends: list[int] = []
        self.members: list[int] = []
        self.paths: list[list[int]] = []

    def add(self, member: int, seq: tuple, shared: int) -> None:
        """Add ``seq``, whose first ``shared`` tokens are those of the last sequence added."""
        last = self.paths[-1] if self.paths else []
        width = len(self.tokens)
        for node in last[shared:]:  # the last sequence's nodes below the split: their subtrees end here
            self.ends[node] = width
        self.tokens += seq[shared:]
        self.positions += range(shared, len(seq))
        self.ends += [0] * (len(seq) - shared)  # set when the subtree closes
        self.members.append(member)
        self.paths.append(last[:shared] + list(range(width, len(self.tokens))))

    def close(self) -> None:
        for node in self.paths[-1] if self.paths else []:
            self.ends[node] = len(self.tokens)


def _row_cost(width: int) -> float:
    return width + width * width / ATTENTION_SPAN


def pack_rows(seqs: list[tuple], share: bool = True, max_width: int = MAX_TREE_WIDTH) -> list[TreeRow]:
    """Pack sequences into prefix-tree rows; ``TreeRow.members`` index ``seqs``.

    In sorted order a sequence shares the most with the one before it, and appending what it does
    not share keeps the row depth-first. It joins the current row while that costs less than a row
    of its own (``_row_cost``) and keeps the row within ``max_width``; without ``share`` only a
    repeated sequence joins (its reads come from the same forward pass).
    """
    rows: list[TreeRow] = []
    row, last = None, ()
    for i in sorted(range(len(seqs)), key=seqs.__getitem__):
        seq = seqs[i]
        shared = len(os.path.commonprefix([last, seq])) if row is not None else 0
        width, new = (len(row.tokens) if row is not None else 0), len(seq) - shared
        join = row is not None and (shared == len(seq) or share and width + new <= max_width
                                    and _row_cost(width + new) - _row_cost(width) < _row_cost(len(seq)))
        if not join:
            if row is not None:
                row.close()
            row, shared = TreeRow(), 0
            rows.append(row)
        row.add(i, seq, shared)
        last = seq
    if row is not None:
        row.close()
    return rows


def tree_inputs(rows: list[TreeRow], pad_id: int, config, device, dtype) -> dict:
    """Right-padded tree rows with one additive 4-D mask per attention layer type: a token sees
    itself and its ancestors, i.e. the nodes k <= q whose subtree (k up to ends[k]) holds q."""
    width = max(len(r.tokens) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    ends = torch.arange(1, width + 1).repeat(len(rows), 1)  # padding: a subtree of itself alone
    for b, r in enumerate(rows):
        n = len(r.tokens)
        ids[b, :n], pos[b, :n], ends[b, :n] = (torch.as_tensor(r.tokens), torch.as_tensor(r.positions),
                                                torch.as_tensor(r.ends))
    ids, pos, ends = ids.to(device), pos.to(device), ends.to(device)
    index = torch.arange(width, device=device)
    query, key = index[:, None], index[None, :]
    allowed = (key <= query) & (query < ends[:, None, :])  # (batch, query, key)
    masks = {}
    for layer_type in set(getattr(config, "layer_types", None) or ["full_attention"]):
        keep = allowed
        if layer_type == "sliding_attention":
            # the model's own rule (kv > q - window), on positions rather than packed indices
            keep = allowed & (pos[:, None, :] > pos[:, :, None] - config.sliding_window)
        mask = torch.zeros(keep.shape, dtype=dtype, device=device)
        masks[layer_type] = mask.masked_fill_(~keep, torch.finfo(dtype).min)[:, None]
    return {"input_ids": ids, "attention_mask": masks, "position_ids": pos}
