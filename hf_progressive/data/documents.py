"""The documents of a corpus, streamed with `datasets` whatever its size: the embedded public-domain slice, local
text/JSONL/JSON/CSV/parquet files (globs), a local dataset folder or a Hub dataset id; buffer-shuffled and held out as
a `DataSpec` says; long documents cut into pieces for the tokenizer. Nothing here holds the corpus."""

import contextlib
import glob
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .spec import HOLDOUT, DataSpec


CORPUS_DIR = Path(__file__).parent / "corpus"


EMBEDDED = {
    "train": CORPUS_DIR / "gutenberg_train.jsonl.gz",
    "validation": CORPUS_DIR / "gutenberg_validation.jsonl.gz",
}


BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


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


__all__ = [
    "BUILDERS",
    "EMBEDDED",
    "MAX_PIECE_CHARS",
    "iter_texts",
    "split_document",
    "training_documents",
    "validation_documents",
]
