"""`ProgressiveLlamaForCausalLM`: a `LlamaForCausalLM` with one extra constructor, `from_smaller`, and a
`save_pretrained` that keeps checkpoints vanilla (architectures LlamaForCausalLM) and writes growth.json beside them.
It inherits forward, weight tying and the TP plans; all growth math lives in expansion.py."""

import os
from pathlib import Path

from transformers import LlamaForCausalLM, PreTrainedModel
from transformers.utils import logging

from ...errors import ExpansionError
from ...expansion.checkpoint import load_model, model_from_state_dict
from ...expansion.methods import DEFAULT_WIDTH
from ...expansion.operators import expand_state_dict
from ...expansion.plan import GrowthPlan
from ...expansion.record import GROWTH_FILE, streaming_growth_record
from ...expansion.verification import check_preservation, verify_expansion
from ...utils.io import write_json
from .configuration_llama import ProgressiveLlamaConfig


logger = logging.get_logger(__name__)


class ProgressiveLlamaForCausalLM(LlamaForCausalLM):
    r"""
    A [`~transformers.LlamaForCausalLM`] grown from a smaller Llama. Saved checkpoints are plain Llama checkpoints
    (`AutoModelForCausalLM` loads them without hf_progressive); the growth provenance goes to `growth.json`.

    Example:

    ```python
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
    >>> small = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    ...                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=99))
    >>> big_cfg = ProgressiveLlamaConfig.from_smaller(small.config, hidden_size=64, num_hidden_layers=4)
    >>> big = ProgressiveLlamaForCausalLM.from_smaller(small, big_cfg, method="function_preserving", seed=0)
    >>> big.growth["preservation"]["max_abs_logit_diff"] < 1e-4
    True
    ```
    """

    config_class = ProgressiveLlamaConfig
    growth: dict | None = None
    growth_plan: GrowthPlan | None = None  # the resolved plan `from_smaller` grew with (index maps, layer map)

    @classmethod
    def from_smaller(
        cls,
        small: PreTrainedModel | str | os.PathLike,
        config,
        method: str = DEFAULT_WIDTH,
        seed: int = 0,
        *,
        noise_std: float | None = None,
        inserted_layers: list[int] | None = None,
        strict: bool = False,
        verify: bool = True,
        progress: bool = False,
    ) -> "ProgressiveLlamaForCausalLM":
        """
        Grow `small` (a Llama model, or a local checkpoint directory) into `config`.

        Args:
            small (`LlamaForCausalLM` or `str`): the model to grow, or the path of a saved one.
            config (`LlamaConfig`): the target, usually from `ProgressiveLlamaConfig.from_smaller`.
            method (`str`, defaults to `"function_preserving"`): `"WIDTH"`, `"DEPTH"` or `"WIDTH+DEPTH"`; width is one
                of function_preserving, fpi, aki, hypercloning and depth one of identity, interpolate, stack.
            seed (`int`): seeds every random choice and draw.
            noise_std (`float`, *optional*): paired symmetry-breaking noise for copy-based width operators (fraction of
                each tensor's std); default: the operator's `methods.DEFAULT_NOISE_STD` (0.01 for copies, 0 otherwise).
            inserted_layers (`list[int]`, *optional*): positions of the new identity blocks (default: evenly spread).
            strict (`bool`): raise if a function-preserving growth moves the logits beyond the dtype's tolerance.
            verify (`bool`): compare both models on a probe batch and record it in `growth["preservation"]`.
        """
        small = _as_llama(small)
        plan = GrowthPlan.from_configs(small.config, config, method, seed, noise_std, inserted_layers)
        state_dict = expand_state_dict(small.state_dict(), plan, progress=progress)
        big = model_from_state_dict(cls, _target_config(plan, small), state_dict)
        big.generation_config = small.generation_config
        report = verify_expansion(small, big) if verify else None
        big.growth, big.growth_plan = growth_record(small, plan, report), plan
        if strict and report is not None and plan.function_preserving:
            check_preservation(report, big.dtype)
        return big

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, then `architectures: ["LlamaForCausalLM"]` and growth.json."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        self.config.architectures = ["LlamaForCausalLM"]  # vanilla: tools that dispatch on it find the class
        self.config.save_pretrained(save_directory)
        if self.growth is not None:
            write_json(Path(save_directory) / GROWTH_FILE, self.growth)


def _target_config(plan: GrowthPlan, small) -> ProgressiveLlamaConfig:
    config = ProgressiveLlamaConfig.from_dict(plan.dst.to_dict())
    config._attn_implementation = small.config._attn_implementation  # grow with the kernel the parent runs
    return config


def _as_llama(small) -> PreTrainedModel:
    if isinstance(small, str | os.PathLike):
        return load_model(small)
    if not isinstance(small, PreTrainedModel):
        raise TypeError(f"small: expected a LlamaForCausalLM or a checkpoint path, got {type(small).__name__}")
    if small.config.model_type != "llama":
        raise ExpansionError(f"model_type={small.config.model_type!r}: hf_progressive grows Llama models only.")
    return small


def growth_record(small, plan: GrowthPlan, report: dict | None) -> dict:
    """What growth.json holds: parent, operators, seed, the plan's index maps, per-tensor sources, preservation."""
    record = streaming_growth_record(str(getattr(small, "name_or_path", "") or ""), plan)
    return {**record, "preservation": report}


__all__ = ["ProgressiveLlamaForCausalLM", "growth_record"]
