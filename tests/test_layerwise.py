"""Verification one layer at a time: the same report as loading both models whole (so strict mode catches the same
defects), at the memory of a layer, not of two models."""

import subprocess
import sys

import pytest
import torch
from testing_utils import tiny_model

from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.expansion.checkpoint import load_model
from hf_progressive.expansion.layerwise import verify_checkpoints
from hf_progressive.expansion.verification import verify_expansion


@pytest.mark.parametrize("method", ["function_preserving+identity", "fpi+stack", "aki+interpolate", "hypercloning"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_layerwise_report_equals_the_whole_model_report(tmp_path, method, tied, dtype):
    small = tiny_model(dtype=dtype, tie_word_embeddings=tied)
    small.save_pretrained(tmp_path / "small")
    config = ProgressiveLlamaConfig.from_smaller(small.config, hidden_size=64, num_hidden_layers=4)
    ProgressiveLlamaForCausalLM.from_smaller(small, config, method=method, verify=False).save_pretrained(
        tmp_path / "big"
    )
    whole = verify_expansion(load_model(tmp_path / "small"), load_model(tmp_path / "big"))
    layerwise = verify_checkpoints(tmp_path / "small", tmp_path / "big")
    assert whole["max_abs_logit_diff"] > 0 and layerwise["dtype"] == whole["dtype"]
    for key in ("max_abs_logit_diff", "mean_abs_logit_diff", "kl", "loss_small", "loss_big", "dtype_noise"):
        assert layerwise[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-6), key


MAKE = """
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
config = LlamaConfig(vocab_size=8000, hidden_size=768, intermediate_size=3072, num_hidden_layers=8,
                     num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=64)
LlamaForCausalLM(config).save_pretrained(sys.argv[1])
"""
EXPAND = """
import resource, sys
from hf_progressive.cli import main
code = main(["expand", sys.argv[1], sys.argv[2], "--num-hidden-layers", "12", "--method", "stack", *sys.argv[3:]])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _expand_peak_mb(tmp_path, name: str, *extra: str) -> float:
    run = subprocess.run(
        [sys.executable, "-c", EXPAND, str(tmp_path / "src"), str(tmp_path / name), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    code, peak = run.stdout.split()[-2:]
    assert code == "0", run.stderr[-2000:]
    return int(peak) / 1024


@pytest.mark.slow  # a 91M-parameter checkpoint: real-size memory
def test_verification_costs_about_a_layer_not_two_models(tmp_path):
    """A 91M-parameter fp32 source (364 MB) grown to 12 layers (540 MB): loading both models whole would add about
    900 MB to the peak of an unverified expand; verifying layer by layer adds a small fraction of that."""
    subprocess.run([sys.executable, "-c", MAKE, str(tmp_path / "src")], check=True, timeout=600)
    unverified = _expand_peak_mb(tmp_path, "plain", "--no-verify")
    verified = _expand_peak_mb(tmp_path, "checked")
    assert verified - unverified < 200, (unverified, verified)
