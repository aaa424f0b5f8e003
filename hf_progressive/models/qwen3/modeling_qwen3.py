"""`ProgressiveQwen3ForCausalLM`: a `Qwen3ForCausalLM` with one extra constructor, `from_smaller`, and a
`save_pretrained` that keeps checkpoints vanilla (architectures Qwen3ForCausalLM) and writes growth.json beside them.
It inherits forward, weight tying and the TP plans; all growth math lives in `hf_progressive.expansion`."""

from transformers import Qwen3ForCausalLM

from ..progressive import ProgressiveCausalLMMixin, growth_record
from .configuration_qwen3 import ProgressiveQwen3Config


class ProgressiveQwen3ForCausalLM(ProgressiveCausalLMMixin, Qwen3ForCausalLM):
    r"""
    A [`~transformers.Qwen3ForCausalLM`] grown from a smaller Qwen3. Saved checkpoints are plain Qwen3 checkpoints
    (`AutoModelForCausalLM` loads them without hf_progressive); the growth provenance goes to `growth.json`.

    Example:

    ```python
    >>> from transformers import Qwen3Config, Qwen3ForCausalLM
    >>> from hf_progressive import ProgressiveQwen3Config, ProgressiveQwen3ForCausalLM
    >>> small = Qwen3ForCausalLM(Qwen3Config(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    ...                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=99))
    >>> big_cfg = ProgressiveQwen3Config.from_smaller(small.config, hidden_size=64, num_hidden_layers=4)
    >>> big = ProgressiveQwen3ForCausalLM.from_smaller(small, big_cfg, method="function_preserving", seed=0)
    >>> big.growth["preservation"]["max_abs_logit_diff"] < 1e-4
    True
    ```
    """

    config_class = ProgressiveQwen3Config


__all__ = ["ProgressiveQwen3ForCausalLM", "growth_record"]
