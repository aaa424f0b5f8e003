"""Consistency metrics: KL of a model with itself, KL right after a function-preserving growth, and a direct numpy
computation on a small case."""

import numpy as np
import pytest
import torch
from testing_utils import tiny_model

from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.analysis.consistency import consistency, format_consistency, kl_matrix


def _blocks(n=5, length=12, seed=0):
    return torch.randint(0, 99, (n, length), generator=torch.Generator().manual_seed(seed))


def test_kl_of_a_model_with_itself_is_zero():
    model = tiny_model()
    result = consistency({"a": model, "b": model}, _blocks())
    pair = result["pairs"][0]
    assert pair["kl_a_b"] == 0 and pair["kl_b_a"] == 0 and pair["top1_agreement"] == 1.0
    assert result["tokens"] == 5 * 11 and result["loss"]["a"] == result["loss"]["b"]


def test_kl_right_after_function_preserving_growth_is_tiny():
    small = tiny_model()
    config = ProgressiveLlamaConfig.from_smaller(
        small.config,
        hidden_size=64,
        num_hidden_layers=4,
        intermediate_size=80,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    big = ProgressiveLlamaForCausalLM.from_smaller(small, config)
    pair = consistency({"small": small, "big": big}, _blocks(), chunk_tokens=7)["pairs"][0]
    assert pair["kl_a_b"] <= 1e-6 and pair["kl_b_a"] <= 1e-6 and pair["top1_agreement"] == 1.0


@pytest.mark.parametrize("chunk_tokens", [3, 1000])
def test_kl_and_loss_match_numpy(chunk_tokens):
    a, b = tiny_model(seed=1), tiny_model(seed=2)
    blocks = _blocks(n=3, length=9)
    result = consistency({"a": a, "b": b}, blocks, batch_size=2, chunk_tokens=chunk_tokens)
    with torch.no_grad():
        la, lb = (m(blocks).logits[:, :-1].reshape(-1, 99).double().numpy() for m in (a, b))
    targets = blocks[:, 1:].reshape(-1).numpy()

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    pa, pb = log_softmax(la), log_softmax(lb)
    kl_ab = (np.exp(pa) * (pa - pb)).sum(-1).mean()
    kl_ba = (np.exp(pb) * (pb - pa)).sum(-1).mean()
    pair = result["pairs"][0]
    assert pair["kl_a_b"] == pytest.approx(kl_ab, rel=1e-4) and pair["kl_b_a"] == pytest.approx(kl_ba, rel=1e-4)
    assert pair["kl_mean"] == pytest.approx((kl_ab + kl_ba) / 2, rel=1e-4)
    assert pair["top1_agreement"] == pytest.approx((pa.argmax(-1) == pb.argmax(-1)).mean())
    assert result["loss"]["a"] == pytest.approx(-pa[np.arange(len(targets)), targets].mean(), rel=1e-5)
    assert kl_ab > 1e-3  # two different random models: non-vacuous


def test_adjacent_pairs_and_matrix():
    models = {name: tiny_model(seed=s) for s, name in enumerate(["s", "m", "l"])}
    result = consistency(models, _blocks(n=2), pairs="adjacent")
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [("s", "m"), ("m", "l")]
    matrix = kl_matrix(result, "kl_a_b")
    assert matrix[0][2] is None and matrix[1][1] == 0.0 and matrix[0][1] == result["pairs"][0]["kl_a_b"]
    assert matrix[1][0] == result["pairs"][0]["kl_b_a"]
    assert "KL (mean of both directions)" in format_consistency(result)
