"""hf_progressive: build a family of Llama models by progressive training with model expansion."""

__version__ = "0.2.0"

import importlib


# name -> module, imported on first use: importing hf_progressive (or any of its modules, e.g. in a tokenizer worker
# process) costs nothing until a name is used; the trainer side pulls in accelerate and the Trainer, which a user who
# only grows a model should not pay for either
_LAZY = {
    "DEPTH_METHODS": "plan",
    "WIDTH_METHODS": "plan",
    "GrowthPlan": "plan",
    "CheckpointError": "errors",
    "DataError": "errors",
    "ExpansionError": "errors",
    "HfProgressiveError": "errors",
    "RecipeError": "errors",
    "ProgressiveLlamaConfig": "configuration_llama",
    "ProgressiveLlamaForCausalLM": "modeling_llama",
    "expand_state_dict": "expansion",
    "expand_tensor": "expansion",
    "verify_expansion": "verification",
    "ProgressiveTrainer": "trainer",
    "ProgressiveTrainingArguments": "trainer",
    "build_family": "builder",
    "expand_checkpoint": "streaming",
    "load_recipe": "recipe",
    "plan_family": "family",
    "Recipe": "recipe",
    "prepare_store": "token_store",
    "TokenStore": "token_store",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_progressive' has no attribute {name!r}")


__all__ = sorted([*_LAZY, "__version__"])
