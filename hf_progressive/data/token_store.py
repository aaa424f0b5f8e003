"""The token store: a corpus tokenized once into fixed-length blocks on disk, memory-mapped by every rank.

    STORE/
      manifest.json     what the store holds and how it was made (tokenizer hash, sources, seq_len, dtype, counts)
      tokenizer/        the tokenizer that made it
      train.bin         training blocks, row-major (n_blocks, seq_len), uint16 (vocabulary <= 65,536) or uint32
      validation.bin    validation blocks, same layout

Raw little-endian arrays read with `numpy.memmap` (nanoGPT / Megatron style): opening a window anywhere in the store
costs a page fault, not a load, and 2 bytes per token on disk (BENCHMARKS.md compares it with a `datasets` Arrow
store). `prepare_store` tokenizes in `num_proc` worker processes, in order, so the block stream is identical for any
`num_proc`; memory stays bounded by a few chunks of documents, whatever the corpus size. A store appears complete
(atomic rename) or not at all."""

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from ..errors import DataError
from ..expansion.checkpoint import atomic_output_dir, folder_hash
from ..utils.guard import check_replaceable, exclusive, only_entries, recipe_places
from ..utils.io import write_json
from .documents import training_documents, validation_documents
from .spec import HOLDOUT
from .token_stream import TextTokens, TokenEstimate, encode, write_blocks
from .tokenizer import get_tokenizer


logger = logging.get_logger(__name__)

FORMAT, FORMAT_VERSION = "hf_progressive-token-store", 1
MANIFEST, TOKENIZER_DIR, TRAIN_FILE, VALIDATION_FILE = "manifest.json", "tokenizer", "train.bin", "validation.bin"


def store_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits (vocabulary <= 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def store_request(recipe, max_tokens: int | None) -> dict:
    """What a store is made from: the part of the recipe that decides its blocks, and the token cap. Two requests
    that are equal give the same store."""
    data = {k: v for k, v in dataclasses.asdict(recipe.data).items() if k not in ("prepared",)}
    tokenizer = {**dataclasses.asdict(recipe.tokenizer), "vocab_size": recipe.vocab_size}
    return {"seq_len": recipe.seq_len, "tokenizer": tokenizer, "data": data, "max_tokens": max_tokens}


@dataclass
class TokenStore:
    """An opened store: `train` and `validation` are read-only memmaps of shape `(n_blocks, seq_len)`."""

    path: Path
    manifest: dict
    train: np.ndarray
    validation: np.ndarray

    @classmethod
    def open(cls, path: str | os.PathLike) -> "TokenStore":
        path = Path(path)
        manifest = read_manifest(path)
        arrays = [
            _memmap(path / name, manifest["dtype"], manifest[key], manifest["seq_len"])
            for name, key in ((TRAIN_FILE, "train_blocks"), (VALIDATION_FILE, "validation_blocks"))
        ]
        return cls(path, manifest, *arrays)

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / TOKENIZER_DIR

    def check(self, recipe, written: set[str]) -> None:
        """Refuse, in one line, a store made with another seq_len, tokenizer or data request than `recipe`'s, or
        whose tokenizer files changed since. Each `data:` field the recipe writes (`written`) must be the store's;
        the fields it leaves out are the store's (the ledger records the store's request)."""
        made = self.manifest["request"]
        if made["seq_len"] != recipe.seq_len:
            raise DataError(
                f"{self.path}: token store of seq_len={made['seq_len']}, but the recipe's seq_len={recipe.seq_len}; "
                "prepare a store for this recipe (hf-progressive prepare-data)."
            )
        wanted = store_request(recipe, None)
        if made["tokenizer"] != wanted["tokenizer"]:
            raise DataError(
                f"{self.path}: token store made with another tokenizer ({_describe(made['tokenizer'])}) than the "
                f"recipe's ({_describe(wanted['tokenizer'])}); prepare a store for this recipe (hf-progressive "
                "prepare-data)."
            )
        for key in sorted(written - {"prepared"}):
            value = wanted["data"][key]
            if made["data"].get(key) != value:
                raise DataError(
                    f"data.{key}={value!r}: the token store {self.path} was made with data.{key}="
                    f"{made['data'].get(key)!r}; prepare a store for this recipe, or leave data.{key} out to train "
                    "on the store as it was made."
                )
        if folder_hash(self.tokenizer_dir) != self.manifest["tokenizer_hash"]:
            raise DataError(f"{self.path}: its tokenizer files changed since it was made; prepare the store again.")

    @property
    def data_request(self) -> dict:
        """The data fields the store was made from (sources, text field, shuffle, holdout, validation blocks)."""
        return dict(self.manifest["request"]["data"])


def _describe(tokenizer: dict) -> str:
    if tokenizer["path"]:
        return f"{tokenizer['path']}, vocab_size {tokenizer['vocab_size']}"
    return f"BPE of vocab {tokenizer['vocab_size']} trained on {tokenizer['bpe_training_chars']:,} characters"


def _memmap(file: Path, dtype: str, n_blocks: int, seq_len: int) -> np.ndarray:
    expected = n_blocks * seq_len * np.dtype(dtype).itemsize
    if not file.is_file():
        raise DataError(f"{file}: missing (the manifest promises {expected} bytes); prepare the store again.")
    if file.stat().st_size != expected:
        size = file.stat().st_size
        raise DataError(f"{file}: {size} bytes, the manifest promises {expected}; prepare the store again.")
    return np.memmap(file, dtype=dtype, mode="r", shape=(n_blocks, seq_len))


def read_manifest(path: Path) -> dict:
    """The manifest of store `path`; one-line `DataError` for a missing, damaged or foreign one."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: a file, not a token store folder; pass the folder prepare-data wrote.")
    if not path.exists():
        raise DataError(f"{path}: no such token store folder; run hf-progressive prepare-data --out {path} first.")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not a token store (no {MANIFEST}); run hf-progressive prepare-data.") from None
    except ValueError:
        manifest = None
    keys = ("request", "seq_len", "dtype", "train_blocks", "validation_blocks", "tokenizer_hash")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not all(k in manifest for k in keys):
        raise DataError(f"{path / MANIFEST}: damaged or not a token store manifest; prepare the store again.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: token store format {manifest.get('format_version')}; prepare the store again.")
    return manifest


def prepare_store(
    recipe,
    out: str | os.PathLike,
    *,
    num_proc: int = 1,
    max_tokens: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TokenStore:
    """Tokenize `recipe`'s data into a store at `out` (see the module docstring); an existing store made from the same
    request is reused as is. Returns the opened store."""
    out, request = Path(out), store_request(recipe, max_tokens)
    guard = {"owned": is_store_folder, "what": "--out", "protected": recipe_places(recipe), "kind": "token store"}
    check_replaceable(out, **guard)  # before any work: never a folder of other files, the root, home, CWD or inputs
    with exclusive(out, "another prepare-data is writing this token store; wait for it, or choose another --out."):
        existing = _existing(out, request, overwrite)
        if existing is not None:
            return existing
        with atomic_output_dir(out, overwrite=True, **guard) as tmp:
            dtype, counts = _write_store(recipe, tmp, _processes(num_proc), max_tokens, progress)
            write_json(tmp / MANIFEST, _manifest(request, tmp, dtype, counts, num_proc))
    return TokenStore.open(out)


def is_store_folder(path: Path) -> bool:
    """Whether `path` holds a token store (its manifest says so, even if damaged) and nothing else: the only
    non-empty folder prepare-data replaces."""
    try:
        says = FORMAT in (path / MANIFEST).read_text(errors="replace")
    except OSError:
        return False
    return says and only_entries(path, lambda name: name in (MANIFEST, TOKENIZER_DIR, TRAIN_FILE, VALIDATION_FILE))


def _processes(num_proc: int) -> int:
    """`num_proc` capped at the CPUs this process may use (more workers only add memory and start-up time)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpuplural() or 1
    if num_proc > cpus:
        logger.warning(f"--num-proc {num_proc}: this machine has {cpus} CPUs; using {cpus} tokenizer processes")
    return max(1, min(num_proc, cpus))


def _write_store(recipe, folder: Path, num_proc: int, max_tokens: int | None, progress: bool) -> tuple:
    """Tokenizer, validation blocks, then training blocks into `folder`; returns `(dtype, block counts)`."""
    tokenizer = get_tokenizer(recipe)
    tokenizer.save_pretrained(folder / TOKENIZER_DIR)
    dtype, seq_len = store_dtype(len(tokenizer)), recipe.seq_len
    cap = None if max_tokens is None else max(1, max_tokens // seq_len)
    splits = {  # split: (documents, file, block cap, processes); validation first, it is small
        "validation": (validation_documents(recipe.data), VALIDATION_FILE, recipe.data.validation_blocks, 1),
        "train": (training_documents(recipe.data), TRAIN_FILE, cap, num_proc),
    }
    counts = {}
    for split, (documents, file, blocks, processes) in splits.items():
        total = None if blocks is None else blocks * seq_len  # known: the bar shows an ETA
        estimate = TokenEstimate(documents, recipe.data.train) if total is None else None  # else: from the file sizes
        with tqdm(total=total, unit="tok", unit_scale=True, desc=f"{split} tokens", disable=not progress) as bar:
            stream = TextTokens(encode(estimate or documents, folder / TOKENIZER_DIR, processes), tokenizer)
            counts[split] = write_blocks(stream, folder / file, seq_len, dtype, blocks, bar, estimate)
        if not stream.count:
            source = getattr(recipe.data, "train" if split == "train" or recipe.data.validation == HOLDOUT else split)
            raise DataError(
                f"data.{split}={source!r}: its documents hold no text (only end-of-document tokens); point it at a "
                "corpus with text."
            )
    return dtype, counts


def _existing(out: Path, request: dict, overwrite: bool) -> TokenStore | None:
    """The store already at `out` if it was made from `request`; None if `out` is free (or may be replaced). `out`
    passed `check_replaceable` (a folder, empty or a store)."""
    if not out.is_dir() or not any(out.iterdir()):
        return None
    try:
        manifest = read_manifest(out)
    except DataError:
        if overwrite:  # a damaged store (check_replaceable made sure it is one)
            return None
        raise DataError(f"{out}: a damaged token store; pass --overwrite to prepare it again.") from None
    if manifest["request"] == request:
        try:
            return TokenStore.open(out)
        except DataError:  # truncated or missing block files
            if not overwrite:
                raise
            return None
    if overwrite:
        return None
    raise DataError(
        f"{out}: holds a token store made from another recipe or cap; choose a new folder (or pass --overwrite)."
    )


def _manifest(request: dict, folder: Path, dtype: np.dtype, counts: dict, num_proc: int) -> dict:
    from .. import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "request": request,
        "seq_len": request["seq_len"],
        "dtype": dtype.name,
        "train_blocks": counts["train"],
        "validation_blocks": counts["validation"],
        "tokenizer_hash": folder_hash(folder / TOKENIZER_DIR),
        "shuffle": {"seed": request["data"]["shuffle_seed"], "buffer_size": request["data"]["shuffle_buffer"]},
        "holdout_documents": request["data"]["holdout_documents"] if request["data"]["validation"] == HOLDOUT else 0,
        "num_proc": num_proc,  # informational: the blocks do not depend on it
        "library_version": __version__,
    }


def format_store(store: TokenStore) -> str:
    """What `hf-progressive prepare-data` prints."""
    m = store.manifest
    tokens = m["train_blocks"] * m["seq_len"]
    return (
        f"token store {store.path}: {plural(m['train_blocks'], 'training block')} ({tokens:,} tokens) and "
        f"{plural(m['validation_blocks'], 'validation block')} of {m['seq_len']} tokens, {m['dtype']}; "
        f"build with: hf-progressive build-family RECIPE --data {store.path}"
    )


def plural(n: int, noun: str) -> str:
    """`n` and `noun`, plural unless n is 1: "1 validation block", "2 validation blocks"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


__all__ = [
    "format_store",
    "plural",
    "is_store_folder",
    "TokenStore",
    "prepare_store",
    "read_manifest",
    "store_dtype",
    "store_request",
]
