"""Expansion as math on state dicts. One operator signature, `expand_tensor(key, load, plan) -> Tensor`: the grown
tensor `key`, computed from the source tensors that `load(source_key)` returns, following a resolved `GrowthPlan`.
It is pure (never mutates what `load` returns), keeps dtype and device, and draws randomness only from a generator
seeded by (plan.seed, key), so tensors can be produced one at a time, in any order, in memory or streamed.

Width rules, per tensor axis role (see keys.py):
- "in" (fan-in): copied units share the old weight, divided by the copy count (bert2BERT FPI; HyperCloning's 1/n);
  paired noise that sums to zero over each copy group keeps this exact. For the hidden axis the division lives in the
  RMSNorm gains instead (every reader of the residual stream sits behind one), which also covers tied embeddings.
  Fresh units (Gesmundo & Maile 2023): random when reading the residual stream, zero otherwise.
- "out": copied units copy rows (AKI takes non-first copies from the next layer); fresh rows are random, except rows
  written into the residual stream and biases, which start at zero.
- "gain" (RMSNorm over hidden): gamma' = gamma * sqrt(r) / count with r = plan.norm_ratio (eps scaled by r).
Depth: inserted identity blocks (LLaMA Pro) zero the tensors that write into the residual stream."""

import functools
import math
import zlib
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .architectures import TensorSpec
from .heads import fill_rows, normed_head, rescale_normed_heads, scales_queries, widen_head_gain, widen_head_rows
from .keys import expected_keys, layer_key, rows_per_unit, split_layer_key, storage_key, tensor_spec
from .plan import FRESH, PER_LAYER_AXES, GrowthPlan


StateDict = dict[str, torch.Tensor]
Loader = Callable[[str], torch.Tensor]


def tensor_generator(seed: int, key: str) -> torch.Generator:
    """The generator for all random draws of one grown tensor: independent of the order tensors are produced in."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)


def source_keys(key: str, plan: GrowthPlan) -> tuple[str, str | None]:
    """`(source key, donor key or None)` that grown tensor `key` is computed from (donor: AKI's next layer)."""
    layer, suffix = split_layer_key(key)
    if layer is None:
        return key, None
    source = plan.layers[layer]
    donor = layer_key(source.donor, suffix) if plan.width_method == "aki" else None
    return layer_key(source.source, suffix), donor


@torch.no_grad()
def expand_tensor(key: str, load: Loader, plan: GrowthPlan) -> torch.Tensor:
    """The grown tensor `key` (a key of `LlamaForCausalLM(plan.dst)`), computed from the tensors `load` returns."""
    key = storage_key(key, plan.dst)
    spec, (source, donor) = tensor_spec(key, plan.dst), source_keys(key, plan)
    generator = tensor_generator(plan.seed, key)
    loaded = load(source)
    out = _widen(loaded, spec, plan, generator, None if donor is None else load(donor))
    if out is loaded and not getattr(load, "fresh", False):  # nothing grew: copy, never alias the source's tensor
        out = out.clone()  # (a loader whose every call returns a new tensor says `fresh`; then no copy is needed)
    layer, _ = split_layer_key(key)
    if _identity_block(layer, plan) and spec.writes_residual:
        out = torch.zeros_like(out)  # LLaMA Pro: the inserted block starts as the identity
    return out.contiguous()


def expand_state_dict(state_dict: StateDict, plan: GrowthPlan, progress: bool = False) -> StateDict:
    """Grow a whole state dict in memory (the input is left untouched). Keys and shapes are exactly those of
    `LlamaForCausalLM(plan.dst).state_dict()`; tied keys share one tensor."""
    missing = [key for key in expected_keys(plan.src) if storage_key(key, plan.src) not in state_dict]
    if missing:
        raise KeyError(f"the source state dict lacks {len(missing)} Llama tensors, e.g. {missing[:3]}")

    def load(key: str) -> torch.Tensor:
        return state_dict[key] if key in state_dict else state_dict[storage_key(key, plan.src)]

    grown: StateDict = {}
    for key in tqdm(expected_keys(plan.dst), desc="expanding", unit="tensor", disable=not progress):
        owner = storage_key(key, plan.dst)
        grown[key] = grown[owner] if owner in grown else expand_tensor(key, load, plan)
    return grown


@torch.no_grad()
def carry_tensor(key: str, load: Loader, plan: GrowthPlan, power: int = 1) -> torch.Tensor:
    """An AdamW moment for grown parameter `key` (`power` 1: `exp_avg`, 2: `exp_avg_sq`) from the parent's moments
    that `load` returns, by staged training's per-copy rule (Shen et al. 2022): every copy takes its source's moment
    (AKI's later copies: the donor layer's, as their weights do) times `gradient_share ** power`; fresh entries are
    zero. For a function-preserving growth the carried `exp_avg` of a parent gradient is the grown model's gradient."""
    key = storage_key(key, plan.dst)
    out = _gather_entries(key, load, plan)
    compute = torch.promote_types(out.dtype, torch.float32)
    scaled = out.to(compute) * gradient_share(key, plan).to(device=out.device, dtype=compute) ** power
    return torch.where(fresh_entries(key, plan).to(out.device), 0.0, scaled).to(out.dtype).contiguous()


def _gather_entries(key: str, load: Loader, plan: GrowthPlan) -> torch.Tensor:
    """Per-entry values of grown tensor `key` gathered from its source's (AKI's later copies: its donor's)."""
    spec, (source, donor) = tensor_spec(key, plan.dst), source_keys(key, plan)
    out = _gather_copies(load(source), spec, plan)
    later = _later_copies(spec, plan) if donor is not None else None
    if later is not None and bool(later.any()):
        out = torch.where(later.to(out.device), _gather_copies(load(donor), spec, plan), out)
    return out


def gradient_share(key: str, plan: GrowthPlan) -> torch.Tensor:
    """Float64 factor per entry of grown tensor `key`: its gradient over its source entry's gradient, at a growth that
    preserves the function. A source entry feeds N copies, each `a` times its value (a = 1/count for a fan-in, except
    the hidden fan-in, whose division lives in the RMSNorm gains: a = sqrt(r)/count there); the copies are
    interchangeable, so each gets 1/(N a) of the source's gradient: 1/count per "out" or hidden "in" axis, 1 per
    other "in" axis, 1/sqrt(r) for a gain. Depth copies are whole blocks, not splits: no factor. Old query
    dimensions scaled by `plan.query_scale` (head_dim growth) take 1/query_scale."""
    factors, spec = [], tensor_spec(storage_key(key, plan.dst), plan.dst)
    for axis, role in spec.axes:
        if axis == "vocab":
            factors.append(torch.ones(plan.dst.vocab_size, dtype=torch.float64))
        elif axis == "head_dim":
            share = 1 / plan.query_scale if spec.head == "query" else 1.0
            factors.append(torch.full((plan.dst.head_dim,), share, dtype=torch.float64))
        elif role == "gain":
            factors.append(torch.full((len(_row_map(plan, axis, "cpu")),), 1 / math.sqrt(plan.norm_ratio)))
        elif role == "in" and axis != "hidden":
            factors.append(torch.ones(len(_row_map(plan, axis, "cpu")), dtype=torch.float64))
        else:
            rows, counts = _row_map(plan, axis, "cpu"), _row_counts(plan, axis, "cpu")
            share = torch.where(rows == FRESH, 1.0, 1 / counts[rows.clamp(min=0)].clamp(min=1))
            factors.append(share / plan.query_scale if scales_queries(spec, axis, plan) else share)
    normed = normed_head(spec, plan) and plan.norm_ratio != 1  # rows scaled by sqrt(r): gradients by 1/sqrt(r)
    return _outer(factors) / math.sqrt(plan.norm_ratio) if normed else _outer(factors)


def fresh_entries(key: str, plan: GrowthPlan) -> torch.Tensor:
    """Boolean mask over grown tensor `key`: True where the entry copies nothing from the parent (a fresh unit along
    some axis, or anything in an inserted identity block); their optimizer state starts as a fresh AdamW's."""
    key = storage_key(key, plan.dst)
    spec, (layer, _) = tensor_spec(key, plan.dst), split_layer_key(key)
    per_axis = [
        torch.zeros(plan.dst.vocab_size, dtype=torch.bool) if axis == "vocab" else _row_map(plan, axis, "cpu") == FRESH
        for axis, _role in spec.axes
    ]
    mask = _outer(per_axis, torch.logical_or)
    return torch.ones_like(mask) if _identity_block(layer, plan) else mask


def carry_state_dict(state: dict[str, dict], plan: GrowthPlan) -> dict[str, dict]:
    """AdamW state for the grown model (`{name: {"step", "exp_avg", "exp_avg_sq"[, "fresh", "born"]}}`, as
    `trainer.optimizer_state_by_name` writes it), mapped from the parent's `state` with `carry_tensor`. The parent's
    step is kept (the copies' moments are that old); tensors with fresh entries get `fresh` and `born` so that
    `optim.GrownAdamW` corrects those by their own age. Left out: inserted identity blocks (all fresh: a fresh AdamW
    state) and parameters whose sources have no state (frozen in the parent's stage). Entries the parent itself still
    held as fresh restart as fresh, and so do Qwen3's q/k projections when head_dim grows (the per-head RMSNorm's
    Jacobian then spans the new dimensions, so their gradient is no rescaling of the parent's). Tied aliases appear
    once, as their storage key, as in `named_parameters()`."""
    carried = {}
    for key in expected_keys(plan.dst):
        layer, _ = split_layer_key(key)
        sources = [k for k in source_keys(key, plan) if k is not None]
        if storage_key(key, plan.dst) != key or any(source not in state for source in sources):
            continue
        if _identity_block(layer, plan):
            continue
        carried[key] = _carry_entry(key, state, plan)
    return carried


def _carry_entry(key: str, state: dict[str, dict], plan: GrowthPlan) -> dict:
    step = state[source_keys(key, plan)[0]]["step"]
    entry = {"step": step.clone() if torch.is_tensor(step) else step}
    for power, moment in ((1, "exp_avg"), (2, "exp_avg_sq")):
        entry[moment] = carry_tensor(key, lambda k, m=moment: state[k][m], plan, power)
    fresh = fresh_entries(key, plan)
    if normed_head(tensor_spec(storage_key(key, plan.dst), plan.dst), plan) and not plan.unchanged("head_dim"):
        fresh = torch.ones_like(fresh)  # per-head RMSNorm over a grown head: no per-copy rule is exact; restart
    if any("fresh" in state[k] for k in source_keys(key, plan) if k is not None):  # still young in the parent
        young = _gather_entries(
            key, lambda k: state[k].get("fresh", torch.zeros_like(state[k]["exp_avg"], dtype=torch.bool)), plan
        )
        fresh = fresh | young.bool().cpu()
    if bool(fresh.any()):
        for moment in ("exp_avg", "exp_avg_sq"):
            entry[moment] = entry[moment].masked_fill(fresh.to(entry[moment].device), 0)
        entry.update(fresh=fresh, born=int(step))
    return entry


def new_entries(key: str, plan: GrowthPlan) -> torch.Tensor:
    """Boolean mask over grown tensor `key`: True where the entry is new (fresh, a later copy, AKI-sourced, or in a
    layer that is not the first copy of its old layer), False where it is the old entry carried over (possibly
    rescaled, as RMSNorm gains are)."""
    key = storage_key(key, plan.dst)
    spec, (layer, _) = tensor_spec(key, plan.dst), split_layer_key(key)
    per_axis = []
    for axis, _role in spec.axes:
        if axis == "vocab":
            per_axis.append(torch.zeros(plan.dst.vocab_size, dtype=torch.bool))
        else:
            per_axis.append(~plan.first_rows(axis))
    mask = _outer(per_axis, torch.logical_or)
    if layer is not None and plan.layers[layer].inserted:
        mask = torch.ones_like(mask)
    return mask


def new_entry_count(key: str, plan: GrowthPlan) -> int:
    """`int(new_entries(key, plan).sum())` without building the mask: an entry is old only where every axis is at an
    old row (the first copy of its unit), so the count is the tensor's size minus the product of old rows per axis
    (all of it in a layer that is not the first copy of its old layer). O(units), not O(entries)."""
    key = storage_key(key, plan.dst)
    spec, (layer, _) = tensor_spec(key, plan.dst), split_layer_key(key)
    total, old = 1, 1
    for axis, _role in spec.axes:
        if axis == "vocab":
            total, old = total * plan.dst.vocab_size, old * plan.dst.vocab_size
            continue
        first = plan.first_rows(axis)
        total, old = total * len(first), old * int(first.sum())
    return total if layer is not None and plan.layers[layer].inserted else total - old


def _identity_block(layer: int | None, plan: GrowthPlan) -> bool:
    """Whether grown layer `layer` is a block the identity depth operator inserted (LLaMA Pro: nothing inherited)."""
    return layer is not None and plan.layers[layer].inserted and plan.depth_method == "identity"


def _later_rows(plan: GrowthPlan, axis: str, device) -> torch.Tensor:
    """Per row of `axis`: True for a later (not the first) copy of its old unit; AKI sources these from the donor."""
    return (~plan.first_rows(axis) & (plan.rows(axis) != FRESH)).to(device)


def _outer(factors: list[torch.Tensor], combine=torch.mul) -> torch.Tensor:
    """Combine one vector per axis into a tensor over all axes (a product for factors, an or for masks)."""
    if len(factors) == 1:
        return factors[0]
    return combine(factors[0][:, None], factors[1][None, :])


def _gather_copies(tensor: torch.Tensor, spec: TensorSpec, plan: GrowthPlan) -> torch.Tensor:
    """`tensor` gathered along every growing axis by the index maps (fresh rows read row 0; callers mask them)."""
    for dim, (axis, _role) in enumerate(spec.axes):
        if axis != "vocab" and not plan.unchanged(axis):
            tensor = _gather(tensor, dim, _row_map(plan, axis, tensor.device))
    return tensor


def _later_copies(spec: TensorSpec, plan: GrowthPlan) -> torch.Tensor:
    """AKI: the entries whose out-row is a later copy of a per-layer unit (sourced from the donor layer)."""
    per_axis = []
    for axis, role in spec.axes:
        if role == "out" and axis in PER_LAYER_AXES:
            per_axis.append(_later_rows(plan, axis, "cpu"))
        else:
            size = plan.dst.vocab_size if axis == "vocab" else len(_row_map(plan, axis, "cpu"))
            per_axis.append(torch.zeros(size, dtype=torch.bool))
    return _outer(per_axis, torch.logical_or)


def _widen(tensor, spec: TensorSpec, plan: GrowthPlan, generator, donor=None) -> torch.Tensor:
    std = functools.cache(functools.partial(_std, tensor, plan))  # computed only if a random draw needs it
    out = tensor
    for dim, (axis, role) in enumerate(spec.axes):  # fan-in first, so copied rows carry identical in-weights
        if role == "in":
            out = _widen_in(out, dim, axis, plan, generator, std)
            donor = None if donor is None else _widen_in(donor, dim, axis, plan, generator, std)
    for dim, (axis, role) in enumerate(spec.axes):
        if role == "out":
            out = _widen_out(out, dim, axis, spec, plan, generator, std, donor)
        elif role == "gain":
            out = widen_head_gain(out, spec, plan) if axis == "head_dim" else _widen_gain(out, plan)
    return rescale_normed_heads(out, spec, plan)


def _std(tensor: torch.Tensor, plan: GrowthPlan) -> float:
    """Scale of new random weights: the source tensor's own std (the init range for a constant tensor)."""
    std = _sample_std(tensor) if tensor.numel() > 1 else 0.0
    return std if std > 0 else plan.src.initializer_range


def _sample_std(tensor: torch.Tensor) -> float:
    """`tensor.float().std()`, without a float copy of a half-precision tensor: its moments are summed in float64 over
    chunks of 2**18 entries (3x faster for a bf16 FFN matrix, and as exact to the digits that matter)."""
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor.std().item()
    total, squares, n = 0.0, 0.0, tensor.numel()
    for chunk in tensor.reshape(-1).split(1 << 18):
        chunk = chunk.float()
        total += chunk.sum(dtype=torch.float64).item()
        squares += chunk.square().sum(dtype=torch.float64).item()
    return max((squares - total * total / n) / (n - 1), 0.0) ** 0.5


def _randn(shape, generator, like: torch.Tensor, std) -> torch.Tensor:
    return (torch.randn(shape, generator=generator, dtype=torch.float32) * std()).to(like.dtype).to(like.device)


def _row_map(plan: GrowthPlan, axis: str, device: torch.device) -> torch.Tensor:
    return plan.rows(axis).to(device)


def _row_counts(plan: GrowthPlan, axis: str, device: torch.device) -> torch.Tensor:
    counts = torch.tensor(plan.maps[axis].counts, dtype=torch.float64)
    return counts.repeat_interleave(rows_per_unit(axis, plan.src.head_dim)).to(device)


def _gather(tensor: torch.Tensor, dim: int, rows: torch.Tensor) -> torch.Tensor:
    """`tensor.index_select(dim, rows)` (FRESH rows read row 0 and are overwritten later), with a fast path for the
    common map that keeps every old row in place and appends new ones: a block copy instead of a gather."""
    n_old = tensor.shape[dim]
    if len(rows) > n_old and torch.equal(rows[:n_old], torch.arange(n_old, device=rows.device)):
        tail = tensor.index_select(dim, rows[n_old:].clamp(min=0))
        return torch.cat([tensor, tail], dim=dim)
    return tensor.index_select(dim, rows.clamp(min=0))


def _widen_in(tensor, dim: int, axis: str, plan: GrowthPlan, generator, std) -> torch.Tensor:
    """(.., in_old, ..) -> (.., in_new, ..) along the fan-in axis `dim`."""
    if plan.unchanged(axis):
        return tensor
    rows, counts = _row_map(plan, axis, tensor.device), _row_counts(plan, axis, tensor.device)
    kept, fresh = rows != FRESH, rows == FRESH
    out = _gather(tensor, dim, rows)  # (.., in_new, ..), gathered in place of the axis
    if axis != "hidden" and bool((counts > 1).any()):  # hidden-axis fan-in is divided in the RMSNorm gains
        compute = torch.promote_types(out.dtype, torch.float32)
        scale = torch.where(kept, 1.0 / counts[rows.clamp(min=0)], 1.0).to(compute)
        out = (out.to(compute) * scale.view([-1 if d == dim else 1 for d in range(out.dim())])).to(tensor.dtype)
    if fresh.any():  # Gesmundo & Maile: new readers of the residual stream random, new writers into it zero
        shape = [int(fresh.sum()) if d == dim else n for d, n in enumerate(out.shape)]
        fill_rows(out, dim, fresh, _randn(shape, generator, out, std) if axis == "hidden" else 0)
    if plan.noise_std and bool((counts > 1).any()):
        noise = _paired_noise(rows, counts, out.movedim(dim, 0), generator, plan.noise_std * std())
        out = out + noise.movedim(0, dim)
    return out


def _paired_noise(rows, counts, like, generator, std: float) -> torch.Tensor:
    """Noise that sums to exactly zero (up to rounding) over every group of copies of one old unit: copies see the
    same input, so their outputs still add up to the original (HyperCloning's symmetry-breaking noise)."""
    kept = rows != FRESH
    noise = (torch.randn(like.shape, generator=generator, dtype=torch.float64) * std).to(like.device)
    noise[~kept] = 0
    sums = torch.zeros((len(counts), *like.shape[1:]), dtype=torch.float64, device=like.device)
    sums.index_add_(0, rows[kept], noise[kept])
    mean = sums / counts.clamp(min=1).view(-1, *[1] * (like.dim() - 1))
    noise[kept] -= mean[rows[kept]]
    return noise.to(like.dtype)


def _widen_out(tensor, dim, axis, spec: TensorSpec, plan: GrowthPlan, generator, std, donor) -> torch.Tensor:
    """(.., out_old, ..) -> (.., out_new, ..): copy the rows of copied units, fill fresh ones."""
    if plan.unchanged(axis):
        return tensor
    rows = _row_map(plan, axis, tensor.device)
    out = _gather(tensor, dim, rows)
    along = (slice(None),) * dim
    if donor is not None and axis in PER_LAYER_AXES:  # AKI (bert2BERT): new units come from the next layer
        later = _later_rows(plan, axis, rows.device)
        out[along + (later,)] = donor.index_select(dim, rows[later])
    fresh = (rows == FRESH) & ~plan.fresh_dims(axis).to(rows.device)  # fresh dims: _widen_head_rows
    if fresh.any():
        zero = axis == "hidden" or spec.is_bias  # residual writes and biases start at zero
        shape = [int(fresh.sum()) if d == dim else n for d, n in enumerate(out.shape)]
        fill_rows(out, dim, fresh, 0 if zero else _randn(shape, generator, out, std))
    return widen_head_rows(tensor, out, dim, axis, spec, plan)


def _widen_gain(gain: torch.Tensor, plan: GrowthPlan) -> torch.Tensor:
    """RMSNorm gain over the hidden axis: gamma' = gamma[source] * sqrt(r) / count[source]; fresh -> mean * sqrt(r)."""
    if plan.maps["hidden"].unchanged:
        return gain
    rows, counts = _row_map(plan, "hidden", gain.device), _row_counts(plan, "hidden", gain.device)
    root = math.sqrt(plan.norm_ratio)
    kept = rows != FRESH
    out = gain.double().index_select(0, rows.clamp(min=0))
    out = torch.where(kept, out * root / counts[rows.clamp(min=0)], gain.double().mean() * root)
    return out.to(gain.dtype)


__all__ = [
    "Loader",
    "StateDict",
    "carry_state_dict",
    "carry_tensor",
    "expand_state_dict",
    "expand_tensor",
    "fresh_entries",
    "gradient_share",
    "new_entries",
    "new_entry_count",
    "source_keys",
    "tensor_generator",
]
