"""Parameter-efficient growth stages (STEP-style, Yano et al. 2025): after a growth, the layers inherited from the
parent train `full`y, stay `frozen`, or train through PEFT `lora` adapters, while new layers (inserted by depth
growth, read from growth.json's layer map) and the global tensors (embeddings, final norm, LM head) train fully. At
the end of the stage the adapters are merged (`merge_and_unload`), so every member is a vanilla Llama again.

Width growth note: an inherited layer's tensors are treated as inherited as a whole (their new rows and columns
included); under `frozen` those new coordinates stay as initialised, under `lora` they move only through the
low-rank update. Use `full` for stages that mostly widen."""

import torch
from transformers.utils import logging

from ..expansion.keys import split_layer_key


logger = logging.get_logger(__name__)
LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def inherited_layers(model) -> list[int]:
    """Indices of the layers that are the first copy of a parent layer (growth.json's layer map)."""
    growth = getattr(model, "growth", None) or {}
    layers = (growth.get("plan") or {}).get("layers")
    if not layers:
        return []
    return [index for index, layer in enumerate(layers) if not layer["inserted"]]


def prepare_stage_model(model, member):
    """`model` ready for a stage whose `member.train_inherited` is full, frozen or lora."""
    inherited = set(inherited_layers(model))
    if member.train_inherited == "full" or not inherited:
        return model
    if member.train_inherited == "frozen":
        for name, param in model.named_parameters():
            param.requires_grad_(split_layer_key(name)[0] not in inherited)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=member.lora_r,
        lora_alpha=member.lora_alpha,
        lora_dropout=member.lora_dropout,
        target_modules=member.lora_target_modules or LINEAR_MODULES,
        layers_to_transform=sorted(inherited),
        layers_pattern="layers",
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    for name, param in model.named_parameters():  # PEFT froze the base model: new layers and globals train fully
        if "lora_" not in name and split_layer_key(name)[0] not in inherited:
            param.requires_grad_(True)
    return peft_model


def finish_stage_model(model):
    """Merge LoRA adapters into the weights (no-op for plain models); unfreeze everything for the next stage."""
    if hasattr(model, "merge_and_unload"):
        growth = getattr(model.get_base_model(), "growth", None)
        model = model.merge_and_unload()
        model.growth = growth
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts, tied weights once, LoRA adapters included."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes held in the optimizer state (AdamW: both moments and the step counters)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return sum(
        v.numel() * v.element_size() for state in inner.state.values() for v in state.values() if torch.is_tensor(v)
    )


__all__ = [
    "finish_stage_model",
    "inherited_layers",
    "optimizer_state_bytes",
    "prepare_stage_model",
    "trainable_parameters",
]
