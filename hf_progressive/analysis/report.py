"""The family report: OUT/report.md plus PNG plots (training loss against cumulative FLOPs, validation loss per
member, the KL matrix as a heatmap, lm-eval results), optionally side by side with a baseline build of the same
recipe (`--baseline OTHER_OUT`, e.g. the independent mode). The FLOPs saving is computed two ways: by budget (the
ledgers) and to reach equal loss (the cumulative FLOPs at which a progressive member's evaluation curve, linear
between evaluations, first reaches the baseline member's final validation loss)."""

import json
from pathlib import Path

import torch
from transformers.utils import logging

from ..data.blocks import as_ids, held_out_blocks
from ..data.token_store import TokenStore
from ..errors import CheckpointError
from ..expansion.checkpoint import load_model
from ..family.ledger import FamilyPaths, Ledger, covers, read_family
from ..utils.io import read_json, write_atomic, write_json
from .consistency import consistency


logger = logging.get_logger(__name__)


def family_consistency(
    out: str | Path,
    blocks: torch.Tensor | None = None,
    pairs: str = "all",
    max_blocks: int = 64,
    batch_size: int = 8,
    data: str | None = None,
) -> dict:
    """KL between the members of `out` on held-out blocks: `blocks`, or text file(s) `data` packed with the family's
    tokenizer, or by default the family's own validation blocks; writes OUT/consistency.json."""
    paths, ledger = FamilyPaths(out), read_family(out)
    store = TokenStore.open(paths.store(ledger))
    if data is not None:
        blocks = held_out_blocks(store.tokenizer_dir, data, ledger.seq_len, max_blocks)
    blocks = as_ids(store.validation) if blocks is None else blocks
    models = {name: load_model(paths.member(name)) for name in ledger.members}  # each as its own architecture
    result = consistency(models, blocks[:max_blocks], batch_size=batch_size, pairs=pairs, progress=True)
    write_json(paths.consistency, result)
    return result


def curves(out: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per member: `train` and `eval` as (cumulative FLOPs, loss) points from its training log."""
    paths, result = FamilyPaths(out), {}
    for name in Ledger.read(out).members:
        history = json.loads(paths.training_log(name).read_text())["log_history"]
        result[name] = {
            kind: [(e["cumulative_flops"], e[key]) for e in history if key in e and "cumulative_flops" in e]
            for kind, key in (("train", "loss"), ("eval", "eval_loss"))
        }
    return result


def first_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The FLOPs at which the (FLOPs, loss) curve `points` first comes down to `target`, linear between the two
    evaluations that straddle it (the first evaluation itself when it is already there); None: never."""
    for i, (flops, loss) in enumerate(points):
        if loss <= target:
            if i == 0:
                return flops
            before, above = points[i - 1]
            return before + (flops - before) * (above - target) / (above - loss)
    return None


def equal_loss_savings(out: Path, baseline: Path) -> list[dict]:
    """For each member: the baseline member's final validation loss, the FLOPs the baseline spent on it, and the
    cumulative FLOPs at which this run's member first reached that loss (`first_reach`; None: not reached)."""
    ours, theirs = Ledger.read(out), Ledger.read(baseline)
    ours_curves = curves(out)
    rows = []
    for name, record in ours.members.items():
        base = theirs.members.get(name)
        if base is None:
            continue
        reached = first_reach(ours_curves[name]["eval"], base.val_loss)
        rows.append(
            {
                "member": name,
                "target_loss": base.val_loss,
                "final_loss": record.val_loss,
                "baseline_flops": base.flops_stage,
                "flops_to_target": reached,
                "saving": None if reached is None else 1 - reached / base.flops_stage,
            }
        )
    return rows


def write_report(
    out: str | Path,
    baseline: str | Path | None = None,
    others: list | None = None,
    report_dir: str | Path | None = None,
) -> Path:
    """Render report.md and its plots (in `report_dir`, default OUT) for OUT, optionally beside a `baseline` run and
    `others` (more variants of the same recipe); computes consistency.json where it is missing."""
    out = Path(out)
    report_dir = Path(report_dir or out)
    paths = [out, *(Path(p) for p in others or []), *([Path(baseline)] if baseline else [])]
    for path in paths[1:]:
        check_comparable(out, path)
    runs = {_label(path): path for path in paths}
    family = {label: FamilyPaths(path) for label, path in runs.items()}
    for run in family.values():  # missing, or computed before the family grew: recompute
        if not covers(read_json(run.consistency), Ledger.read(run.root)):
            family_consistency(run.root)
    from .plots import plot_eval, plot_kl, plot_loss_vs_flops, plot_val_loss

    plots = {
        "loss_vs_flops.png": plot_loss_vs_flops({label: curves(path) for label, path in runs.items()}),
        "val_loss.png": plot_val_loss({label: Ledger.read(path) for label, path in runs.items()}),
        "kl_heatmap.png": plot_kl({label: read_json(paths.consistency) for label, paths in family.items()}),
    }
    evals = {label: read_json(p.eval_results) for label, p in family.items() if p.eval_results.is_file()}
    for label in [label for label, table in evals.items() if not covers(table, Ledger.read(runs[label]))]:
        logger.warning(f"{runs[label]}: lm-eval results do not cover every member; left out (rerun evaluate)")
        del evals[label]
    if evals:
        plots["eval.png"] = plot_eval({label: e["members"] for label, e in evals.items()})
    report_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    for name, figure in plots.items():
        figure.savefig(report_dir / name, dpi=120, bbox_inches="tight")
        plt.close(figure)  # pyplot keeps every figure open otherwise (a long process would hold them all)
    from .report_text import render

    equal = {_label(p): equal_loss_savings(p, Path(baseline)) for p in paths[:-1]} if baseline else {}
    text = render(out, runs, evals, list(plots), equal)
    report = FamilyPaths(report_dir).report
    write_atomic(report, lambda handle: handle.write(text.encode()))
    return report


def check_comparable(out: Path, other: Path) -> None:
    """A baseline or variant must be a build of the same recipe with the same members (one line otherwise)."""
    if Path(other).resolve() == Path(out).resolve():
        raise CheckpointError(f"{other}: is the family itself; give another build of its recipe as the baseline.")
    ours, theirs = Ledger.read(out), read_family(other)
    if theirs.recipe != ours.recipe or list(theirs.members) != list(ours.members):
        raise CheckpointError(
            f"{other}: a build of recipe {theirs.recipe!r} with members {list(theirs.members)}, not comparable with "
            f"{out} ({ours.recipe!r}: {list(ours.members)}); compare builds of the same recipe."
        )
    if theirs.max_steps != ours.max_steps:
        raise CheckpointError(
            f"{other}: built with --max-steps-per-stage {theirs.max_steps}, {out} with {ours.max_steps}; compare "
            "builds of the same budget."
        )


def _label(path: Path) -> str:
    mode = Ledger.read(path).mode
    return mode if path.name == mode else f"{mode} ({path.name})"


__all__ = ["check_comparable", "curves", "equal_loss_savings", "family_consistency", "first_reach", "write_report"]
