"""`ProgressiveLlamaConfig`: a `LlamaConfig` with one extra constructor, `from_smaller`, that does the size arithmetic
of a growth (`expansion.sizes.grown_config`) and validates it early. No tensors here; no new fields (the saved
config.json is vanilla)."""

from transformers import LlamaConfig

from ..progressive import ProgressiveConfigMixin


class ProgressiveLlamaConfig(ProgressiveConfigMixin, LlamaConfig):
    r"""
    A [`~transformers.LlamaConfig`] that knows how to describe a larger member of a model family. It adds no fields
    (`model_type` stays `"llama"`), so whatever it saves is read back by `AutoConfig` as a plain `LlamaConfig`.

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from hf_progressive import ProgressiveLlamaConfig
    >>> small = LlamaConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    ...                     num_key_value_heads=2, head_dim=8, vocab_size=99)
    >>> big = ProgressiveLlamaConfig.from_smaller(small, hidden_size=64, num_hidden_layers=4, head_dim=16)
    >>> big.hidden_size, big.head_dim, big.model_type
    (64, 16, 'llama')
    ```
    """


__all__ = ["ProgressiveLlamaConfig"]
