"""Streaming expansion of sharded checkpoints: bit-identical to in-memory from_smaller, valid index, vanilla load,
source dtype kept, nothing left behind when interrupted."""

import json

import pytest
import torch
from safetensors.torch import load_file
from testing_utils import tiny_model
from transformers import LlamaForCausalLM

from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.expansion.arguments import parse_size
from hf_progressive.expansion.streaming import expand_checkpoint


SIZES = dict(hidden_size=64, intermediate_size=80, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)


def _checkpoint(tmp_path, tied=False, dtype=torch.float32, shard="20KB"):
    path = tmp_path / f"src-{tied}-{dtype}"
    tiny_model(tie_word_embeddings=tied, dtype=dtype).save_pretrained(path, max_shard_size=shard)
    return path


def _read_all(path):
    if (path / "model.safetensors.index.json").is_file():
        index = json.loads((path / "model.safetensors.index.json").read_text())
        tensors = {}
        for shard in sorted(set(index["weight_map"].values())):
            tensors.update(load_file(path / shard))
        return tensors, index
    return load_file(path / "model.safetensors"), None


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize(
    "method, sizes, noise",
    [
        ("function_preserving", SIZES, 0.0),
        ("fpi", SIZES, 0.05),
        ("aki+stack", SIZES, 0.0),
        ("hypercloning", {**SIZES, "intermediate_size": 74}, 0.05),
    ],
)
def test_streaming_matches_in_memory_bit_for_bit(tmp_path, tied, method, sizes, noise):
    src = _checkpoint(tmp_path, tied)
    assert len(list(src.glob("model-*.safetensors"))) > 1  # a sharded source
    config = ProgressiveLlamaConfig.from_smaller(LlamaForCausalLM.from_pretrained(src).config, **sizes)
    dst = expand_checkpoint(
        src, tmp_path / "dst", config, method, seed=3, noise_std=noise, max_shard_size="40KB", progress=False
    )
    streamed, index = _read_all(dst)
    assert index is not None and len(set(index["weight_map"].values())) > 1
    assert set(index["weight_map"]) == set(streamed)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in streamed.values())
    big = ProgressiveLlamaForCausalLM.from_smaller(str(src), config, method=method, seed=3, noise_std=noise)
    in_memory = big.state_dict()
    for key, tensor in streamed.items():
        assert torch.equal(tensor, in_memory[key]), key
    assert ("lm_head.weight" in streamed) is not tied
    vanilla = LlamaForCausalLM.from_pretrained(dst)
    ids = torch.randint(0, 99, (2, 9))
    with torch.no_grad():
        assert torch.equal(vanilla(ids).logits, big(ids).logits)
    config_json = json.loads((dst / "config.json").read_text())
    assert config_json["architectures"] == ["LlamaForCausalLM"] and config_json["model_type"] == "llama"
    growth = json.loads((dst / "growth.json").read_text())
    assert growth["operator"].startswith(method.split("+")[0]) and growth["preservation"] is None


def test_streaming_keeps_bf16_and_single_file_for_small_outputs(tmp_path):
    src = _checkpoint(tmp_path, dtype=torch.bfloat16, shard="5GB")
    config = ProgressiveLlamaConfig.from_smaller(LlamaForCausalLM.from_pretrained(src).config, **SIZES)
    dst = expand_checkpoint(src, tmp_path / "dst", config, progress=False)
    tensors, index = _read_all(dst)
    assert index is None and all(t.dtype == torch.bfloat16 for t in tensors.values())
    reference = ProgressiveLlamaForCausalLM.from_smaller(str(src), config).state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in tensors.items())


def test_interrupted_streaming_leaves_no_dst(tmp_path, monkeypatch):
    src = _checkpoint(tmp_path)
    config = ProgressiveLlamaConfig.from_smaller(LlamaForCausalLM.from_pretrained(src).config, **SIZES)
    calls = {"n": 0}
    original = __import__("hf_progressive.expansion.streaming", fromlist=["expand_tensor"]).expand_tensor

    def flaky(key, load, plan):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return original(key, load, plan)

    monkeypatch.setattr("hf_progressive.expansion.streaming.expand_tensor", flaky)
    with pytest.raises(KeyboardInterrupt):
        expand_checkpoint(src, tmp_path / "out" / "dst", config, max_shard_size="40KB", progress=False)
    assert not (tmp_path / "out").exists()  # neither DST nor the folder created for it


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("40KB") == 40_000 and parse_size(123) == 123
