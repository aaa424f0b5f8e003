"""The report's figures (matplotlib, Agg backend): one function per plot, each taking plain dicts keyed by run label
(e.g. "progressive (out)", "independent (baseline)") and returning a Figure."""

import matplotlib


matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from .consistency import kl_matrix
from .evaluation import metric_columns


STYLES = ["-", "--", ":", "-."]


def plot_loss_vs_flops(runs: dict[str, dict]) -> plt.Figure:
    """Training loss (thin) and validation loss (markers) of every member against cumulative FLOPs."""
    figure, axis = plt.subplots(figsize=(8, 5))
    for style, (label, members) in zip(STYLES, runs.items(), strict=False):
        for color, (name, curve) in enumerate(members.items()):
            if curve["train"]:
                x, y = zip(*curve["train"], strict=True)
                axis.plot(x, y, style, color=f"C{color}", linewidth=1, label=f"{name} - {label}")
            if curve["eval"]:
                x, y = zip(*curve["eval"], strict=True)
                axis.plot(x, y, style, color=f"C{color}", marker="o", markersize=3, linewidth=0)
    axis.set_xscale("log")
    axis.set_xlabel("cumulative training FLOPs")
    axis.set_ylabel("loss (lines: train, dots: validation)")
    axis.set_title("Loss against compute")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure


def _grouped_bars(axis, runs: dict[str, dict[str, float]], ylabel: str) -> None:
    names = list(next(iter(runs.values())))
    width = 0.8 / len(runs)
    for offset, (label, values) in enumerate(runs.items()):
        xs = [i + offset * width for i in range(len(names))]
        bars = axis.bar(xs, [values.get(n, float("nan")) for n in names], width=width, label=label)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(names))], names, fontsize=8)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=7)


def plot_val_loss(ledgers: dict) -> plt.Figure:
    """Final validation loss per member, one bar group per member and one bar per run (`{label: Ledger}`)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    runs = {label: {n: r.val_loss for n, r in ledger.members.items()} for label, ledger in ledgers.items()}
    _grouped_bars(axis, runs, "validation loss")
    axis.set_title("Final validation loss per member")
    return figure


def plot_kl(results: dict[str, dict]) -> plt.Figure:
    """KL(row || column) between members, one heatmap per run, on one shared colour scale."""
    matrices = {
        label: [[float("nan") if v is None else v for v in row] for row in kl_matrix(result, "kl_a_b")]
        for label, result in results.items()
    }
    top = max(v for m in matrices.values() for row in m for v in row if v == v) or 1.0
    figure, axes = plt.subplots(
        1, len(results), figsize=(5.8 * len(results), 4.6), squeeze=False, constrained_layout=True
    )
    for axis, (label, result) in zip(axes[0], results.items(), strict=True):
        matrix, names = matrices[label], result["members"]
        image = axis.imshow(matrix, cmap="viridis", vmin=0.0, vmax=top)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=7)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                shade = "k" if value > 0.6 * top else "w"
                axis.text(j, i, f"{value:.3f}", ha="center", va="center", color=shade, fontsize=7)
        axis.set_title(f"KL(row || column), {label}", fontsize=9)
    figure.colorbar(image, ax=list(axes[0]), fraction=0.046)
    return figure


def plot_eval(tables: dict[str, dict]) -> plt.Figure:
    """lm-eval metrics per member, one panel per (task, metric)."""
    first = next(iter(tables.values()))
    metrics = metric_columns(first)
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for axis, (task, metric) in zip(axes[0], metrics, strict=True):
        runs = {
            label: {n: r.get(task, {}).get(metric, float("nan")) for n, r in table.items()}
            for label, table in tables.items()
        }
        _grouped_bars(axis, runs, metric)
        axis.set_title(f"{task}: {metric}", fontsize=9)
    return figure


__all__ = ["plot_eval", "plot_kl", "plot_loss_vs_flops", "plot_val_loss"]
