"""The options of a growth (`GrowArguments`, what `hf-progressive expand` parses) and shard sizes ("5GB", "10KiB").
Standard library only, so a command line can parse and refuse them without importing torch."""

import re
from dataclasses import dataclass, field

from ..errors import ExpansionError
from .methods import DEFAULT_WIDTH
from .sizes import SIZE_FIELDS


# transformers' units (KB/MB/GB decimal, KiB/MiB/GiB binary) plus TB/TiB and decimals ("1.5GB"), which its
# convert_file_size_to_int does not read
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
SIZE_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(B|[KMGT]I?B)?\s*$", re.IGNORECASE)


def parse_size(size: str | int) -> int:
    """ "5GB" -> 5_000_000_000, "10KiB" -> 10_240 (as transformers' max_shard_size); one-line error unless
    positive."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = SIZE.match(str(size))
        value = int(float(match[1]) * SIZE_UNITS[(match[2] or "B").upper()]) if match else 0
    if value <= 0:
        raise ExpansionError(f"max_shard_size={size!r}: write a positive size such as 5GB, 500MB or 10KiB.")
    return value


@dataclass
class GrowArguments:
    """Options of a growth (`hf-progressive expand SRC DST`); sizes left out keep the source's value."""

    hidden_size: int | None = field(default=None, metadata={"help": "Target hidden_size."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Target intermediate_size (FFN)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Target number of layers."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Target query heads."})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "Target key/value heads (GQA groups)."})
    head_dim: int | None = field(
        default=None,
        metadata={"help": "Target dimensions per head: an integer multiple of the source's keeps the function."},
    )
    method: str = field(
        default=DEFAULT_WIDTH,
        metadata={
            "help": "WIDTH, DEPTH or WIDTH+DEPTH. Width: function_preserving, fpi, aki, hypercloning; depth: "
            "identity, interpolate, stack, apollo (= interpolate for one checkpoint; e.g. fpi+stack)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds every random choice and draw."})
    noise_std: float | None = field(
        default=None,
        metadata={
            "help": "Paired symmetry-breaking noise for copy-based width operators, as a fraction of each tensor's "
            "std (default: 0.01 for fpi, aki and hypercloning, 0 for function_preserving)."
        },
    )
    inserted_layers: list[int] | None = field(
        default=None, metadata={"help": "Positions of the new identity blocks in the grown model (default: even)."}
    )
    strict: bool = field(default=False, metadata={"help": "Fail if a function-preserving growth moves the logits."})
    verify: bool = field(
        default=True,
        metadata={
            "help": "Run both checkpoints on a probe batch after writing, one layer in memory at a time, to measure "
            "preservation (--no-verify skips it)."
        },
    )
    max_shard_size: str = field(default="5GB", metadata={"help": "Largest output shard, e.g. 5GB or 500MB."})
    overwrite: bool = field(default=False, metadata={"help": "Replace DST if it exists and is not empty."})

    def __post_init__(self):
        parse_size(self.max_shard_size)  # a bad size is a one-line error before any work

    def sizes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SIZE_FIELDS if getattr(self, name) is not None}


ExpandArguments = GrowArguments  # the name `hf-progressive expand` used before 0.2


__all__ = ["ExpandArguments", "GrowArguments", "parse_size"]
