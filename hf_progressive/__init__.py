"""hf_progressive: build a family of Llama models by progressive training with model expansion."""

__version__ = "0.1.0"

from .configuration_llama import ProgressiveLlamaConfig
from .errors import CheckpointError, ExpansionError
from .expansion import expand_state_dict, expand_tensor
from .modeling_llama import ProgressiveLlamaForCausalLM
from .plan import DEPTH_METHODS, WIDTH_METHODS, GrowthPlan
from .verification import verify_expansion


__all__ = [
    "DEPTH_METHODS",
    "WIDTH_METHODS",
    "CheckpointError",
    "ExpansionError",
    "GrowthPlan",
    "ProgressiveLlamaConfig",
    "ProgressiveLlamaForCausalLM",
    "__version__",
    "expand_state_dict",
    "expand_tensor",
    "verify_expansion",
]
