"""hf_progressive: build a family of LLMs (Llama, Mistral, Qwen2, Qwen3) by progressive training with model
expansion."""

__version__ = "0.2.0"

import importlib


# name -> module, imported on first use: importing hf_progressive (or any of its modules, e.g. in a tokenizer worker
# process) costs nothing until a name is used; the trainer side pulls in accelerate and the Trainer, which a user who
# only grows a model should not pay for either
_LAZY = {
    "DEPTH_METHODS": "expansion.methods",
    "WIDTH_METHODS": "expansion.methods",
    "GrowthPlan": "expansion.plan",
    "CheckpointError": "errors",
    "DataError": "errors",
    "ExpansionError": "errors",
    "HfProgressiveError": "errors",
    "RecipeError": "errors",
    "ProgressiveLlamaConfig": "models.llama.configuration_llama",
    "ProgressiveLlamaForCausalLM": "models.llama.modeling_llama",
    "ProgressiveMistralConfig": "models.mistral.configuration_mistral",
    "ProgressiveMistralForCausalLM": "models.mistral.modeling_mistral",
    "ProgressiveQwen2Config": "models.qwen2.configuration_qwen2",
    "ProgressiveQwen2ForCausalLM": "models.qwen2.modeling_qwen2",
    "ProgressiveQwen3Config": "models.qwen3.configuration_qwen3",
    "ProgressiveQwen3ForCausalLM": "models.qwen3.modeling_qwen3",
    "expand_state_dict": "expansion.operators",
    "expand_tensor": "expansion.operators",
    "verify_expansion": "expansion.verification",
    "ProgressiveTrainer": "training.trainer",
    "ProgressiveTrainingArguments": "training.trainer",
    "build_family": "family.builder",
    "expand_checkpoint": "expansion.streaming",
    "load_recipe": "family.recipe",
    "plan_family": "family.family_plan",
    "Recipe": "family.recipe",
    "prepare_store": "data.token_store",
    "TokenStore": "data.token_store",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_progressive' has no attribute {name!r}")


__all__ = sorted([*_LAZY, "__version__"])
