"""The typed configuration of a family's data and tokenizer (`data:` and `tokenizer:` of a recipe): the data part
owns it, the recipe composes it."""

from dataclasses import dataclass


@dataclass
class TokenizerSpec:
    """`path`: any Hugging Face tokenizer (local dir, or Hub id where the network allows); or `train_bpe: true` to
    train a byte-level BPE of the recipe's vocab_size on the training corpus."""

    path: str | None = None
    train_bpe: bool = False
    bpe_training_chars: int = 2_000_000  # how much of the corpus the BPE is trained on


HOLDOUT = "holdout"  # data.validation: hold out the first `holdout_documents` training documents


@dataclass
class DataSpec:
    """`train` / `validation`: "embedded" (the public-domain corpus shipped with the package), local text, JSONL,
    JSON or parquet files (globs allowed), a local dataset folder, or a Hub dataset id (all streamed). `validation:
    holdout` holds out the first `holdout_documents` training documents instead (for corpora that publish only a
    train split). `shuffle_seed` buffer-shuffles the training documents before packing. `prepared`: a token store
    written by `hf-progressive prepare-data` (build-family then reads it instead of the sources)."""

    train: str = "embedded"
    validation: str = "embedded"
    text_field: str = "text"
    hub_split: str = "train"
    revision: str | None = None  # Hub dataset revision (a commit or tag), recorded in the store's manifest
    validation_blocks: int = 32
    holdout_documents: int = 0
    shuffle_seed: int | None = None
    shuffle_buffer: int = 10_000  # documents held in the shuffle buffer (datasets' IterableDataset.shuffle)
    prepared: str | None = None


__all__ = ["HOLDOUT", "DataSpec", "TokenizerSpec"]
