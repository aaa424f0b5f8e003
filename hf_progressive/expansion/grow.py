"""Grow a checkpoint directory into a larger one, end to end: stream the expansion into a temp folder beside DST
(bounded memory), run both checkpoints layer by layer to measure preservation, enforce `strict`, write growth.json,
and only then move the result into place. A failed growth (bad input, strict tolerance exceeded, full disk) never
touches an existing DST.

    from hf_progressive.expansion.arguments import GrowArguments
    from hf_progressive.expansion.grow import grow_checkpoint
    growth = grow_checkpoint("./small", "./big", GrowArguments(hidden_size=64, num_hidden_layers=4))
"""

from pathlib import Path

import torch

from ..errors import CheckpointError, ExpansionError
from ..utils.io import read_json, write_json
from .arguments import GrowArguments
from .checkpoint import atomic_output_dir, check_weights, prepare_output_dir, read_config, resolve_source
from .plan import GrowthPlan
from .record import GROWTH_FILE
from .sizes import grown_config, parameter_counts
from .streaming import check_room, output_guard, write_expansion
from .verification import check_preservation


def grow_checkpoint(src: str, dst: str, args: GrowArguments, progress: bool = True) -> dict:
    """Grow checkpoint `src` (a folder, or a Hub id where the network allows) into `dst` as `args` says; returns the
    growth record (growth.json). DST appears, complete and verified, in one rename; on any failure it is unchanged."""
    if not args.sizes():
        raise ExpansionError(
            "no target size: give at least one of --hidden-size, --intermediate-size, --num-hidden-layers, "
            "--num-attention-heads, --num-key-value-heads, --head-dim (without one, expand would only copy SRC)."
        )
    _check_apart(src, dst)
    guard = output_guard(src)
    prepare_output_dir(dst, args.overwrite, **guard)  # fail before any work
    src_dir = resolve_source(src)
    check_weights(src_dir)  # missing, truncated or mis-shaped source weights fail before anything is planned
    check_target_size(src_dir, dst, args)
    plan = plan_growth(src_dir, args)
    if args.strict and not plan.function_preserving:
        raise ExpansionError(
            f"--strict: {args.method} to these sizes does not preserve the function by design (see `hf-progressive "
            "demo`), so strict does not apply; drop --strict, or use function_preserving+identity."
        )
    with atomic_output_dir(dst, args.overwrite, **guard) as tmp:
        write_expansion(src_dir, tmp, plan, args.max_shard_size, progress)
        growth = {**read_json(tmp / GROWTH_FILE), "parent": src}
        if args.verify:
            growth["preservation"] = _verified(src_dir, tmp, args.strict and plan.function_preserving)
        write_json(tmp / GROWTH_FILE, growth)
    return growth


def _check_apart(src: str, dst: str) -> None:
    """DST may be neither SRC, nor inside it, nor a folder that holds it (an --overwrite would destroy the source)."""
    if not Path(src).exists():
        return  # a Hub id
    source, target = Path(src).resolve(), Path(dst).resolve()
    where = (
        "is the source"
        if source == target
        else "is inside the source"
        if source in target.parents
        else "holds the source"
        if target in source.parents
        else None
    )
    if where:
        raise CheckpointError(f"{dst}: {where} checkpoint {src}; write the grown checkpoint to a separate folder.")


def plan_growth(src_dir: str | Path, args: GrowArguments) -> GrowthPlan:
    """The resolved plan of growing checkpoint `src_dir` as `args` says (deterministic: the same on every process)."""
    source_config = read_config(src_dir)
    config = grown_config(source_config, **args.sizes())
    return GrowthPlan.from_configs(source_config, config, args.method, args.seed, args.noise_std, args.inserted_layers)


def _dtype(config) -> torch.dtype:
    """The dtype a checkpoint's weights are stored in (float32 when its config does not say)."""
    dtype = getattr(torch, str(getattr(config, "dtype", None) or "float32").removeprefix("torch."), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def check_target_size(src_dir: Path, dst: str | Path, args: GrowArguments) -> None:
    """Say the size first: the grown weights must fit DST's disk and its largest tensor the memory, checked from the
    sizes alone, before any index map or tensor of the target is built."""
    source = read_config(src_dir)
    config = grown_config(source, **args.sizes())
    itemsize = _dtype(source).itemsize
    d, head = config.hidden_size, config.num_attention_heads * config.head_dim
    largest = d * max(config.vocab_size, config.intermediate_size, head)
    existing = next(p for p in [Path(dst), *Path(dst).absolute().parents] if p.exists())
    check_room(existing, parameter_counts(config)["total"] * itemsize, largest * itemsize)


def _verified(src_dir: Path, grown_dir: Path, strict: bool) -> dict:
    """Preservation of the grown checkpoint against its source, one layer in memory at a time (`layerwise`);
    `ExpansionError` if `strict` and it is exceeded."""
    from .layerwise import verify_checkpoints  # the modeling code: imported only when a growth is verified

    report = verify_checkpoints(src_dir, grown_dir)
    if strict:
        check_preservation(report, getattr(torch, report["dtype"]))
    return report


def format_growth(growth: dict) -> str:
    """The preservation report printed after a growth."""
    plan, report = growth["plan"], growth["preservation"]
    rows = [(name, f"{old} -> {plan['dst_sizes'][name]}") for name, old in plan["src_sizes"].items()]
    counts = growth["num_parameters"]
    rows.append(("parameters", f"{counts['parent']:,} -> {counts['grown']:,} ({counts['new']:,} new)"))
    rows.append(("function preserving", "yes" if plan["function_preserving"] else "no (by design of the operator)"))
    if report:
        rows += [
            ("max |delta logits|", f"{report['max_abs_logit_diff']:.3g}"),
            ("mean |delta logits|", f"{report['mean_abs_logit_diff']:.3g}"),
            ("KL(small || big)", f"{report['kl']:.3g}"),
            ("loss small / big", f"{report['loss_small']:.4f} / {report['loss_big']:.4f}"),
        ]
    header = f"grew {growth['parent']} with {growth['operator']} (seed {growth['seed']})"
    return "\n".join([header] + [f"  {label:<22}{value}" for label, value in rows])


__all__ = ["format_growth", "grow_checkpoint", "plan_growth"]
