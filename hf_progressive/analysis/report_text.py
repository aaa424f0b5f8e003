"""The Markdown of report.md (tables from the ledgers, consistency and eval results, with the plots embedded) and the
ledger table `hf-progressive build-family` prints."""

import json
from pathlib import Path

from ..family.console import format_loss, partial_note
from ..family.ledger import FamilyPaths, Ledger
from .consistency import kl_matrix
from .evaluation import metric_columns


def _members_table(label: str, ledger: Ledger) -> list[str]:
    lines = [
        f"**{label}**",
        "",
        "| member | parent | inherited layers | params | trainable | optimizer state MB | tokens | stage FLOPs | "
        "cumulative FLOPs | wall s | train loss | val loss |",
        "| --- | --- | --- |" + " ---: |" * 9,
    ]
    for name, r in ledger.members.items():
        lines.append(
            f"| {name} | {r.parent or '-'} | {r.train_inherited if r.parent else '-'} | "
            f"{r.params['total']:,} | {r.trainable_params:,} | "
            f"{r.optimizer_state_bytes / 1e6:.2f} | {r.tokens:,} | {r.flops_stage:.3g} | "
            f"{r.flops_cumulative:.3g} | {r.wall_time_s:.1f} | {format_loss(r.final_train_loss, 4)} | "
            f"{r.val_loss:.4f} |"
        )
    return [*lines, ""]


def _compute(runs: dict[str, Path]) -> list[str]:
    lines = [
        "## Compute",
        "",
        "| run | total FLOPs | independent budget of the same members | saving by budget |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, path in runs.items():
        ledger = Ledger.read(path)
        totals = ledger.totals
        saving = "(baseline)" if ledger.mode == "independent" else f"{totals['saving']:.1%}"
        lines.append(f"| {label} | {totals['flops']:.4g} | {totals['flops_independent']:.4g} | {saving} |")
    *others, (base, base_path) = runs.items()
    measured = Ledger.read(base_path).totals["flops"]
    lines.append("")
    for label, path in others:  # measured against the last run (the baseline)
        spent = Ledger.read(path).totals["flops"]
        lines.append(
            f"Measured: {label} spent {spent:.4g} FLOPs, {base} {measured:.4g}: {1 - spent / measured:.1%} less."
        )
    return [*lines, ""]


def _equal_loss(label: str, rows: list[dict]) -> list[str]:
    lines = [
        f"## FLOPs to reach equal loss: {label}",
        "",
        "Cumulative FLOPs at which each member of this run first reached the baseline member's final validation "
        "loss (validation is measured every `eval_steps`; linear between the two evaluations that straddle it).",
        "",
        "| member | baseline final val loss | baseline FLOPs | FLOPs to reach it here | saving | val loss here |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        reached = "not reached" if r["flops_to_target"] is None else f"{r['flops_to_target']:.3g}"
        saving = "-" if r["saving"] is None else f"{r['saving']:.1%}"
        lines.append(
            f"| {r['member']} | {r['target_loss']:.4f} | {r['baseline_flops']:.3g} | {reached} | {saving} | "
            f"{r['final_loss']:.4f} |"
        )
    return [*lines, ""]


def _consistency(runs: dict[str, Path]) -> list[str]:
    lines = [
        "## Consistency between members",
        "",
        "Token-level KL in fp32 on held-out text, averaged over target tokens (lower: the members behave alike).",
        "",
    ]
    for label, path in runs.items():
        result = json.loads(FamilyPaths(path).consistency.read_text())
        names = result["members"]
        lines += [
            f"**{label}**, {result['tokens']:,} tokens, KL(row ‖ column):",
            "",
            "| | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for name, row in zip(names, kl_matrix(result, "kl_a_b"), strict=True):
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.4g}" for v in row) + " |")
        lines += ["", "| pair | KL(a‖b) | KL(b‖a) | mean | top-1 agreement |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [
            f"| {p['a']} vs {p['b']} | {p['kl_a_b']:.4f} | {p['kl_b_a']:.4f} | {p['kl_mean']:.4f} | "
            f"{p['top1_agreement']:.1%} |"
            for p in result["pairs"]
        ]
        lines.append("")
    return lines


def _evals(evals: dict[str, dict]) -> list[str]:
    lines = ["## lm-eval", ""]
    for label, data in evals.items():
        table = data["members"]
        columns = metric_columns(table)
        limit = f" (first {data['limit']} documents per task)" if data.get("limit") else ""
        lines += [
            f"**{label}**{limit}",
            "",
            "| member | " + " | ".join(f"{t}: {m}" for t, m in columns) + " |",
            "| --- |" + " ---: |" * len(columns),
        ]
        lines += [
            f"| {name} | " + " | ".join(f"{r.get(t, {}).get(m, float('nan')):.4f}" for t, m in columns) + " |"
            for name, r in table.items()
        ]
        lines.append("")
    return lines


def render(out: Path, runs: dict[str, Path], evals: dict, plots: list[str], equal_loss: dict[str, list[dict]]) -> str:
    ledger = Ledger.read(out)
    lines = [
        f"# Family report: {ledger.recipe}",
        "",
        f"Modes: {', '.join(runs)}. Generated by `hf-progressive report`.",
        "",
        *(line for note in partial_note(ledger) for line in (note, "")),
        "## Members",
        "",
    ]
    for label, path in runs.items():
        lines += _members_table(label, Ledger.read(path))
    lines += _compute(runs)
    for label, rows in equal_loss.items():
        lines += _equal_loss(label, rows)
    lines += _consistency(runs)
    if evals:
        lines += _evals(evals)
    lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots]
    if ledger.max_steps:
        lines += [
            "",
            f"NOTE: stages were capped at {ledger.max_steps} steps (a smoke run): compute savings by "
            "budget compare against full budgets and mean nothing.",
        ]
    return "\n".join(lines) + "\n"


__all__ = ["render"]
