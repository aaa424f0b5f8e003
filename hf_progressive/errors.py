"""The errors hf_progressive raises for bad input. Each message names the field, the value and the fix; the CLI prints
it as one line and exits 2."""


class ExpansionError(ValueError):
    """A growth request that cannot be carried out (shrinking, broken head grouping, unknown method, ...)."""


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read or written (not Llama, missing or truncated weights, DST in use)."""


__all__ = ["CheckpointError", "ExpansionError"]
