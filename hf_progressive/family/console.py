"""What a build prints, for a person to read: one compact line per logging step (member, step, loss, lr, tokens,
cumulative FLOPs, tokens/s) instead of the Trainer's raw dicts and bar redraws, the ledger's row as each member is
saved, and the final ledger table. `build-family --verbose` keeps the Trainer's own output instead."""

import sys
import time

from transformers import TrainerCallback

from .ledger import Ledger, MemberRecord


HEADER = (
    f"{'member':<16}{'parent':<16}{'steps':>6}{'tokens':>10}{'FLOPs':>11}{'cum FLOPs':>11}{'wall s':>8}"
    f"{'train':>8}{'val':>8}{'passes':>7}"
)


def format_loss(value: float | None, digits: int) -> str:
    """A loss, or "-" for a member that did not train (a pretrained first member without a budget)."""
    return "-" if value is None else f"{value:.{digits}f}"


def ledger_row(name: str, r: MemberRecord) -> str:
    """One member's row of the ledger table."""
    return (
        f"{name:<16}{r.parent or '-':<16}{r.steps:>6}{r.tokens:>10,}{r.flops_stage:>11.3g}"
        f"{r.flops_cumulative:>11.3g}{r.wall_time_s:>8.1f}{format_loss(r.final_train_loss, 3):>8}"
        f"{r.val_loss:>8.3f}{r.data_passes:>7.2f}"
    )


def format_ledger(ledger: Ledger) -> str:
    """The table `hf-progressive build-family` prints at the end."""
    lines = [f"{ledger.recipe} ({ledger.mode}):", HEADER]
    lines += [ledger_row(name, r) for name, r in ledger.members.items()]
    totals = ledger.totals
    lines.append(
        f"total {totals['flops']:.3g} FLOPs, {totals['tokens']:,} tokens, {totals['wall_time_s']:.0f} s; "
        f"independent training of the same members: {totals['flops_independent']:.3g} FLOPs "
        f"(saving {totals['saving']:.1%})"
    )
    if ledger.max_steps:
        lines.append(
            f"NOTE: stages were capped at {ledger.max_steps} steps, so the saving above compares against "
            "full independent budgets and means nothing."
        )
    if any(r.data_passes > 1 for r in ledger.members.values()):
        lines.append("passes > 1: the stage read past the end of the token store and repeated data.")
    return "\n".join(lines + partial_note(ledger))


def partial_note(ledger: Ledger) -> list[str]:
    """A note for a family whose build stopped before its last member (`--until`, or an interrupted build)."""
    done, planned = len(ledger.members), ledger.members_planned
    if done >= planned:
        return []
    return [f"PARTIAL: {done} of {planned} members built; rerun build-family with the same --out to build the rest."]


def say(line: str) -> None:
    """Print one line for the person at the console (stdout, flushed: it interleaves with stderr's warnings)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class StepLines(TrainerCallback):
    """One compact line per logging step of a stage (the main process only), and one per evaluation."""

    def __init__(self, member: str):
        self.member, self.last, self.evaluated = member, None, None  # last: (time, tokens) of the previous line

    def on_train_begin(self, args, state, control, **kwargs):
        tokens = getattr(args, "tokens_before_stage", 0) + state.global_step * getattr(args, "tokens_per_step", 0)
        self.last = (time.time(), tokens)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        step = f"{self.member} step {state.global_step}/{state.max_steps}"
        if "eval_loss" in logs and self.evaluated != (state.global_step, logs["eval_loss"]):
            self.evaluated = (state.global_step, logs["eval_loss"])  # the final evaluation repeats the last one
            say(f"{step}  eval loss {logs['eval_loss']:.4f}")
        elif "loss" in logs:
            say(f"{step}  loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0.0):.2e}{self._volume(logs)}")

    def _volume(self, logs: dict) -> str:
        if "tokens" not in logs:
            return ""
        now, tokens = time.time(), logs["tokens"]
        rate = f"  {(tokens - self.last[1]) / max(now - self.last[0], 1e-9):,.0f} tok/s" if self.last else ""
        self.last = (now, tokens)
        return f"  tokens {tokens:,}  FLOPs {logs.get('cumulative_flops', 0.0):.3g}{rate}"


__all__ = ["HEADER", "StepLines", "format_ledger", "format_loss", "ledger_row", "partial_note", "say"]
