"""Compute accounting for a model family, as pure arithmetic: parameter counts, token budgets per stage for each
training mode, FLOPs per stage, and the per-member max learning rate. No tensors, no I/O.

Two figures, kept apart on purpose:
- FLOPs (the plan, the ledger, the report, savings): what the model actually computes per training token (fwd +
  bwd), the PaLM / MFU convention = 6 * N_matmul + 12 * num_hidden_layers * seq_len * num_attention_heads * head_dim.
  N_matmul counts every parameter that takes part in a matmul per token (all but the input embedding table; a tied
  table counts once, as the output head). The attention term is QK^T and the weighted sum over all seq_len keys,
  2 * 2 * seq_len * d_attn forward, x3 with the backward: the full score matrix, as eager and SDPA kernels compute
  it (no discount for the causal mask). Tested against torch's FlopCounterMode within 2%.
- The budget rule (`stage_tokens`): the paper's 6 * N * D with N the total parameter count, which fixes how many
  tokens each stage trains on so that the cumulative 6ND after stage k equals member k's own 6 N_k D_k."""

import copy
import math
from dataclasses import dataclass

from ..errors import RecipeError
from ..expansion.sizes import parameter_counts


MODES = ("independent", "progressive", "progressive_fixed_data")
CHINCHILLA_TOKENS_PER_PARAM = 20


def flops_per_token(config, seq_len: int) -> int:
    """Training FLOPs per token the model computes (see the module docstring)."""
    attention = 12 * config.num_hidden_layers * seq_len * config.num_attention_heads * config.head_dim
    return 6 * parameter_counts(config)["matmul"] + attention


def flops_per_added_layer(config, seq_len: int) -> int:
    """Training FLOPs per token of one more decoder layer than `config` has (Apollo's virtual depths run shared
    layers: no new parameters, but every pass through a layer costs its FLOPs)."""
    deeper = copy.copy(config)
    deeper.num_hidden_layers = config.num_hidden_layers + 1
    return flops_per_token(deeper, seq_len) - flops_per_token(config, seq_len)


def stage_flops_per_token(flops_per_token: float, frozen: int, lora: int) -> float:
    """Training FLOPs per token of a stage with `frozen` frozen weights and `lora` LoRA adapter weights: a frozen
    weight still costs its forward and activation-gradient matmuls (4 per token), only its weight gradient (2) is
    saved; each adapter weight costs a full 6. So 6 N - 2 N_frozen + 6 N_lora (+ attention, in `flops_per_token`)."""
    return flops_per_token - 2 * frozen + 6 * lora


def token_budgets(params: list[int], tokens_per_param: list[float]) -> list[float]:
    """D_k = tokens_per_param_k * N_k: each member's independent (compute-optimal style) budget."""
    return [n * k for n, k in zip(params, tokens_per_param, strict=True)]


def stage_tokens(params: list[int], budgets: list[float], mode: str) -> list[float]:
    """New tokens each stage trains on. independent: D_k. progressive and progressive_fixed_data: D_k - (N_{k-1} /
    N_k) D_{k-1}, so that the cumulative 6ND FLOPs after stage k equal member k's independent FLOPs 6 N_k D_k."""
    if mode not in MODES:
        raise RecipeError(f"mode={mode!r}: choose one of {', '.join(MODES)}.")
    if mode == "independent":
        return list(budgets)
    stages = [budgets[0]]
    for k in range(1, len(budgets)):
        tokens = budgets[k] - params[k - 1] / params[k] * budgets[k - 1]
        if tokens <= 0:
            raise RecipeError(
                f"members[{k}]: stage {k} would train {tokens:.3g} tokens (D_k={budgets[k]:.3g} does not exceed the "
                f"parent's share {params[k - 1] / params[k] * budgets[k - 1]:.3g}); raise its tokens_per_param."
            )
        stages.append(tokens)
    return stages


@dataclass(frozen=True)
class Window:
    """Stage k reads `length` tokens of the stream starting at `start`, modulo `cap` (the unique data available to
    the run; `None`: unbounded, the stream only moves forward)."""

    start: int
    length: int
    cap: int | None = None

    def spans(self) -> list[tuple[int, int]]:
        """Contiguous [begin, end) ranges of the stream, in reading order."""
        if self.cap is None:
            return [(self.start, self.start + self.length)]
        spans, position, left = [], self.start % self.cap, self.length
        while left > 0:
            take = min(left, self.cap - position)
            spans.append((position, position + take))
            position, left = 0, left - take
        return spans


def stage_windows(stage_lengths: list[int], budgets: list[int], mode: str) -> list[Window]:
    """Where each stage reads. independent: every member from the start of the stream. progressive: stage k continues
    where stage k-1 stopped. progressive_fixed_data: same, but the unique data is capped at the largest member's
    independent budget, so a stage that runs past the cap rewinds to the start (reuses earlier stages' tokens)."""
    if mode == "independent":
        return [Window(0, length) for length in stage_lengths]
    cap = max(budgets) if mode == "progressive_fixed_data" else None
    starts = [sum(stage_lengths[:k]) for k in range(len(stage_lengths))]
    return [Window(start, length, cap) for start, length in zip(starts, stage_lengths, strict=True)]


def interpolate_lr(params: list[int], smallest: float, largest: float) -> list[float]:
    """Max LR per member, log-linear in parameter count between the smallest and the largest member (Yano et al.
    2025 use 1.5e-3 at 1B to 3.0e-4 at 8B)."""
    lo, hi = math.log(params[0]), math.log(params[-1])
    if hi == lo:
        return [smallest for _ in params]
    return [
        math.exp(math.log(smallest) + (math.log(n) - lo) / (hi - lo) * (math.log(largest) - math.log(smallest)))
        for n in params
    ]


def saving(progressive_flops: float, independent_flops: float) -> float:
    """Fraction of compute saved: 1 - progressive / independent."""
    return 1.0 - progressive_flops / independent_flops


__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM",
    "MODES",
    "Window",
    "flops_per_added_layer",
    "flops_per_token",
    "interpolate_lr",
    "parameter_counts",
    "saving",
    "stage_flops_per_token",
    "stage_tokens",
    "stage_windows",
    "token_budgets",
]
