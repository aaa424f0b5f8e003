"""`ProgressiveLlamaConfig`: a `LlamaConfig` with one extra constructor, `from_smaller`, that does the size
arithmetic of a growth and validates it early. No tensors here; no new fields (the saved config.json is vanilla)."""

from transformers import LlamaConfig

from .errors import ExpansionError


SIZE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


class ProgressiveLlamaConfig(LlamaConfig):
    r"""
    A [`~transformers.LlamaConfig`] that knows how to describe a larger member of a model family. It adds no fields
    (`model_type` stays `"llama"`), so whatever it saves is read back by `AutoConfig` as a plain `LlamaConfig`.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_progressive import ProgressiveLlamaConfig
    >>> small = LlamaConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    ...                     num_key_value_heads=2, vocab_size=99)
    >>> big = ProgressiveLlamaConfig.from_smaller(small, hidden_size=64, num_hidden_layers=4)
    >>> big.hidden_size, big.head_dim, big.model_type
    (64, 8, 'llama')
    ```
    """

    @classmethod
    def from_smaller(
        cls,
        config: LlamaConfig,
        *,
        hidden_size: int | None = None,
        intermediate_size: int | None = None,
        num_hidden_layers: int | None = None,
        num_attention_heads: int | None = None,
        num_key_value_heads: int | None = None,
    ) -> "ProgressiveLlamaConfig":
        """
        The config of a grown model: `config` with the given sizes (`None` keeps a size). `head_dim` is written
        explicitly and never changes, so widening cannot silently change RoPE. Raises `ExpansionError` (a
        `ValueError`) naming the field, the value and the fix when the growth is impossible.
        """
        _check_llama(config)
        given = dict(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
        )
        sizes = {name: getattr(config, name) if value is None else value for name, value in given.items()}
        validate_growth(config, sizes)
        values = {k: v for k, v in config.to_dict().items() if k not in ("architectures", "transformers_version")}
        return cls.from_dict({**values, **sizes, "head_dim": config.head_dim})


def _check_llama(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "llama":
        raise ExpansionError(
            f"model_type={model_type!r}: hf_progressive grows Llama models only (model_type 'llama', "
            "LlamaForCausalLM); convert the checkpoint to the Llama layout first."
        )


def _sizes(values: dict) -> dict:
    """Accept both config field names and the axis names of `keys.axis_sizes`."""
    aliases = {
        "hidden": "hidden_size",
        "ffn": "intermediate_size",
        "q": "num_attention_heads",
        "kv": "num_key_value_heads",
    }
    return {aliases.get(name, name): value for name, value in values.items()}


def validate_growth(config, sizes: dict) -> None:
    """Raise `ExpansionError` unless `config` can grow into `sizes` (config field names -> values)."""
    _check_llama(config)
    sizes = _sizes(sizes)
    for name, value in sizes.items():
        old = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExpansionError(f"{name}={value!r}: must be a positive integer (the source has {old}).")
        if value < old:
            raise ExpansionError(
                f"{name}={value} is smaller than the source's {old}: growth cannot shrink a model; "
                f"pass {name} >= {old}."
            )
    heads, kv_heads, hidden = sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes["hidden_size"]
    if heads % kv_heads:
        raise ExpansionError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}: every key/value head "
            f"serves a whole group of query heads. Pick num_key_value_heads among {_divisors(heads)}."
        )
    if hidden % heads:
        raise ExpansionError(
            f"hidden_size={hidden} is not a multiple of num_attention_heads={heads} (LlamaConfig requires it; "
            f"head_dim stays {config.head_dim}). Use a hidden_size that is a multiple of {heads}, e.g. "
            f"{-(-hidden // heads) * heads}."
        )
    _check_group_seating(config, heads, kv_heads)


def _check_group_seating(config, heads: int, kv_heads: int) -> None:
    """Every old kv group must fit in whole new kv groups, or its query heads would attend with other keys."""
    group, new_group = config.num_attention_heads // config.num_key_value_heads, heads // kv_heads
    needed = config.num_key_value_heads * -(-group // new_group)
    if needed > kv_heads:
        raise ExpansionError(
            f"num_key_value_heads={kv_heads}: the source's {config.num_key_value_heads} kv groups of {group} query "
            f"heads need {needed} groups of {new_group} to keep every query head with its keys and values. Use "
            f"num_key_value_heads >= {needed}, or keep query heads per group >= {group}."
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


__all__ = ["ProgressiveLlamaConfig", "validate_growth"]
