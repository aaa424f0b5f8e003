"""`ProgressiveMistralForCausalLM`: a `MistralForCausalLM` with one extra constructor, `from_smaller`, and a
`save_pretrained` that keeps checkpoints vanilla (architectures MistralForCausalLM) and writes growth.json beside them.
It inherits forward, weight tying and the TP plans; all growth math lives in `hf_progressive.expansion`."""

from transformers import MistralForCausalLM

from ..progressive import ProgressiveCausalLMMixin, growth_record
from .configuration_mistral import ProgressiveMistralConfig


class ProgressiveMistralForCausalLM(ProgressiveCausalLMMixin, MistralForCausalLM):
    r"""
    A [`~transformers.MistralForCausalLM`] grown from a smaller Mistral. Saved checkpoints are plain Mistral
    checkpoints
    (`AutoModelForCausalLM` loads them without hf_progressive); the growth provenance goes to `growth.json`.

    Example:

    ```python
    >>> from transformers import MistralConfig, MistralForCausalLM
    >>> from hf_progressive import ProgressiveMistralConfig, ProgressiveMistralForCausalLM
    >>> small = MistralForCausalLM(MistralConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    ...                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=99))
    >>> big_cfg = ProgressiveMistralConfig.from_smaller(small.config, hidden_size=64, num_hidden_layers=4)
    >>> big = ProgressiveMistralForCausalLM.from_smaller(small, big_cfg, method="function_preserving", seed=0)
    >>> big.growth["preservation"]["max_abs_logit_diff"] < 1e-4
    True
    ```
    """

    config_class = ProgressiveMistralConfig


__all__ = ["ProgressiveMistralForCausalLM", "growth_record"]
