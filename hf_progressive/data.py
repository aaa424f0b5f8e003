"""Data for a family: stream a corpus with `datasets` (the embedded public-domain slice, local text/JSONL/parquet
files, a local dataset folder, or a Hub dataset id), shuffle and hold out documents as the recipe says, get a
tokenizer (any HF tokenizer, or a byte-level BPE trained on the corpus), and hand each stage exactly its window of
blocks. Tokenizing into blocks on disk is token_store.py's job."""

import bisect
import contextlib
import glob
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging

from .budget import Window
from .errors import DataError, RecipeError
from .recipe import HOLDOUT, DataSpec, Recipe


logger = logging.get_logger(__name__)

CORPUS_DIR = Path(__file__).parent / "corpus"
EMBEDDED = {
    "train": CORPUS_DIR / "gutenberg_train.jsonl.gz",
    "validation": CORPUS_DIR / "gutenberg_validation.jsonl.gz",
}
BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
EOS = "<|endoftext|>"
METADATA_FILES = ("dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")  # not documents


def _builder(source: str) -> str | None:
    """The datasets builder for a local file/glob, from its extension (`.gz` looked through); None for a Hub id."""
    suffixes = [s for s in Path(source).suffixes if s != ".gz"]
    if not suffixes or suffixes[-1] not in BUILDERS:
        return None
    return BUILDERS[suffixes[-1]]


def iter_texts(spec: DataSpec, split: str, shuffle: bool = False) -> Iterator[str]:
    """The documents of `spec.train` or `spec.validation` (`split`), in order (or, with `shuffle` and a
    `spec.shuffle_seed`, buffer-shuffled deterministically), as strings. Every source is streamed: nothing holds the
    corpus, whatever its size."""
    source, builder, dataset = _stream(spec, split)
    if shuffle and spec.shuffle_seed is not None:
        dataset = dataset.shuffle(seed=spec.shuffle_seed, buffer_size=spec.shuffle_buffer)
    field = spec.text_field if builder != "text" else "text"
    documents, rows, said = 0, iter(dataset), []
    while True:
        try:
            with _datasets_log(said):
                row = next(rows)
        except StopIteration:
            break
        except Exception as error:  # not JSON, wrong encoding, ...: surfaces while streaming
            raise _unreadable(error, said, source, split, builder, field) from None
        yield _text(row, field, source, split, documents)
        documents += 1
    if not documents:
        raise DataError(f"data.{split}={source!r}: holds no documents; point it at a non-empty text corpus.")


@contextlib.contextmanager
def _datasets_log(said: list[str]) -> Iterator[None]:
    """Keep what `datasets` logs while it reads (e.g. "Failed to load JSON from file 'b.jsonl'") in `said` instead
    of printing it: our one-line error says it, naming the file."""
    import logging

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    root = logging.getLogger("datasets")
    handlers, propagate = root.handlers, root.propagate
    root.handlers, root.propagate = [Keep()], False
    try:
        yield
    finally:
        root.handlers, root.propagate = handlers, propagate


def _unreadable(error: Exception, said: list[str], source: str, split: str, builder, field: str) -> DataError:
    """The one-line error for a corpus `datasets` failed to read: the file it names, and why."""
    reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
    files = [m for line in said for m in re.findall(r"from file '([^']+)'", line)]
    where = f" {files[-1]}:" if files and files[-1] != source else ""
    if "cast" in reason.lower():
        reason = f"{reason}: its files or rows disagree on their columns (is {field!r} in every row?)"
    return DataError(
        f"data.{split}={source!r}:{where} cannot be read as {builder or 'a dataset'} ({reason}); give a text, "
        "JSONL, JSON, CSV or parquet corpus."
    )


def training_documents(spec: DataSpec) -> Iterator[str]:
    """The training stream (shuffled when `spec.shuffle_seed` is set) without the documents held out for
    validation (`validation: holdout`)."""
    documents = iter_texts(spec, "train", shuffle=True)
    if spec.validation == HOLDOUT:
        for _ in itertools.islice(documents, spec.holdout_documents):
            pass
    return documents


def validation_documents(spec: DataSpec) -> Iterator[str]:
    """The validation documents: the first `holdout_documents` of the (shuffled) training stream with
    `validation: holdout`, else the validation source."""
    if spec.validation == HOLDOUT:
        return itertools.islice(iter_texts(spec, "train", shuffle=True), spec.holdout_documents)
    return iter_texts(spec, "validation")


def _text(row: dict, field: str, source: str, split: str, index: int) -> str:
    if field not in row:
        raise DataError(f"data.text_field={field!r}: not a column of {source} (columns: {', '.join(row)}).")
    if row[field] is None:
        raise DataError(
            f"data.{split}={source!r}: document {index} has no {field!r} (null or missing); every row needs text."
        )
    if not isinstance(row[field], str):
        kind = type(row[field]).__name__
        raise DataError(f"data.{split}={source!r}: column {field!r} holds {kind}, not text (document {index}).")
    return row[field]


def _stream(spec: DataSpec, split: str) -> tuple:
    """`(source, builder or None, IterableDataset)` for one split: local files (globs), a local dataset folder or a
    Hub dataset id, always with `streaming=True`."""
    import datasets

    source = getattr(spec, split)
    if source == "embedded":
        source = str(EMBEDDED[split])
    builder, files = _builder(source), glob.glob(source)
    if builder is None and files and not Path(source).is_dir():
        raise DataError(
            f"data.{split}={source!r}: a local file of unknown format; use .txt, .jsonl, .json, .csv or .parquet "
            "(optionally .gz), or a dataset folder."
        )
    if builder is not None:
        if not files:
            raise DataError(f"data.{split}={source!r}: no such file.")
        if all(os.path.getsize(f) == 0 for f in files):
            raise DataError(f"data.{split}={source!r}: empty; point it at a non-empty text corpus.")
        return source, builder, datasets.load_dataset(builder, data_files=source, split="train", streaming=True)
    if Path(source).is_dir():
        _check_one_format(source, split)
    hub_split = spec.hub_split if split == "train" else "validation"
    try:  # a local dataset folder (e.g. parquet shards) or a Hub dataset id
        dataset = datasets.load_dataset(source, split=hub_split, streaming=True, revision=spec.revision)
    except Exception as error:
        raise DataError(
            f"data.{split}={source!r}: not a local file and not loadable from the Hub ({type(error).__name__})."
        ) from None
    return source, None, dataset


def _check_one_format(folder: str, split: str) -> None:
    """`datasets` infers one builder for a dataset folder and silently skips files of other formats: refuse a folder
    that mixes them (a.jsonl beside b.parquet and c.txt) instead of training on a part of it."""
    formats: dict[str, str] = {}
    for path in sorted(Path(folder).rglob("*")):
        hidden = any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
        builder = _builder(path.name) or ("arrow" if path.suffix == ".arrow" else None)
        if path.is_file() and not hidden and builder and path.name not in METADATA_FILES:
            formats.setdefault(builder, path.name)
    if len(formats) > 1:
        shown = ", ".join(sorted(formats.values()))
        raise DataError(
            f"data.{split}={folder!r}: mixes file formats ({shown}), of which datasets would read only one; keep "
            "one format per folder, or list the files with a glob of one extension."
        )


def train_bpe(texts: Iterator[str], vocab_size: int, max_chars: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style: no unknown tokens) of `vocab_size` trained on the first `max_chars` chars."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_take_chars(texts, max_chars), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def _take_chars(texts: Iterator[str], max_chars: int) -> Iterator[str]:
    total = 0
    for text in texts:
        for piece in split_document(text):
            if total >= max_chars:
                return
            total += len(piece)
            yield piece


MAX_PIECE_CHARS = 1 << 16  # longer documents are encoded in pieces of about this size (bounded memory per call)


def split_document(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """`text` in pieces of at most `max_chars` characters, cut before a single space between two words where there is
    one (a pre-token boundary of byte-level BPE, so the pieces encode as the whole would); shorter texts as is. A
    10 MB one-line document then costs the tokenizer a piece at a time, not gigabytes."""
    if len(text) <= max_chars:
        return [text]
    pieces, start = [], 0
    while len(text) - start > max_chars:
        end = _cut(text, start, start + max_chars)
        pieces.append(text[start:end])
        start = end
    return pieces + [text[start:]]


def _cut(text: str, start: int, limit: int) -> int:
    """A cut position in (start, limit]: before a space between two non-spaces, else before any space, else `limit`."""
    floor = start + (limit - start) // 2
    position = limit
    while position > floor:
        position = text.rfind(" ", floor, position)
        if position <= floor:
            break
        if not text[position - 1].isspace() and not text[position + 1 : position + 2].isspace():
            return position
    position = max(text.rfind(c, floor, limit) for c in " \n\t")
    return position if position > floor else limit


def get_tokenizer(recipe: Recipe):
    """The recipe's tokenizer, checked against its vocab_size."""
    spec = recipe.tokenizer
    if spec.train_bpe:
        tokenizer = train_bpe(training_documents(recipe.data), recipe.vocab_size, spec.bpe_training_chars)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.path)
        except Exception as error:
            raise RecipeError(f"tokenizer.path={spec.path!r}: cannot load it ({type(error).__name__}).") from None
    check_tokenizer(tokenizer, recipe.vocab_size)
    return tokenizer


def check_tokenizer(tokenizer, vocab_size: int) -> None:
    """The model's embedding must cover every token id the tokenizer can produce, and EOS must exist (it separates
    packed documents)."""
    if len(tokenizer) > vocab_size:
        raise RecipeError(
            f"tokenizer: it has {len(tokenizer)} tokens but vocab_size={vocab_size}; mismatched "
            f"tokenizer: set vocab_size >= {len(tokenizer)} or use a smaller tokenizer."
        )
    if tokenizer.eos_token_id is None:
        raise RecipeError("tokenizer: it has no eos_token; set one (it separates packed documents).")


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

    def __init__(self, blocks, window: Window):
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


__all__ = [
    "BlockWindow",
    "as_ids",
    "check_ids",
    "EMBEDDED",
    "check_tokenizer",
    "get_tokenizer",
    "held_out_blocks",
    "iter_texts",
    "training_documents",
    "validation_documents",
    "pack",
    "split_document",
    "train_bpe",
]
