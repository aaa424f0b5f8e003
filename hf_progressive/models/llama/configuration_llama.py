"""`ProgressiveLlamaConfig`: a `LlamaConfig` with one extra constructor, `from_smaller`, that does the size
arithmetic of a growth (expansion's `sizes.grown_config`) and validates it early. No tensors here; no new fields (the
saved config.json is vanilla)."""

from transformers import LlamaConfig

from ...expansion.sizes import SIZE_FIELDS, grown_config, validate_growth


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
        given = dict(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
        )
        return grown_config(config, cls, **given)


__all__ = ["SIZE_FIELDS", "ProgressiveLlamaConfig", "validate_growth"]
