"""The AdamW state a grown model inherits (`optimizer.at_growth: carry`), checked against independent oracles in
float64: the grown model's own autograd gradient, and the parent's own AdamW step on the same batch.

- Function-preserving growths (without paired noise, which by design makes the copies' gradients differ): with the
  parent's moments set from its gradient on a batch, the carried `exp_avg` of every copied entry equals the grown
  model's true gradient on that batch and `exp_avg_sq` its square (1e-6).
- First post-growth step: copied entries move exactly as the parent's AdamW moved their source; fresh entries move at
  most `lr`, also with beta2 = 0.999 after 1,000 parent steps (plain AdamW with zero fresh moments does not).
- Operators that do not preserve the function (interpolate, stack, aki): the same per-copy rule, on the maps."""

import copy
import functools
import math

import pytest
import torch
from testing_utils import carried_and_true, float64_rms_norm, tiny_model

from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.expansion.operators import carry_state_dict, carry_tensor, fresh_entries
from hf_progressive.expansion.plan import FRESH
from hf_progressive.training.optim import GrownAdamW


DOUBLE = {"hidden_size": 64, "intermediate_size": 74, "num_attention_heads": 8, "num_key_value_heads": 4}
UNEVEN = {"hidden_size": 48, "intermediate_size": 80, "num_attention_heads": 6, "num_key_value_heads": 3}
PRESERVING = [
    # (id, method, target sizes)
    ("fpi 2x", "fpi", DOUBLE),
    ("fpi 2x + identity", "fpi+identity", {**DOUBLE, "num_hidden_layers": 4}),
    ("hypercloning 2x", "hypercloning", DOUBLE),
    ("function_preserving", "function_preserving", UNEVEN),
    ("function_preserving + identity", "function_preserving+identity", {**UNEVEN, "num_hidden_layers": 3}),
    ("identity depth", "function_preserving+identity", {"num_hidden_layers": 4}),
]
TIED = [pytest.param(False, id="untied"), pytest.param(True, id="tied")]
LR, BETAS = 1e-3, (0.9, 0.999)


def _batch(vocab: int, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 12), generator=torch.Generator().manual_seed(seed))


def _grow(small, method, sizes):
    config = ProgressiveLlamaConfig.from_smaller(small.config, **sizes)
    return ProgressiveLlamaForCausalLM.from_smaller(small, config, method=method, seed=1, noise_std=0.0, verify=False)


def _largest(values: torch.Tensor) -> float:
    return values.abs().max().item() if values.numel() else 0.0


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp(min=1e-300)).item()


@pytest.mark.parametrize("tied", TIED)
@pytest.mark.parametrize("method, sizes", [pytest.param(m, s, id=i) for i, m, s in PRESERVING])
def test_carried_moments_are_the_grown_models_true_gradient(method, sizes, tied):
    with float64_rms_norm():
        small = tiny_model(dtype=torch.float64, tie_word_embeddings=tied)
        ids = _batch(small.config.vocab_size)
        big, carried, true = carried_and_true(small, lambda model: _grow(model, method, sizes), ids)
    checked = 0
    for name, grad in true.items():
        if name not in carried:  # an inserted identity block: a fresh AdamW state
            assert torch.all(fresh_entries(name, big.growth_plan))
            continue
        copied = ~fresh_entries(name, big.growth_plan)
        if grad[copied].norm() == 0:
            continue
        assert _relative_error(carried[name]["exp_avg"][copied], grad[copied]) <= 1e-6, name
        assert _relative_error(carried[name]["exp_avg_sq"][copied], grad[copied] ** 2) <= 1e-6, name
        checked += 1
    assert checked >= len(true) // 2


@functools.cache
def _trained_parent(tied: bool, steps: int = 1000):
    """A float64 parent and its AdamW (beta2 0.999) after `steps` steps on random batches (shared: read only)."""
    small = tiny_model(dtype=torch.float64, tie_word_embeddings=tied)
    optimizer = torch.optim.AdamW(small.parameters(), lr=LR, betas=BETAS, eps=1e-30, weight_decay=0.0)
    for step in range(steps):
        ids = _batch(small.config.vocab_size, seed=100 + step % 50)
        optimizer.zero_grad()
        small(ids, labels=ids).loss.backward()
        optimizer.step()
    return small, optimizer


def _state_by_name(model, optimizer) -> dict[str, dict]:
    return {name: copy.deepcopy(optimizer.state[param]) for name, param in model.named_parameters()}


def _one_step(model, ids, optimizer) -> dict[str, torch.Tensor]:
    """How far `optimizer` moves each parameter on `ids`."""
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    optimizer.zero_grad()
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    return {name: param.detach() - before[name] for name, param in model.named_parameters()}


def _grown_step(big, carried, ids, optimizer_cls=GrownAdamW) -> dict[str, torch.Tensor]:
    optimizer = optimizer_cls(big.parameters(), lr=LR, betas=BETAS, eps=1e-30, weight_decay=0.0)
    for name, param in big.named_parameters():
        if name in carried:
            optimizer.state[param] = copy.deepcopy(carried[name])
    return _one_step(big, ids, optimizer)


@pytest.mark.parametrize("tied", TIED)
@pytest.mark.parametrize("method, sizes", [pytest.param(m, s, id=i) for i, m, s in PRESERVING])
def test_first_step_after_growth_moves_copies_like_the_parent_and_fresh_entries_at_most_lr(method, sizes, tied):
    with float64_rms_norm():
        small, optimizer = _trained_parent(tied)
        state, ids = _state_by_name(small, optimizer), _batch(small.config.vocab_size, seed=7)
        big = _grow(small, method, sizes)
        parent_move = _parent_step(small, optimizer, ids)
        moves = _grown_step(big, carry_state_dict(state, big.growth_plan), ids)
    for name, move in moves.items():
        fresh = fresh_entries(name, big.growth_plan)
        want = carry_tensor(name, parent_move.__getitem__, big.growth_plan, power=0)  # the source entry's move
        if (~fresh).any() and want[~fresh].norm() > 0:
            assert _relative_error(move[~fresh], want[~fresh]) <= 1e-6, name
        assert _largest(move[fresh]) <= LR * (1 + 1e-9), name


def _parent_step(small, optimizer, ids) -> dict[str, torch.Tensor]:
    """How far the parent's own AdamW moves the parent on `ids` (on a copy of both)."""
    twin = copy.deepcopy(small)
    moved = torch.optim.AdamW(twin.parameters(), lr=LR, betas=BETAS, eps=1e-30, weight_decay=0.0)
    moved.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return _one_step(twin, ids, moved)


def test_plain_adamw_with_zero_fresh_moments_moves_fresh_entries_past_lr():
    """Negative control for the bound above: torch's AdamW with the parent's step and zeroed fresh moments (what
    `carry` did before GrownAdamW) moves fresh entries by up to (1 - beta1) / sqrt(1 - beta2^t) * lr."""
    with float64_rms_norm():
        small, optimizer = _trained_parent(False)
        state, ids = _state_by_name(small, optimizer), _batch(small.config.vocab_size, seed=7)
        big = _grow(small, "function_preserving", UNEVEN)
        carried = carry_state_dict(state, big.growth_plan)
        for entry in carried.values():
            entry.pop("fresh", None), entry.pop("born", None)
        moves = _grown_step(big, carried, ids, optimizer_cls=torch.optim.AdamW)
    worst = max(_largest(move[fresh_entries(n, big.growth_plan)]) for n, move in moves.items())
    assert worst > 2 * LR


# operators that do not preserve the function: the rule is checked on the maps, with an oracle written from
# plan.maps / plan.layers directly (row loops, no library gather)
MAPPED = [
    ("interpolate", "function_preserving+interpolate", {**UNEVEN, "num_hidden_layers": 4}),
    ("stack", "fpi+stack", {**DOUBLE, "num_hidden_layers": 4}),
    ("aki", "aki", DOUBLE),
    ("aki + stack", "aki+stack", {**UNEVEN, "num_hidden_layers": 3}),
]
PROBED = ["model.layers.{}.self_attn.q_proj.weight", "model.layers.{}.mlp.down_proj.weight"]


def _unit_rows(plan, axis: str) -> tuple[list[int], list[int], list[bool]]:
    """Per row of `axis`: source row (FRESH), copy count of the source unit, and whether it is a later copy."""
    per = plan.src.head_dim if axis in ("q", "kv") else 1
    counts, seen, sources, count, later = plan.maps[axis].counts, set(), [], [], []
    for unit in plan.maps[axis].sources:
        for offset in range(per):
            sources.append(FRESH if unit == FRESH else unit * per + offset)
            count.append(counts[unit] if unit != FRESH else 1)
            later.append(unit != FRESH and unit in seen)
        seen.add(unit)
    return sources, count, later


@pytest.mark.parametrize("method, sizes", [pytest.param(m, s, id=i) for i, m, s in MAPPED])
def test_per_copy_rule_on_the_maps(method, sizes):
    small = tiny_model()
    generator = torch.Generator().manual_seed(9)
    moments = {name: torch.randn(p.shape, generator=generator) for name, p in small.named_parameters()}
    plan = _grow(small, method, sizes).growth_plan
    q_out, hidden = _unit_rows(plan, "q"), _unit_rows(plan, "hidden")
    for layer, source in enumerate(plan.layers):
        for template, (out_rows, in_rows) in zip(
            PROBED, ((q_out, hidden), (hidden, _unit_rows(plan, "ffn"))), strict=True
        ):
            got = carry_tensor(template.format(layer), moments.__getitem__, plan)
            own, donor = moments[template.format(source.source)], moments[template.format(source.donor)]
            out_hidden = template.endswith("down_proj.weight")
            for j in range(got.shape[0]):
                for i in range(got.shape[1]):
                    want = _expected_entry(j, i, out_rows, in_rows, own, donor, method, out_hidden)
                    assert math.isclose(got[j, i].item(), want, rel_tol=1e-6, abs_tol=1e-9), (template, layer, j, i)


def _expected_entry(j, i, out_rows, in_rows, own, donor, method, out_hidden) -> float:
    (src_out, count_out, later_out), (src_in, count_in, _) = out_rows, in_rows
    if src_out[j] == FRESH or src_in[i] == FRESH:
        return 0.0
    table = donor if method.startswith("aki") and later_out[j] and not out_hidden else own
    share = 1 / count_out[j] * (1 / count_in[i] if not out_hidden else 1.0)  # hidden fan-in splits; ffn fan-in not
    return table[src_out[j], src_in[i]].item() * share


def test_grown_adamw_state_round_trips_and_drops_the_mask_once_ages_agree():
    param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    optimizer = GrownAdamW([param], lr=LR, betas=(0.5, 0.6), weight_decay=0.0)
    fresh = torch.tensor([True, False, True, False])
    optimizer.state[param] = {
        "step": torch.tensor(10.0),
        "exp_avg": torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
        "exp_avg_sq": torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
        "fresh": fresh,
        "born": 10,
    }
    twin_param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    twin = GrownAdamW([twin_param], lr=LR, betas=(0.5, 0.6), weight_decay=0.0)
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # torch casts `fresh` to float64 on the way
    assert twin.state[twin_param]["born"] == 10
    param.grad = torch.tensor([1.0, 1.0, -2.0, 1.0], dtype=torch.float64)
    twin_param.grad = param.grad.clone()
    optimizer.step()
    twin.step()
    assert torch.equal(param.detach(), twin_param.detach())
    assert torch.allclose(
        param.detach()[fresh].abs(), torch.full((2,), LR, dtype=torch.float64)
    )  # a fresh AdamW's first step: lr
    steps = 1
    while "fresh" in optimizer.state[param]:
        optimizer.step()
        steps += 1
    assert steps == math.ceil(math.log(1e-8) / math.log(0.6))
