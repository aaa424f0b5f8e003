"""`ProgressiveQwen2ForCausalLM`: a `Qwen2ForCausalLM` with one extra constructor, `from_smaller`, and a
`save_pretrained` that keeps checkpoints vanilla (architectures Qwen2ForCausalLM) and writes growth.json beside them.
It inherits forward, weight tying and the TP plans; all growth math lives in `hf_progressive.expansion`."""

from transformers import Qwen2ForCausalLM

from ..progressive import ProgressiveCausalLMMixin, growth_record
from .configuration_qwen2 import ProgressiveQwen2Config


class ProgressiveQwen2ForCausalLM(ProgressiveCausalLMMixin, Qwen2ForCausalLM):
    r"""
    A [`~transformers.Qwen2ForCausalLM`] grown from a smaller Qwen2. Saved checkpoints are plain Qwen2 checkpoints
    (`AutoModelForCausalLM` loads them without hf_progressive); the growth provenance goes to `growth.json`.

    Example:

    ```python
    >>> from transformers import Qwen2Config, Qwen2ForCausalLM
    >>> from hf_progressive import ProgressiveQwen2Config, ProgressiveQwen2ForCausalLM
    >>> small = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    ...                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=99))
    >>> big_cfg = ProgressiveQwen2Config.from_smaller(small.config, hidden_size=64, num_hidden_layers=4)
    >>> big = ProgressiveQwen2ForCausalLM.from_smaller(small, big_cfg, method="function_preserving", seed=0)
    >>> big.growth["preservation"]["max_abs_logit_diff"] < 1e-4
    True
    ```
    """

    config_class = ProgressiveQwen2Config


__all__ = ["ProgressiveQwen2ForCausalLM", "growth_record"]
