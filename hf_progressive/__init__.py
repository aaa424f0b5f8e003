"""hf_progressive: build a family of Llama models by progressive training with model expansion."""

__version__ = "0.2.0"

import importlib

from .configuration_llama import ProgressiveLlamaConfig
from .errors import CheckpointError, DataError, ExpansionError, HfProgressiveError, RecipeError
from .expansion import expand_state_dict, expand_tensor
from .modeling_llama import ProgressiveLlamaForCausalLM
from .plan import DEPTH_METHODS, WIDTH_METHODS, GrowthPlan
from .verification import verify_expansion


# name -> module, imported on first use: the trainer side pulls in accelerate and the Trainer, which a user who only
# grows a model should not pay for at import time
_LAZY = {
    "ProgressiveTrainer": "trainer",
    "ProgressiveTrainingArguments": "trainer",
    "build_family": "builder",
    "expand_checkpoint": "streaming",
    "load_recipe": "recipe",
    "plan_family": "family",
    "Recipe": "recipe",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_progressive' has no attribute {name!r}")


__all__ = [
    "DEPTH_METHODS",
    "WIDTH_METHODS",
    "CheckpointError",
    "DataError",
    "ExpansionError",
    "GrowthPlan",
    "HfProgressiveError",
    "ProgressiveLlamaConfig",
    "ProgressiveLlamaForCausalLM",
    "ProgressiveTrainer",
    "ProgressiveTrainingArguments",
    "Recipe",
    "RecipeError",
    "__version__",
    "build_family",
    "expand_checkpoint",
    "expand_state_dict",
    "expand_tensor",
    "load_recipe",
    "plan_family",
    "verify_expansion",
]
