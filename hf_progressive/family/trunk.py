"""The family's trunk (`lr.across_stages: trunk`; staged training, Shen et al. 2022). Each stage trains its trunk at
a stable max LR, then a short decay branch from which the member is released. The next member grows from the trunk,
weights and (with `optimizer.at_growth: carry`) AdamW moments, as they stood before the branch: growth then keeps
the training state and its dynamics instead of starting from an annealed checkpoint.

This module owns the trunk's snapshot (taken at the last trunk step, before the stage's checkpoint at that step, so a
stage resumed inside its branch finds it) and which folder and moments the next member grows from."""

import shutil
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from ..errors import CheckpointError
from ..expansion.checkpoint import publish_dir
from ..utils.io import read_json, write_atomic, write_json
from .ledger import FamilyPaths


class TrunkSnapshot(TrainerCallback):
    """Saves member `name`'s trunk when its stage finishes optimizer step `at_step` (every process takes part: the
    Trainer gathers a sharded model). `boundary` gives the model's loss on the next stage's first batch (or None)."""

    def __init__(self, trainer, paths: FamilyPaths, name: str, at_step: int, moments: bool, boundary: Callable):
        self.trainer, self.paths, self.name, self.at_step = trainer, paths, name, at_step
        self.moments, self.boundary = moments, boundary

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            self.save()

    def save(self) -> None:
        from ..training.trainer import optimizer_state_by_name, process_state

        trainer, state = self.trainer, process_state()
        staging = self.paths.stage(self.name) / ".trunk.tmp"
        if state.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        state.wait_for_everyone()
        trainer.save_model(str(staging))
        loss = self.boundary(trainer.model)
        trainer.model.train()
        if state.is_main_process:
            (staging / "training_args.bin").unlink(missing_ok=True)
            if self.moments:
                moments = optimizer_state_by_name(trainer.optimizer, trainer.model)
                write_atomic(staging / self.paths.trunk_optimizer(self.name).name, lambda f: torch.save(moments, f))
            write_json(
                staging / self.paths.trunk_record(self.name).name, {"step": self.at_step, "boundary_loss": loss}
            )
            publish_dir(staging, self.paths.trunk(self.name), owned=lambda _: True)  # OUT/stages: ours
        state.wait_for_everyone()


def growth_source(paths: FamilyPaths, parent: str, trunk: bool) -> tuple:
    """The folder the next member grows from and the AdamW moments it carries: the parent's trunk when its stage
    had a decay branch, else the released parent and its final moments."""
    if not trunk:
        return paths.member(parent), paths.optimizer_final(parent)
    if not (paths.trunk(parent) / "config.json").is_file():
        raise CheckpointError(
            f"{paths.trunk(parent)}: {parent}'s trunk (the model before its decay branch, which the next member grows "
            "from) is missing; rebuild that member (delete its folder in members/) or use a new --out."
        )
    return paths.trunk(parent), paths.trunk_optimizer(parent)


def trunk_boundary_loss(paths: FamilyPaths, name: str) -> float | None:
    """The trunk's loss on the next stage's first batch (what a function-preserving growth starts from)."""
    return (read_json(paths.trunk_record(name)) or {}).get("boundary_loss")


__all__ = ["TrunkSnapshot", "growth_source", "trunk_boundary_loss"]
