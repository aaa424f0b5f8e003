"""Tokenizing one chunk of documents into token ids, in the prepare-data worker processes. Kept free of torch and
transformers imports (numpy and the Rust `tokenizers` only), so each worker costs tens of MB, not a training stack."""

import os
from pathlib import Path

import numpy as np


_STATE: dict = {}  # per process: the tokenizer `load` read and its EOS id


def load(tokenizer_dir: str | os.PathLike, eos_token_id: int, worker: bool = False) -> None:
    """Load the tokenizer saved in `tokenizer_dir` for `encode_chunk` (its tokenizer.json when there is one: the same
    Rust tokenizer a fast HF tokenizer wraps; otherwise through transformers)."""
    if worker:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # in a worker, parallelism comes from the processes
    path = Path(tokenizer_dir) / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer

        rust = Tokenizer.from_file(str(path))
        _STATE["encode"] = lambda batch: [e.ids for e in rust.encode_batch(batch, add_special_tokens=False)]
    else:  # a slow (e.g. SentencePiece-only) tokenizer
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(tokenizer_dir)
        _STATE["encode"] = lambda batch: slow(batch, add_special_tokens=False)["input_ids"]
    _STATE["eos"] = eos_token_id


def encode_chunk(chunk: list[str], ends: list[bool] | None = None) -> np.ndarray:
    """The token ids of every text of `chunk`, each followed by EOS where `ends` says it ends a document (every one
    by default), as one int64 array."""
    ids = _STATE["encode"](chunk)
    ends = [True] * len(ids) if ends is None else ends
    out = np.empty(sum(len(i) for i in ids) + sum(ends), dtype=np.int64)
    position = 0
    for tokens, end in zip(ids, ends, strict=True):
        out[position : position + len(tokens)] = tokens
        position += len(tokens)
        if end:
            out[position] = _STATE["eos"]
            position += 1
    return out


__all__ = ["encode_chunk", "load"]
