"""What every `Progressive{Arch}` pair adds to transformers' own classes, once for all architectures: the config's
`from_smaller` (the size arithmetic of a growth, `expansion.sizes.grown_config`) and the model's `from_smaller` (the
growth itself, `expansion.operators`) and vanilla `save_pretrained`. A pair is two one-line subclasses
(`models/<model_type>/`); the architecture facts they rely on live in `expansion/architectures.py`."""

import os
from pathlib import Path

from transformers import PreTrainedModel
from transformers.utils import logging

from ..errors import ExpansionError
from ..expansion.architectures import architecture
from ..expansion.checkpoint import load_model, model_from_state_dict
from ..expansion.methods import DEFAULT_WIDTH
from ..expansion.operators import expand_state_dict
from ..expansion.plan import GrowthPlan
from ..expansion.record import GROWTH_FILE, streaming_growth_record
from ..expansion.sizes import grown_config
from ..expansion.verification import check_preservation, verify_expansion
from ..utils.io import write_json


logger = logging.get_logger(__name__)


class ProgressiveConfigMixin:
    """`from_smaller` for a transformers config class: adds no fields, so `model_type` and config.json stay vanilla."""

    @classmethod
    def from_smaller(
        cls,
        config,
        *,
        hidden_size: int | None = None,
        intermediate_size: int | None = None,
        num_hidden_layers: int | None = None,
        num_attention_heads: int | None = None,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
    ):
        """
        The config of a grown model: `config` with the given sizes (`None` keeps a size). `head_dim` is written
        explicitly, so widening cannot silently change RoPE; growing it is a size like the others. Raises
        `ExpansionError` (a `ValueError`) naming the field, the value and the fix when the growth is impossible.
        """
        if config.model_type != cls.model_type:
            raise ExpansionError(
                f"model_type={config.model_type!r}: {cls.__name__} grows {cls.model_type!r} configs; use "
                f"Progressive{architecture(config).prefix}Config."
            )
        given = dict(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            head_dim=head_dim,
        )
        return grown_config(config, cls, **given)


class ProgressiveCausalLMMixin:
    """`from_smaller` and a vanilla `save_pretrained` for a transformers causal LM class of a supported architecture:
    forward, weight tying and the TP plans are inherited; growth provenance goes to growth.json."""

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
    ):
        """
        Grow `small` (a model of this architecture, or a local checkpoint directory) into `config`.

        Args:
            small (`PreTrainedModel` or `str`): the model to grow, or the path of a saved one.
            config (`PretrainedConfig`): the target, usually from `Progressive{Arch}Config.from_smaller`.
            method (`str`, defaults to `"function_preserving"`): `"WIDTH"`, `"DEPTH"` or `"WIDTH+DEPTH"`; width is one
                of function_preserving, fpi, aki, hypercloning and depth one of identity, interpolate, stack.
            seed (`int`): seeds every random choice and draw.
            noise_std (`float`, *optional*): paired symmetry-breaking noise for copy-based width operators (fraction of
                each tensor's std); default: the operator's `methods.DEFAULT_NOISE_STD` (0.01 for copies, 0 otherwise).
            inserted_layers (`list[int]`, *optional*): positions of the new identity blocks (default: evenly spread).
            strict (`bool`): raise if a function-preserving growth moves the logits beyond the dtype's tolerance.
            verify (`bool`): compare both models on a probe batch and record it in `growth["preservation"]`.
        """
        small = cls._as_source(small)
        plan = GrowthPlan.from_configs(small.config, config, method, seed, noise_std, inserted_layers)
        state_dict = expand_state_dict(small.state_dict(), plan, progress=progress)
        target = cls.config_class.from_dict(plan.dst.to_dict())
        target._attn_implementation = small.config._attn_implementation  # grow with the kernel the parent runs
        big = model_from_state_dict(cls, target, state_dict)
        big.generation_config = small.generation_config
        report = verify_expansion(small, big) if verify else None
        big.growth, big.growth_plan = growth_record(small, plan, report), plan
        if strict and report is not None and plan.function_preserving:
            check_preservation(report, big.dtype)
        return big

    @classmethod
    def _as_source(cls, small) -> PreTrainedModel:
        if isinstance(small, str | os.PathLike):
            small = load_model(small)
        if not isinstance(small, PreTrainedModel):
            raise TypeError(f"small: expected a {cls.__name__} or a checkpoint path, got {type(small).__name__}")
        if small.config.model_type != cls.config_class.model_type:
            arch = architecture(small.config)  # refuses an architecture hf_progressive does not grow
            raise ExpansionError(
                f"model_type={arch.model_type!r}: {cls.__name__} grows {cls.config_class.model_type!r} models; use "
                f"Progressive{arch.prefix}ForCausalLM."
            )
        return small

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, then the vanilla `architectures` (e.g. `["Qwen3ForCausalLM"]`) and
        growth.json."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        self.config.architectures = [architecture(self.config).causal_lm]  # tools that dispatch on it find the class
        self.config.save_pretrained(save_directory)
        if self.growth is not None:
            write_json(Path(save_directory) / GROWTH_FILE, self.growth)


def growth_record(small, plan: GrowthPlan, report: dict | None) -> dict:
    """What growth.json holds: parent, operators, seed, the plan's index maps, per-tensor sources, preservation."""
    record = streaming_growth_record(str(getattr(small, "name_or_path", "") or ""), plan)
    return {**record, "preservation": report}


def progressive_classes(config) -> tuple[type, type]:
    """`(Progressive{Arch}Config, Progressive{Arch}ForCausalLM)` for the architecture of `config`."""
    import importlib

    arch = architecture(config)
    config_module = importlib.import_module(f".{arch.model_type}.configuration_{arch.model_type}", __package__)
    model_module = importlib.import_module(f".{arch.model_type}.modeling_{arch.model_type}", __package__)
    prefix = f"Progressive{arch.prefix}"
    return getattr(config_module, f"{prefix}Config"), getattr(model_module, f"{prefix}ForCausalLM")


__all__ = ["ProgressiveCausalLMMixin", "ProgressiveConfigMixin", "growth_record", "progressive_classes"]
