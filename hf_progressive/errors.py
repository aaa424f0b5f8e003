"""The errors hf_progressive raises for bad input, one hierarchy: `HfProgressiveError(ValueError)` and its four kinds
beside each other. Each message names the field, the value and the fix; the CLI prints it as one line and exits 2."""


class HfProgressiveError(ValueError):
    """Bad input to hf_progressive (a subclass of ValueError, so callers that catch ValueError still do)."""


class RecipeError(HfProgressiveError):
    """A family recipe that cannot be used (unknown field, sizes that do not grow, zero budget, ...)."""


class ExpansionError(HfProgressiveError):
    """A growth request that cannot be carried out (shrinking, broken head grouping, unknown method, ...)."""


class CheckpointError(HfProgressiveError):
    """A checkpoint or family directory that cannot be read or written (not Llama, truncated weights, DST in use, a
    ledger from an incompatible version)."""


class DataError(HfProgressiveError):
    """A corpus that cannot be used (missing, empty, unknown format, not text, too short for one block)."""


__all__ = ["CheckpointError", "DataError", "ExpansionError", "HfProgressiveError", "RecipeError"]
