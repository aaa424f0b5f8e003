"""bench/reproduce.py's tables: the LR criterion, seed spreads, paired differences against the baseline arm, the
paper's claims, and the markdown that BENCHMARKS.md quotes. Pure functions of the run summaries (no files read)."""

TARGETS = {"flops_ratio": 0.75}


def grown_mean(row: dict, split: str = "select_loss") -> float:
    """The tuning criterion: mean selection-split loss of the grown members (all but the first, whose training is
    the same in every progressive arm)."""
    losses = list(row[split].values())[1:]
    return sum(losses) / len(losses)


def _spread(values: list[float]) -> dict:
    if not values:  # a partial report (--report-only mid-run): no paired seed yet
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def aggregate(runs: dict[tuple, dict], chosen: dict[str, float], baseline: str = "independent") -> dict:
    """Per arm at its chosen LR: the seed-mean row (`val_loss`, `flops`, `mean_adjacent_kl`, ... as `check_targets`
    and `markdown` read it) plus `spread` (min..max over seeds) and `paired` differences against `baseline`."""
    base = {seed: row for (a, largest, seed), row in runs.items() if a == baseline and largest == chosen[a]}
    summary = {}
    for arm, largest in chosen.items():
        rows = {seed: row for (a, lr, seed), row in runs.items() if a == arm and lr == largest}
        if not rows:  # a partial report (--report-only mid-run): not built yet
            continue
        names = list(next(iter(rows.values()))["val_loss"])
        loss = {n: _spread([r["val_loss"][n] for r in rows.values()]) for n in names}
        kl = _spread([r["mean_adjacent_kl"] for r in rows.values()])
        pairs = [p["pair"] for p in next(iter(rows.values()))["adjacent_kl"]]
        summary[arm] = {
            "largest": largest,
            "seeds": sorted(rows),
            "val_loss": {n: s["mean"] for n, s in loss.items()},
            "spread": {"val_loss": loss, "mean_adjacent_kl": kl},
            "flops": rows[min(rows)]["flops"],
            "flops_ratio": rows[min(rows)]["flops"] / base[min(base)]["flops"],
            "reach": {n: _reached([r["reach"].get(n) for r in rows.values() if "reach" in r]) for n in names},
            "adjacent_kl": [_mean_pair(rows, i, p) for i, p in enumerate(pairs)],
            "mean_adjacent_kl": kl["mean"],
            "wall_time_s": _spread([r["wall_time_s"] for r in rows.values()])["mean"],
            "paired": {n: _spread([rows[s]["val_loss"][n] - base[s]["val_loss"][n] for s in rows if s in base])
                       for n in names} if arm != baseline else {},
        }  # fmt: skip
    return summary


def _reached(ratios: list) -> dict:
    """FLOPs-to-reach ratios over seeds: their spread where reached, and how many seeds never reached the target."""
    hit = [r for r in ratios if r is not None]
    return {**(_spread(hit) if hit else {"n": 0}), "missed": len(ratios) - len(hit)}


def _mean_pair(rows: dict, i: int, pair: str) -> dict:
    values = [r["adjacent_kl"][i] for r in rows.values()]
    mean = {k: sum(v[k] for v in values) / len(values) for k in ("small_big", "big_small", "mean")}
    return {"pair": pair, **mean}


def paired_difference(runs: dict, a: tuple[str, float], b: tuple[str, float]) -> dict | None:
    """Per member, run a minus run b at the same seed: mean and min..max over the seeds both have; None when they
    share no seed yet (a partial report)."""
    left = {seed: row for (arm, lr, seed), row in runs.items() if (arm, lr) == a}
    right = {seed: row for (arm, lr, seed), row in runs.items() if (arm, lr) == b}
    seeds = sorted(set(left) & set(right))
    if not seeds:
        return None
    names = list(left[seeds[0]]["val_loss"])
    out = {n: _spread([left[s]["val_loss"][n] - right[s]["val_loss"][n] for s in seeds]) for n in names}
    out["mean_adjacent_kl"] = _spread([left[s]["mean_adjacent_kl"] - right[s]["mean_adjacent_kl"] for s in seeds])
    return out


def check_targets(summary: dict, grown: list[str], baseline: str = "independent") -> dict[str, dict]:
    """The paper's claims for each arm in `grown` (the caller, which owns the arms' modes, names them) against the
    `baseline` independent arm: FLOPs ratio <= 0.75, every grown member's seed-mean loss within the baseline member's
    seed spread or better (<= its worst seed), and mean adjacent KL below the baseline family's."""
    base = summary[baseline]
    members = list(base["val_loss"])[1:] or list(base["val_loss"])  # the first member is the same in every arm
    checks = {}
    for arm in grown:
        row = summary[arm]
        over = {n: row["val_loss"][n] - base["spread"]["val_loss"][n]["max"] for n in members}
        worst = max(over, key=over.get)
        checks[arm] = {
            "flops": (row["flops_ratio"] <= TARGETS["flops_ratio"], f"{row['flops_ratio']:.3f}x"),
            "loss": (over[worst] <= 0, f"{worst} {over[worst]:+.4f} nats vs {baseline}'s worst seed"),
            "kl": (
                row["mean_adjacent_kl"] < base["mean_adjacent_kl"],
                f"{row['mean_adjacent_kl']:.4f} vs {base['mean_adjacent_kl']:.4f}",
            ),
        }
    return checks


def _cell(spread: dict, sign: bool = False) -> str:
    fmt = "{:+.4f}" if sign else "{:.4f}"
    if spread["n"] == 1:
        return fmt.format(spread["mean"])
    return f"{fmt.format(spread['mean'])} ({fmt.format(spread['min'])}..{fmt.format(spread['max'])})"


def _reach_cell(reach: dict) -> str:
    missed = f", not reached in {reach['missed']} seed(s)" if reach["missed"] else ""
    return ("-" if not reach["n"] else _cell(reach)) + missed


def markdown(summary: dict, checks: dict, baseline: str = "independent") -> str:
    """The tables BENCHMARKS.md quotes: per arm at its chosen LR, seed means with min..max, paired differences
    against `baseline`, adjacent KL and the targets."""
    names = list(summary[baseline]["val_loss"])
    lines = [f"| arm (lr.largest, seeds) | {' | '.join(f'{n} val' for n in names)} | x {baseline} FLOPs | train s |"]
    lines.append("| --- |" + " ---: |" * (len(names) + 2))
    for arm, row in summary.items():
        losses = " | ".join(_cell(row["spread"]["val_loss"][n]) for n in names)
        label = f"{arm} ({row['largest']:g}, {len(row['seeds'])})"
        lines.append(f"| {label} | {losses} | {row['flops_ratio']:.3f} | {row['wall_time_s']:.0f} |")
    lines += ["", f"| arm − {baseline}, same seed | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " ---: |" * len(names))
    for arm, row in summary.items():
        if row["paired"]:
            lines.append(f"| {arm} | " + " | ".join(_cell(row["paired"][n], sign=True) for n in names) + " |")
    pairs = [p["pair"] for p in summary[baseline]["adjacent_kl"]]
    lines += ["", "| arm | " + " | ".join(f"KL {p} (small→big / big→small)" for p in pairs) + " | mean |"]
    lines.append("| --- |" + " ---: |" * (len(pairs) + 1))
    for arm, row in summary.items():
        cells = [f"{p['small_big']:.4f} / {p['big_small']:.4f}" for p in row["adjacent_kl"]]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {_cell(row['spread']['mean_adjacent_kl'])} |")
    lines += ["", f"| arm: FLOPs to reach the {baseline} member's loss, x its FLOPs | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " ---: |" * len(names))
    for arm, row in summary.items():
        cells = [_reach_cell(row["reach"][n]) for n in names]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    claims = f"FLOPs <= 0.75x | every grown loss within {baseline}'s seed spread | mean adjacent KL lower"
    lines += ["", f"| arm | {claims} |"]
    lines.append("| --- | --- | --- | --- |")
    for arm, check in checks.items():
        cells = [f"{'met' if ok else 'MISSED'} ({text})" for ok, text in check.values()]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_time(runs: dict, jobs: int) -> str:
    """The training time of every run made (ledger clocks, summed over a run's launches), and that over `jobs`."""
    hours = sum(row["wall_time_s"] for row in runs.values()) / 3600
    return f"training time: {hours:.1f} h over {len(runs)} runs ({hours / jobs:.1f} h at {jobs} at a time)"


def grid_markdown(runs: dict, chosen: dict[str, float]) -> str:
    """The LR sweep: every tuned arm's grown-member mean validation loss per grid value (seed 0)."""
    arms = [a for a in chosen if any(arm == a and seed == 0 for arm, _, seed in runs)]
    grid = sorted({lr for arm, lr, seed in runs if seed == 0 and arm in arms})
    lines = [
        "| arm | " + " | ".join(f"largest {lr:g}" for lr in grid) + " | chosen |",
        "| --- |" + " ---: |" * (len(grid) + 1),
    ]
    for arm in arms:
        cells = [f"{grown_mean(runs[(arm, lr, 0)]):.4f}" if (arm, lr, 0) in runs else "-" for lr in grid]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {chosen[arm]:g} |")
    return "\n".join(lines)


def paired_markdown(runs: dict, chosen: dict[str, float], arms: list[str], base: str = "progressive") -> str:
    """Each of `arms` minus the `base` arm, both at their chosen LR, same seed (mean, min..max over seeds)."""
    names = list(next(iter(runs.values()))["val_loss"])
    lines = [f"| arm − {base}, same seed | " + " | ".join(names) + " | mean adjacent KL |"]
    lines.append("| --- |" + " ---: |" * (len(names) + 1))
    for arm in arms:
        if (diff := paired_difference(runs, (arm, chosen[arm]), (base, chosen[base]))) is None:
            continue
        cells = [_cell(diff[n], sign=True) for n in names] + [_cell(diff["mean_adjacent_kl"], sign=True)]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
