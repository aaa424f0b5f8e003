"""Token blocks as training reads them: `BlockWindow` (the blocks one stage reads, in order, wrapping around the
corpus), id checks against the vocabulary in bounded slices, and `pack` (held-out text packed into blocks in memory,
for a consistency set; the training corpus is packed on disk by token_store.py)."""

import bisect
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from ..errors import DataError
from .documents import iter_texts
from .spec import DataSpec


def pack(texts: Iterator[str], tokenizer, seq_len: int, max_blocks: int | None = None) -> torch.Tensor:
    """Tokenize documents, join them with EOS, and cut the stream into `(n_blocks, seq_len)` int64 blocks (the tail
    shorter than a block is dropped); stops reading once `max_blocks` blocks are full."""
    ids: list[int] = []
    limit = None if max_blocks is None else max_blocks * seq_len
    for batch in iter(lambda: list(itertools.islice(texts, 256)), []):
        for encoded in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            ids.extend(encoded)
            ids.append(tokenizer.eos_token_id)
        if limit is not None and len(ids) >= limit:
            break
    n_blocks = len(ids) // seq_len if limit is None else min(len(ids) // seq_len, max_blocks)
    if n_blocks == 0:
        raise DataError(f"data: the corpus holds {len(ids)} tokens, less than one block of seq_len={seq_len}.")
    return torch.tensor(ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)


def held_out_blocks(tokenizer_dir: Path, source: str, seq_len: int, max_blocks: int) -> torch.Tensor:
    """Up to `max_blocks` blocks of `seq_len` tokens from held-out text file(s) `source` (txt/jsonl/parquet, globs),
    tokenized with the tokenizer saved in `tokenizer_dir`."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return pack(iter_texts(DataSpec(validation=source), "validation"), tokenizer, seq_len, max_blocks)


class BlockWindow(torch.utils.data.Dataset):
    """The blocks one stage reads, in order: `window` is in blocks of `blocks` (a tensor, or a token store's memmap:
    only the rows read are touched); past the end of the corpus it wraps around (`epochs` says how many passes)."""

    def __init__(self, blocks, window):
        self.blocks, self.spans = blocks, window.spans()
        self.offsets = list(itertools.accumulate(end - begin for begin, end in self.spans))

    @property
    def epochs(self) -> float:
        """Passes over the corpus up to this window's furthest block (> 1 means the data repeats)."""
        return max(end for _, end in self.spans) / len(self.blocks)

    def __len__(self) -> int:
        return self.offsets[-1]

    def block_index(self, i: int) -> int:
        """Stream position of item `i` (before wrapping around the corpus)."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        span = bisect.bisect_right(self.offsets, i)
        return self.spans[span][0] + i - (self.offsets[span - 1] if span else 0)

    def rows(self) -> list[tuple[int, int]]:
        """The row ranges of `blocks` this window reads (wrapping around the corpus), merged."""
        n, ranges = len(self.blocks), []
        for begin, end in self.spans:
            if end - begin >= n:
                return [(0, n)]
            first, last = begin % n, (end - 1) % n + 1
            ranges += [(first, last)] if first < last else [(first, n), (0, last)]
        return ranges

    def check_ids(self, vocab_size: int, where) -> None:
        """Refuse, in one line, a window holding a token id without an embedding row (a damaged store, or one made
        for another tokenizer), before training reads it. Scanned in slices: memory stays bounded by the slice."""
        check_ids(self.blocks, vocab_size, where, self.rows())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = as_ids(self.blocks[self.block_index(i) % len(self.blocks)])
        return {"input_ids": block, "labels": block}


SCAN_TOKENS = 1 << 25  # tokens per slice when scanning a store for out-of-range ids (64 MB of uint16)


def check_ids(blocks, vocab_size: int, where, ranges: list[tuple[int, int]] | None = None) -> None:
    """`DataError` naming the first block of `blocks` (rows `ranges`, default all) holding an id >= `vocab_size`."""
    step = max(1, SCAN_TOKENS // max(1, blocks.shape[-1]))
    for begin, end in ranges or [(0, len(blocks))]:
        for start in range(begin, end, step):
            part = as_ids(blocks[start : min(end, start + step)])
            if len(part) and int(part.max()) >= vocab_size:
                row = start + int((part >= vocab_size).any(dim=1).nonzero()[0])
                raise DataError(
                    f"{where}: block {row} holds token id {int(part.max())} but vocab_size={vocab_size}; the store is "
                    "damaged or was made for another tokenizer: prepare it again."
                )


def as_ids(blocks) -> torch.Tensor:
    """Token-id blocks (a tensor, or rows of a memory-mapped uint16/uint32 store) as an int64 tensor."""
    return blocks.long() if torch.is_tensor(blocks) else torch.from_numpy(np.asarray(blocks, dtype=np.int64))


__all__ = ["BlockWindow", "as_ids", "check_ids", "held_out_blocks", "pack"]
