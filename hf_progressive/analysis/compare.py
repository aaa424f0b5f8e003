"""`hf-progressive compare`: build one recipe as independent and progressive families (and optional variants),
measure consistency (and lm-eval), and write one report comparing them: the paper's headline table on your data."""

import dataclasses
from pathlib import Path

from ..family.builder import build_family
from ..family.ledger import FamilyPaths, is_family
from ..family.recipe import RecipeError, load_recipe
from ..utils.guard import check_replaceable, only_entries, recipe_places
from .evaluation import evaluate_family
from .report import family_consistency, write_report


RUNS = ("progressive", "independent")
VARIANTS = {
    "fixed_data": "progressive_fixed_data",  # the paper's "Progressive + Fixed Data"
    "fixed_lr": "progressive",  # one max LR (the smallest member's) for every member: the paper's LR ablation
}


def compare(
    recipe_name: str,
    out: Path,
    variants: list[str] = (),
    max_steps: int | None = None,
    evaluate: bool = False,
    eval_limit: int | None = None,
) -> Path:
    """Build every run into `out/<run>/` (resumable, like build-family) and write `out/report.md`."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RecipeError(f"variants={unknown}: choose among {', '.join(VARIANTS)}.")
    recipe = load_recipe(recipe_name)
    runs = {"progressive": (recipe, "progressive"), "independent": (recipe, "independent")}
    for variant in variants:
        runs[variant] = (_fixed_lr(recipe_name, recipe) if variant == "fixed_lr" else recipe, VARIANTS[variant])
    check_replaceable(  # OUT holds runs and their report only: never a family's own folder, nor other files
        out, owned=_is_comparison, what="--out", protected=recipe_places(recipe), kind="comparison folder"
    )
    for name, (run_recipe, mode) in runs.items():
        build_family(run_recipe, out / name, mode, max_steps=max_steps)
        family_consistency(out / name)
        if evaluate:
            evaluate_family(out / name, limit=eval_limit)
    others = [out / name for name in runs if name not in ("progressive", "independent")]
    return write_report(out / "progressive", baseline=out / "independent", others=others, report_dir=out)


def _is_comparison(folder: Path) -> bool:
    """A folder `compare` wrote: one family per run, report.md and plots (not itself a family)."""
    paths = FamilyPaths(folder)
    if is_family(folder):
        return False
    return only_entries(folder, lambda name: name in (*RUNS, *VARIANTS, paths.report.name) or name.endswith(".png"))


def _fixed_lr(recipe_name: str, recipe):
    from ..family.family_plan import plan_family

    smallest = plan_family(recipe).members[0].max_lr
    return load_recipe(recipe_name, lr={**dataclasses.asdict(recipe.lr), "fixed": smallest})


__all__ = ["VARIANTS", "compare"]
