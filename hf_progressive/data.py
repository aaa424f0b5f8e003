"""Data for a family: read a corpus with `datasets` (the embedded public-domain slice, local text/JSONL/parquet files,
or a Hub dataset streamed where the network allows), get a tokenizer (any HF tokenizer, or a byte-level BPE trained on
the corpus), pack documents into fixed-length blocks, and hand each stage exactly its window of blocks."""

import bisect
import glob
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging

from .budget import Window
from .errors import DataError, RecipeError
from .recipe import DataSpec, Recipe


logger = logging.get_logger(__name__)

CORPUS_DIR = Path(__file__).parent / "corpus"
EMBEDDED = {
    "train": CORPUS_DIR / "gutenberg_train.jsonl.gz",
    "validation": CORPUS_DIR / "gutenberg_validation.jsonl.gz",
}
BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
EOS = "<|endoftext|>"


def _builder(source: str) -> str | None:
    """The datasets builder for a local file/glob, from its extension (`.gz` looked through); None for a Hub id."""
    suffixes = [s for s in Path(source).suffixes if s != ".gz"]
    if not suffixes or suffixes[-1] not in BUILDERS:
        return None
    return BUILDERS[suffixes[-1]]


def iter_texts(spec: DataSpec, split: str) -> Iterator[str]:
    """The documents of `spec.train` or `spec.validation` (`split`), in order, as strings."""
    import datasets

    source = getattr(spec, split)
    if source == "embedded":
        source = str(EMBEDDED[split])
    builder, files = _builder(source), glob.glob(source)
    if builder is None and files:
        raise DataError(
            f"data.{split}={source!r}: a local file of unknown format; use .txt, .jsonl, .json, .csv or .parquet "
            "(optionally .gz)."
        )
    if builder is not None:
        if not files:
            raise DataError(f"data.{split}={source!r}: no such file.")
        if all(os.path.getsize(f) == 0 for f in files):
            raise DataError(f"data.{split}={source!r}: empty; point it at a non-empty text corpus.")
        dataset = _load_local(builder, source, split)
    else:  # a Hub dataset id
        hub_split = spec.hub_split if split == "train" else "validation"
        try:
            dataset = datasets.load_dataset(source, split=hub_split, streaming=True)
        except Exception as error:
            raise DataError(
                f"data.{split}={source!r}: not a local file and not loadable from the Hub ({type(error).__name__})."
            ) from None
    field = spec.text_field if builder != "text" else "text"
    documents = 0
    for row in dataset:
        if field not in row:
            raise DataError(f"data.text_field={field!r}: not a column of {source} (columns: {', '.join(row)}).")
        if not isinstance(row[field], str):
            kind = type(row[field]).__name__
            raise DataError(f"data.{split}={source!r}: column {field!r} holds {kind}, not text.")
        documents += 1
        yield row[field]
    if not documents:
        raise DataError(f"data.{split}={source!r}: holds no documents; point it at a non-empty text corpus.")


def _load_local(builder: str, source: str, split: str):
    """A local file as a datasets table (quietly: errors are one line, no progress bars on stderr)."""
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        return datasets.load_dataset(builder, data_files=source, split="train")
    except Exception as error:  # empty file, not JSON, wrong encoding, ...
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise DataError(
            f"data.{split}={source!r}: cannot be read as {builder} ({reason}); give a text, JSONL, JSON, CSV or "
            "parquet corpus."
        ) from None
    finally:
        if not quiet:
            enable_progress_bars()


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
        if total >= max_chars:
            return
        total += len(text)
        yield text


def get_tokenizer(recipe: Recipe):
    """The recipe's tokenizer, checked against its vocab_size."""
    spec = recipe.tokenizer
    if spec.train_bpe:
        tokenizer = train_bpe(iter_texts(recipe.data, "train"), recipe.vocab_size, spec.bpe_training_chars)
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


def prepare_data(recipe: Recipe, plan, paths) -> tuple:
    """`(tokenizer, training blocks, validation examples)` for building `plan` (a `family.FamilyPlan`) into the
    family folder `paths` (`ledger.FamilyPaths`): built once by the main process (the others wait), cached in
    OUT/data, read by every process."""
    from .trainer import process_state

    state = process_state()
    with state.main_process_first():
        if not paths.train_blocks.is_file() and state.is_main_process:
            _build_data(recipe, plan, paths)
        tokenizer = AutoTokenizer.from_pretrained(paths.tokenizer)
        check_tokenizer(tokenizer, recipe.vocab_size)
        blocks = torch.load(paths.train_blocks, weights_only=True)
        validation = torch.load(paths.validation_blocks, weights_only=True)
    return tokenizer, blocks, [{"input_ids": row, "labels": row} for row in validation]


def _build_data(recipe: Recipe, plan, paths) -> None:
    from .checkpoint import atomic_output_dir

    tokenizer = get_tokenizer(recipe)
    needed = max(max(end for _, end in m.window.spans()) for m in plan.members)  # blocks any stage reads
    blocks = pack(iter_texts(recipe.data, "train"), tokenizer, recipe.seq_len, needed)
    if len(blocks) < needed:
        logger.warning(
            f"the corpus holds {len(blocks)} blocks of {recipe.seq_len} tokens but the plan reads "
            f"{needed}: stages wrap around and repeat data (data_passes in the ledger says how much)"
        )
    validation = pack(iter_texts(recipe.data, "validation"), tokenizer, recipe.seq_len, recipe.data.validation_blocks)
    with atomic_output_dir(paths.data, overwrite=True) as tmp:
        tokenizer.save_pretrained(tmp / paths.tokenizer.relative_to(paths.data))
        torch.save(blocks, tmp / paths.train_blocks.relative_to(paths.data))
        torch.save(validation, tmp / paths.validation_blocks.relative_to(paths.data))


def held_out_blocks(tokenizer_dir: Path, source: str, seq_len: int, max_blocks: int) -> torch.Tensor:
    """Up to `max_blocks` blocks of `seq_len` tokens from held-out text file(s) `source` (txt/jsonl/parquet, globs),
    tokenized with the tokenizer saved in `tokenizer_dir`."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return pack(iter_texts(DataSpec(validation=source), "validation"), tokenizer, seq_len, max_blocks)


def validation_blocks(paths) -> torch.Tensor:
    """The family's held-out blocks `(n, seq_len)` as prepare_data cached them (`paths`: `ledger.FamilyPaths`)."""
    return torch.load(paths.validation_blocks, weights_only=True)


class BlockWindow(torch.utils.data.Dataset):
    """The blocks one stage reads, in order: `window` is in blocks; past the end of the corpus it wraps around
    (and `epochs` says how many passes that makes)."""

    def __init__(self, blocks: torch.Tensor, window: Window):
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = self.blocks[self.block_index(i) % len(self.blocks)]
        return {"input_ids": block, "labels": block}


__all__ = [
    "BlockWindow",
    "EMBEDDED",
    "check_tokenizer",
    "get_tokenizer",
    "held_out_blocks",
    "iter_texts",
    "pack",
    "prepare_data",
    "train_bpe",
    "validation_blocks",
]
