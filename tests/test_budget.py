"""Budget arithmetic: parameter counts, token budgets per mode, windows, LR interpolation, FLOPs."""

import math

import pytest
import torch
from testing_utils import tiny_config
from transformers import LlamaForCausalLM

from hf_progressive.errors import RecipeError
from hf_progressive.expansion.sizes import parameter_counts
from hf_progressive.family.budget import (
    Window,
    flops_per_token,
    interpolate_lr,
    saving,
    stage_tokens,
    stage_windows,
    token_budgets,
)


PAPER_PARAMS = [1e9, 2e9, 4e9, 8e9]
TWO_X_CHINCHILLA = [40] * 4


def test_paper_example_stage_tokens_and_saving():
    budgets = token_budgets(PAPER_PARAMS, TWO_X_CHINCHILLA)
    assert budgets == [40e9, 80e9, 160e9, 320e9]
    stages = stage_tokens(PAPER_PARAMS, budgets, "progressive")
    assert stages == [40e9, 60e9, 120e9, 240e9]
    progressive = sum(6 * n * d for n, d in zip(PAPER_PARAMS, stages, strict=True))
    independent = sum(6 * n * d for n, d in zip(PAPER_PARAMS, budgets, strict=True))
    assert saving(progressive, independent) == pytest.approx(1 - 2560 / 3400, abs=1e-15)
    assert round(saving(progressive, independent) * 100, 1) == 24.7


def test_progressive_cumulative_flops_equal_independent_flops_of_each_member():
    budgets = token_budgets(PAPER_PARAMS, TWO_X_CHINCHILLA)
    stages = stage_tokens(PAPER_PARAMS, budgets, "progressive")
    for k in range(4):
        cumulative = sum(6 * PAPER_PARAMS[j] * stages[j] for j in range(k + 1))
        assert cumulative == pytest.approx(6 * PAPER_PARAMS[k] * budgets[k])


def test_independent_and_fixed_data_modes():
    budgets = token_budgets(PAPER_PARAMS, TWO_X_CHINCHILLA)
    assert stage_tokens(PAPER_PARAMS, budgets, "independent") == budgets
    assert stage_tokens(PAPER_PARAMS, budgets, "progressive_fixed_data") == [40e9, 60e9, 120e9, 240e9]


def test_fixed_data_windows_rewind_to_reuse_earlier_tokens():
    windows = stage_windows([40, 60, 120, 240], [40, 80, 160, 320], "progressive_fixed_data")
    assert [w.spans() for w in windows] == [[(0, 40)], [(40, 100)], [(100, 220)], [(220, 320), (0, 140)]]
    unique = {i for w in windows for begin, end in w.spans() for i in range(begin, end)}
    assert len(unique) == 320  # capped at the largest member's independent budget
    progressive = stage_windows([40, 60, 120, 240], [40, 80, 160, 320], "progressive")
    assert [w.spans() for w in progressive][-1] == [(220, 460)]  # the stream only moves forward
    assert [w.spans() for w in stage_windows([40, 80], [40, 80], "independent")] == [[(0, 40)], [(0, 80)]]


def test_window_longer_than_cap_wraps_several_times():
    assert Window(5, 25, 10).spans() == [(5, 10), (0, 10), (0, 10)]


def test_non_growing_budget_is_rejected():
    with pytest.raises(RecipeError, match="members\\[1\\]: stage 1 would train"):
        stage_tokens([1e9, 2e9], [40e9, 10e9], "progressive")


def test_unknown_mode_is_rejected():
    with pytest.raises(RecipeError, match="mode='fast'"):
        stage_tokens([1e9], [1e9], "fast")


def test_lr_interpolates_log_linearly_in_params():
    lrs = interpolate_lr(PAPER_PARAMS, 1.5e-3, 3.0e-4)
    assert lrs[0] == pytest.approx(1.5e-3) and lrs[-1] == pytest.approx(3.0e-4)
    ratios = [math.log(lrs[k + 1] / lrs[k]) for k in range(3)]
    assert ratios == pytest.approx([ratios[0]] * 3)  # params double each time -> equal steps in log LR


@pytest.mark.parametrize(
    "overrides", [{}, {"tie_word_embeddings": True}, {"attention_bias": True, "mlp_bias": True}], ids=str
)
def test_parameter_counts_match_the_model(overrides):
    config = tiny_config(**overrides)
    model = LlamaForCausalLM(config)
    counts = parameter_counts(config)
    assert counts["total"] == model.num_parameters()
    tables = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
    assert counts["non_embedding"] == counts["total"] - tables


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": True}, {"attention_bias": True, "mlp_bias": True}])
def test_matmul_parameters_are_the_linear_layers_weights(overrides):
    """Oracle: the weights of every nn.Linear of the model (the output head too, tied or not), so not the input
    lookup, the norm gains or the biases."""
    model = LlamaForCausalLM(tiny_config(**overrides))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert parameter_counts(model.config)["matmul"] == linear


FLOP_SHAPES = [
    # (id, config overrides, seq_len): attention from ~10% to ~60% of the count
    ("tiny, gqa", {}, 32),
    ("long context", {"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 8}, 256),
    ("tied, wide ffn, 3 layers", {"tie_word_embeddings": True, "intermediate_size": 200, "num_hidden_layers": 3}, 64),
]


@pytest.mark.parametrize("overrides, seq_len", [pytest.param(o, t, id=i) for i, o, t in FLOP_SHAPES])
def test_flops_per_token_match_what_torch_counts_for_a_training_step(overrides, seq_len):
    """Oracle: torch's FlopCounterMode over one forward + backward with eager attention (every matmul it runs)."""
    from torch.utils.flop_counter import FlopCounterMode

    config = tiny_config(attn_implementation="eager", max_position_embeddings=seq_len, **overrides)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (2, seq_len), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(ids, labels=ids).loss.backward()
    measured = counter.get_total_flops() / ids.numel()
    assert flops_per_token(config, seq_len) == pytest.approx(measured, rel=0.02)
    attention = 12 * config.num_hidden_layers * seq_len * config.num_attention_heads * config.head_dim
    assert measured - 6 * parameter_counts(config)["matmul"] > 0.9 * attention  # the attention term is really there
