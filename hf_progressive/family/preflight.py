"""Everything about a build's options that can fail, checked before anything is written: the run's Trainer options
for every stage, `--until`, and what a sharded (FSDP / DeepSpeed) run does not support yet."""

import os

from ..errors import RecipeError
from ..expansion.checkpoint import check_writable
from ..training.stage_args import check_report_to, check_stage_arguments, check_training_keys, stage_arguments
from ..training.trainer import process_state
from .family_plan import FamilyPlan
from .ledger import FamilyPaths
from .recipe import Recipe


def check_options(plan: FamilyPlan, paths: FamilyPaths, training: dict | None, report_to, until) -> None:
    """Everything about the run's options that can fail, before anything is written."""
    state = process_state()
    check_training_keys(training or {}, "--training")
    check_report_to(report_to)
    last_index(plan, until)
    backend = sharded_backend(plan.recipe, training)
    unsupported = {  # what -> (used, fix)
        "optimizer.at_growth: carry maps whole (unsharded) AdamW moments and": (
            plan.recipe.optimizer.at_growth == "carry",
            "they would be dropped); use optimizer.at_growth: reset",
        ),
        "method +apollo runs shared layers at virtual depths, which": (
            any(member.apollo for member in plan.members),
            "a sharded model cannot repeat its layers); use +interpolate",
        ),
    }
    for what, (used, fix) in unsupported.items():
        if backend and used:
            raise RecipeError(f"{what} is not supported under {backend} yet ({fix}.")
    for member in plan.members:  # every stage's Trainer options are checked before anything is written
        where = str(paths.stage(member.name))
        args = stage_arguments(plan, member, where, state.num_processes, training, report_to=report_to)
        check_stage_arguments(args, state.num_processes, f"members[{member.index}].training")
        optim = getattr(args.optim, "value", args.optim)
        if plan.recipe.optimizer.at_growth == "carry" and not optim.startswith("adamw_torch"):
            raise RecipeError(
                f"optim={optim!r}: optimizer.at_growth: carry maps AdamW moments; use optim adamw_torch "
                "(or adamw_torch_fused), or optimizer.at_growth: reset."
            )
    check_writable(paths.root)


def last_index(plan: FamilyPlan, until: str | None) -> int:
    """Index of the member `until` names (a member name, or a count of members), the last one by default."""
    names = [m.name for m in plan.members]
    if until is None:
        return len(names) - 1
    if until in names:
        return names.index(until)
    if str(until).isdigit() and 1 <= int(until) <= len(names):
        return int(until) - 1
    raise RecipeError(
        f"--until {until!r}: not a member of this family ({', '.join(names)}) nor a count 1-{len(names)}."
    )


def sharded_backend(recipe: Recipe, training: dict | None = None) -> str | None:
    """ "FSDP" or "DeepSpeed" when the stages will run sharded (a training: option or the accelerate launch config),
    else None."""
    options = [recipe.training, training or {}, *(m.training for m in recipe.members)]
    for backend, env, key in (
        ("FSDP", "ACCELERATE_USE_FSDP", "fsdp"),
        ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED", "deepspeed"),
    ):
        if os.environ.get(env, "").lower() in ("1", "true") or any(option.get(key) for option in options):
            return backend
    return None


__all__ = ["check_options", "last_index", "sharded_backend"]
