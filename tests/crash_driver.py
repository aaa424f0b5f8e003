"""Builds a family and SIGKILLs itself at a chosen point, for tests/test_crash.py (not a test module).

    python crash_driver.py RECIPE OUT MAX_STEPS PHASE N

PHASE: stage (after the N-th optimizer step of the whole build), checkpoint (in the middle of the N-th Trainer
checkpoint: weights written, trainer state not), growth (right after the N-th model growth), member_save (inside the
N-th member's atomic save, after its weights are written), ledger (half-way through the N-th ledger write), none."""

import os
import signal
import sys
from pathlib import Path

from transformers import Trainer, TrainerCallback

from hf_progressive.family import builder
from hf_progressive.family.recipe import load_recipe


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Counter:
    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def hit(self) -> bool:
        self.calls += 1
        return self.calls == self.n


class KillAtStep(TrainerCallback):
    def __init__(self, counter: Counter):
        self.counter = counter

    def on_step_end(self, args, state, control, **kwargs):
        if self.counter.hit():
            die()


def arm(phase: str, counter: Counter) -> list:
    """Install the fault for `phase`; returns callbacks for the build."""
    if phase == "stage":
        return [KillAtStep(counter)]
    if phase == "checkpoint":
        original = Trainer._save_optimizer_and_scheduler

        def save_then_die(self, output_dir):
            original(self, output_dir)
            if counter.hit():
                die()

        Trainer._save_optimizer_and_scheduler = save_then_die
    elif phase == "growth":  # right after the grown member is streamed to stages/<name>/grown
        grow = builder.grow_checkpoint

        def grow_then_die(*args, **kwargs):
            growth = grow(*args, **kwargs)
            if counter.hit():
                die()
            return growth

        builder.grow_checkpoint = grow_then_die
    elif phase in ("member_save", "ledger"):
        from hf_progressive.family import ledger as ledger_module

        write_json = builder.write_json
        target = ledger_module.TRAINING_LOG_FILE if phase == "member_save" else ledger_module.LEDGER_FILE

        def half_write_then_die(path, obj):
            path = Path(path)
            if path.name == target and counter.hit():
                if phase == "ledger":  # a torn write of the temp file, the way a crash mid-write leaves it
                    path.with_name(f".{path.name}.tmp").write_text('{"recipe": "half')
                die()
            write_json(path, obj)

        builder.write_json = ledger_module.write_json = half_write_then_die  # member logs / the ledger
    elif phase != "none":
        raise SystemExit(f"unknown phase {phase}")
    return []


def main() -> None:
    recipe, out, max_steps, phase, n = sys.argv[1:]
    callbacks = arm(phase, Counter(int(n)))
    builder.build_family(load_recipe(recipe), out, max_steps=int(max_steps), callbacks=callbacks)


if __name__ == "__main__":
    main()
