"""Parameter-efficient growth stages: frozen inherited layers stay bit-identical, LoRA stages merge into vanilla
members that match the PEFT model, new layers always train, and the ledger reports trainable parameters,
optimizer-state bytes and the FLOPs actually spent."""

import json

import torch
from safetensors.torch import load_file
from testing_utils import BIG, SMALL, STEPS, tiny_model, tiny_recipe
from transformers import LlamaForCausalLM

from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.family.builder import build_family
from hf_progressive.family.recipe import MemberSpec
from hf_progressive.training.peft_stage import finish_stage_model, inherited_layers, prepare_stage_model


def _grown():
    small = tiny_model()
    config = ProgressiveLlamaConfig.from_smaller(small.config, num_hidden_layers=4, hidden_size=64)
    return small, ProgressiveLlamaForCausalLM.from_smaller(small, config)


def test_inherited_layers_come_from_the_growth_record():
    _, big = _grown()
    assert inherited_layers(big) == [0, 2]  # identity blocks inserted at 1 and 3


def test_lora_merged_model_matches_peft_logits_and_loads_vanilla(tmp_path):
    _, big = _grown()
    peft_model = prepare_stage_model(big, MemberSpec(train_inherited="lora", lora_r=4))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_" in n and "layers.0." in n for n in trainable)
    assert not any("lora_" in n and "layers.1." in n for n in trainable)  # new layers train fully, no adapters
    assert any("layers.1.mlp.up_proj.base_layer" in n or "layers.1.mlp.up_proj.weight" in n for n in trainable)
    assert not any("layers.0.mlp.up_proj.base_layer.weight" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 99, (4, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        optimizer.zero_grad()
        peft_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(input_ids=ids).logits
    merged = finish_stage_model(peft_model)
    merged.save_pretrained(tmp_path)
    vanilla = LlamaForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        after = vanilla(ids).logits
    assert (before - after).abs().max().item() <= 1e-5
    assert not any("lora" in key for key in load_file(tmp_path / "model.safetensors"))


def _family(tmp_path, mode):
    recipe = tiny_recipe(tmp_path, members=[SMALL, {**BIG, "train_inherited": mode, "lora_r": 4}])
    build_family(recipe, tmp_path / mode, max_steps=STEPS)
    ledger = json.loads((tmp_path / mode / "family.json").read_text())
    return ledger, load_file(tmp_path / mode / "members" / "m1-L2-H48" / "model.safetensors")


def test_frozen_stage_keeps_inherited_layers_bit_identical_and_trains_new_ones(tmp_path):
    ledger, weights = _family(tmp_path, "frozen")
    parent = tmp_path / "frozen" / "members" / "m0-L1-H32"
    config = ProgressiveLlamaConfig.from_smaller(LlamaForCausalLM.from_pretrained(parent).config, **BIG)
    grown = ProgressiveLlamaForCausalLM.from_smaller(str(parent), config).state_dict()
    inherited = [k for k in weights if k.startswith("model.layers.0.")]
    new = [k for k in weights if k.startswith("model.layers.1.")]
    assert inherited and all(torch.equal(weights[k], grown[k]) for k in inherited)
    assert all(not torch.equal(weights[k], grown[k]) for k in new)
    record = ledger["members"]["m1-L2-H48"]
    assert record["train_inherited"] == "frozen" and record["trainable_params"] < record["params"]["total"]


def test_lora_stage_saves_a_vanilla_member_and_spends_less_optimizer_memory(tmp_path):
    full, _ = _family(tmp_path, "full")
    lora, weights = _family(tmp_path, "lora")
    assert not any("lora" in key for key in weights)
    parent = tmp_path / "lora" / "members" / "m0-L1-H32"
    config = ProgressiveLlamaConfig.from_smaller(LlamaForCausalLM.from_pretrained(parent).config, **BIG)
    grown = ProgressiveLlamaForCausalLM.from_smaller(str(parent), config).state_dict()
    assert all(not torch.equal(weights[k], grown[k]) for k in weights if k.startswith("model.layers.1."))  # new
    assert not torch.equal(weights["model.layers.0.mlp.up_proj.weight"], grown["model.layers.0.mlp.up_proj.weight"])
    member = LlamaForCausalLM.from_pretrained(tmp_path / "lora" / "members" / "m1-L2-H48")
    assert member.config.architectures == ["LlamaForCausalLM"]
    f, r = full["members"]["m1-L2-H48"], lora["members"]["m1-L2-H48"]
    assert r["trainable_params"] < f["trainable_params"] and r["optimizer_state_bytes"] < f["optimizer_state_bytes"]
    assert r["flops_stage"] < f["flops_stage"] and f["flops_stage"] == f["flops_per_token"] * f["tokens"]
