"""hf_progressive: build a family of Llama models by progressive training with model expansion."""

__version__ = "0.1.0"

from .builder import build_family
from .configuration_llama import ProgressiveLlamaConfig
from .consistency import consistency
from .errors import CheckpointError, ExpansionError
from .expansion import expand_state_dict, expand_tensor
from .family import plan_family
from .modeling_llama import ProgressiveLlamaForCausalLM
from .plan import DEPTH_METHODS, WIDTH_METHODS, GrowthPlan
from .recipe import Recipe, RecipeError, load_recipe
from .streaming import expand_checkpoint
from .trainer import ProgressiveTrainer, ProgressiveTrainingArguments
from .verification import verify_expansion


__all__ = [
    "DEPTH_METHODS",
    "WIDTH_METHODS",
    "CheckpointError",
    "ExpansionError",
    "GrowthPlan",
    "ProgressiveLlamaConfig",
    "ProgressiveLlamaForCausalLM",
    "ProgressiveTrainer",
    "ProgressiveTrainingArguments",
    "Recipe",
    "RecipeError",
    "__version__",
    "build_family",
    "consistency",
    "expand_checkpoint",
    "expand_state_dict",
    "expand_tensor",
    "load_recipe",
    "plan_family",
    "verify_expansion",
]
