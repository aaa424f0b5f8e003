"""From documents to a stream of fixed-length token blocks on disk: documents cut into bounded chunks (long ones in
pieces), tokenized in order in worker processes (tokenize_worker.py), and appended block by block to a raw array
file. token_store.py decides what is written where; this module only moves tokens."""

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError
from .documents import split_document


CHUNK_DOCUMENTS = 256  # documents per tokenizer call (and per task sent to a worker)
CHUNK_CHARS = 1 << 20  # ... and at most about this many characters (long documents come in pieces)


class TextTokens:
    """Passes token arrays through, counting the tokens that are not EOS (a corpus of empty documents has none)."""

    def __init__(self, stream: Iterator[np.ndarray], tokenizer):
        self.stream, self.eos, self.count = stream, tokenizer.eos_token_id, 0

    def __iter__(self):
        for tokens in self.stream:
            self.count += int(np.count_nonzero(tokens != self.eos))
            yield tokens


class TokenEstimate:
    """Passes the documents through, counting their characters, to estimate the total tokens of uncompressed local
    files from their size (tokens so far x bytes on disk / characters read): the progress bar's ETA. Compressed
    files and streamed Hub datasets have no size to go by: no estimate."""

    def __init__(self, documents: Iterator[str], source: str):
        import glob

        files = glob.glob(source)
        plain = files and not any(f.endswith((".gz", ".bz2", ".zst", ".xz")) for f in files)
        self.bytes = sum(os.path.getsize(f) for f in files if os.path.isfile(f)) if plain else 0
        self.documents, self.chars = documents, 0

    def __iter__(self):
        for document in self.documents:
            self.chars += len(document) + 1
            yield document

    def total(self, tokens: int) -> int | None:
        return int(tokens * self.bytes / self.chars) if self.bytes and self.chars else None


def write_blocks(
    stream: Iterator[np.ndarray], file: Path, seq_len: int, dtype, max_blocks: int | None, bar, estimate=None
) -> int:
    """Cut a stream of token arrays into blocks of `seq_len` and append them to `file` (the tail shorter than a block
    is dropped); stops after `max_blocks`. Returns the number of blocks written. `estimate` (a `TokenEstimate`) keeps
    the bar's total, hence its ETA, up to date when the total is not known in advance."""
    written, pending = 0, np.empty(0, dtype=np.int64)
    with open(file, "wb") as handle:
        for tokens in stream:
            pending = np.concatenate([pending, tokens])
            full = len(pending) // seq_len
            if max_blocks is not None:
                full = min(full, max_blocks - written)
            pending[: full * seq_len].astype(dtype).tofile(handle)
            pending, written = pending[full * seq_len :], written + full
            bar.update(full * seq_len)
            total = estimate.total(bar.n) if estimate is not None else None
            if total:
                bar.total = max(total, bar.n)
            if max_blocks is not None and written >= max_blocks:
                break
    if written == 0:
        raise DataError(f"data: the corpus holds {len(pending)} tokens, less than one block of seq_len={seq_len}.")
    return written


def encode(documents: Iterator[str], tokenizer_dir: Path, num_proc: int = 1) -> Iterator[np.ndarray]:
    """Token ids of the documents, each followed by EOS, one array per chunk of documents, in document order.
    With `num_proc > 1` chunks are tokenized in worker processes (tokenize_worker.py), a bounded number in flight."""
    from . import tokenize_worker

    eos = _eos_token_id(tokenizer_dir)
    chunks = _chunks(documents)
    if num_proc <= 1:
        tokenize_worker.load(tokenizer_dir, eos)
        yield from (tokenize_worker.encode_chunk(*chunk) for chunk in chunks)
        return
    import multiprocessing

    init = (str(tokenizer_dir), eos, True)
    with multiprocessing.get_context("spawn").Pool(num_proc, tokenize_worker.load, init) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(tokenize_worker.encode_chunk, chunk))
            if len(pending) >= 4 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _eos_token_id(tokenizer_dir: Path) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir).eos_token_id


def _chunks(documents: Iterator[str]) -> Iterator[tuple[list[str], list[bool]]]:
    """`(texts, ends)` of up to CHUNK_DOCUMENTS texts and about CHUNK_CHARS characters: long documents come in pieces
    (`data.split_document`), and `ends[i]` says whether text i ends its document (EOS follows it)."""
    texts, ends, chars = [], [], 0
    for document in documents:
        pieces = split_document(document)
        for k, piece in enumerate(pieces):
            texts.append(piece)
            ends.append(k == len(pieces) - 1)
            chars += len(piece)
            if len(texts) == CHUNK_DOCUMENTS or chars >= CHUNK_CHARS:
                yield texts, ends
                texts, ends, chars = [], [], 0
    if texts:
        yield texts, ends


__all__ = ["CHUNK_CHARS", "CHUNK_DOCUMENTS", "TextTokens", "TokenEstimate", "encode", "write_blocks"]
