"""What growing heads does inside a head, shared by every architecture: head_dim growth on the q/k/v rows
(`widen_head_rows`) and on per-head norm gains (`widen_head_gain`), and Qwen3's q/k projections rescaled for the norm
eps they share with the hidden norms (`rescale_normed_heads`). Per-tensor, pure, the signature of operators.py's
helpers; the index maps come from the plan (`rows`, `fresh_dims`, `tiles`)."""

import torch

from .architectures import TensorSpec, architecture
from .plan import FRESH, GrowthPlan


def fill_rows(out: torch.Tensor, dim: int, rows: torch.Tensor, value) -> None:
    """`out[..., rows, ...] = value` along `dim` for a boolean `rows`; a slice when the rows are one block (the usual
    appended units), which is ten times faster than a masked write along a column."""
    where = rows.nonzero().flatten()
    first, last = int(where[0]), int(where[-1])
    if last - first + 1 == len(where):
        target = out.narrow(dim, first, len(where))
        target.copy_(value) if torch.is_tensor(value) else target.fill_(value)
    else:
        out[(slice(None),) * dim + (rows,)] = value


def rescale_normed_heads(out: torch.Tensor, spec: TensorSpec, plan: GrowthPlan) -> torch.Tensor:
    """Qwen3's per-head q/k norms share `rms_norm_eps` with the hidden norms, which the plan scales by r (the norm
    ratio, see `GrowthPlan.norm_ratio`). Multiplying the q and k projections by sqrt(r) scales their mean square by r
    too, so (v r + eps r) / (v + eps) = r and the per-head norms' outputs are unchanged."""
    if not normed_head(spec, plan) or plan.norm_ratio == 1:
        return out
    compute = torch.promote_types(out.dtype, torch.float32)
    return (out.to(compute) * torch.tensor(plan.norm_ratio, dtype=torch.float64).sqrt().to(compute)).to(out.dtype)


def normed_head(spec: TensorSpec, plan: GrowthPlan) -> bool:
    """Whether `spec` is a q or k projection (or bias) whose output passes a per-head RMSNorm."""
    return spec.head in ("query", "key") and spec.axes[0][0] in ("q", "kv") and architecture(plan.dst).head_norms


def widen_head_rows(tensor, out, dim: int, axis: str, spec: TensorSpec, plan: GrowthPlan) -> torch.Tensor:
    """head_dim growth, on the rows of a q/k/v projection (or bias) along head axis `dim`. A fresh dimension inside a
    copied head copies the old dimension before it (`plan.tiles`), except a query's without a per-head norm, which is
    zero: the score of a query and a key then gains nothing from the new rotary pairs (o_proj's zero columns do the
    same for values). Old query dimensions take `plan.query_scale` to undo the larger softmax divisor."""
    fresh = plan.fresh_dims(axis).to(out.device)
    if not bool(fresh.any()):
        return out
    if spec.head == "query" and not architecture(plan.dst).head_norms:
        fill_rows(out, dim, fresh, 0)
    else:
        fill_rows(out, dim, fresh, tensor.index_select(dim, plan.tiles(axis).to(out.device)[fresh]))
    if scales_queries(spec, axis, plan):
        kept = (plan.rows(axis) != FRESH).to(out.device)
        compute = torch.promote_types(out.dtype, torch.float32)
        scale = torch.full(kept.shape, plan.query_scale, dtype=compute).masked_fill(~kept, 1.0)  # exact in float64
        out = (out.to(compute) * scale.view([-1 if d == dim else 1 for d in range(out.dim())])).to(out.dtype)
    return out


def scales_queries(spec: TensorSpec, axis: str, plan: GrowthPlan) -> bool:
    """Whether rows along `axis` of a tensor laid out as `spec` carry the query scale (the q projection and its bias,
    when there is no per-head query norm to carry it)."""
    grows = not plan.unchanged("head_dim")
    return grows and axis == "q" and spec.head == "query" and not architecture(plan.dst).head_norms


def widen_head_gain(gain: torch.Tensor, spec: TensorSpec, plan: GrowthPlan) -> torch.Tensor:
    """A per-head RMSNorm gain over head_dim (Qwen3's q_norm / k_norm). Old dimensions move with their rotary pair; a
    query's take `plan.query_scale`, and its fresh dimensions start at zero (the projection rows feeding them are
    copies, which keeps the norm's RMS, and a zero gain keeps them out of the scores while its gradient is not zero); a
    key's fresh dimensions copy the gain of the dimension they copy."""
    if plan.unchanged("head_dim"):
        return gain
    rows, tiles = plan.rows("head_dim").to(gain.device), plan.tiles("head_dim").to(gain.device)
    compute = torch.promote_types(gain.dtype, torch.float32)
    if spec.head == "query":
        out = torch.where(rows == FRESH, 0.0, gain.to(compute)[rows.clamp(min=0)] * plan.query_scale)
    else:
        out = gain.to(compute)[tiles]
    return out.to(gain.dtype)


__all__ = ["fill_rows", "normed_head", "rescale_normed_heads", "scales_queries", "widen_head_gain", "widen_head_rows"]
