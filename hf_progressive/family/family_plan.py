"""A family plan: the recipe resolved into numbers before any training. Per member: config, derived name, parameter
counts, tokens and optimizer steps of its stage, the window of data blocks it reads, FLOPs (own stage, cumulative,
and what training it independently would cost), max LR. `hf-progressive plan` prints it; the builder follows it."""

import math
from dataclasses import dataclass

from ..errors import RecipeError
from ..expansion.methods import parse_method
from ..expansion.sizes import parameter_counts
from ..training.apollo import DepthSampler
from .budget import (
    Window,
    flops_per_added_layer,
    flops_per_token,
    interpolate_lr,
    saving,
    stage_tokens,
    stage_windows,
    token_budgets,
)
from .recipe import Recipe, member_configs


@dataclass(frozen=True)
class MemberPlan:
    index: int
    name: str
    config: object
    method: str | None  # expansion operator from the parent; None when trained from scratch
    parent: str | None
    params: dict
    budget_tokens: int  # D_k: the member's independent budget
    stage_tokens: int  # what this stage actually trains on (whole optimizer steps, its decay branch included)
    steps: int  # optimizer steps of the stage: the trunk's, then `branch_steps` of decay branch
    window: Window  # in blocks of seq_len tokens
    flops_per_token: int
    stage_flops: float
    cumulative_flops: float
    independent_flops: float  # FLOPs of training this member alone on D_k (flops_per_token * D_k)
    max_lr: float
    branch_steps: int = 0  # lr.across_stages: trunk: the member's decay branch, after the trunk's steps
    apollo: DepthSampler | None = None  # the child grows by +apollo: this stage's virtual depths
    flops_per_added_layer: int = 0  # per token, of each virtual layer beyond the member's own depth

    @property
    def trunk_steps(self) -> int:
        return self.steps - self.branch_steps


@dataclass(frozen=True)
class FamilyPlan:
    recipe: Recipe
    mode: str
    members: list[MemberPlan]

    @property
    def total_flops(self) -> float:
        return self.members[-1].cumulative_flops

    @property
    def independent_total_flops(self) -> float:
        """Cost of building every member independently (the baseline the saving is measured against)."""
        return sum(member.independent_flops for member in self.members)

    @property
    def saving(self) -> float:
        return saving(self.total_flops, self.independent_total_flops)


def member_name(index: int, config) -> str:
    """Derived, never typed: `m1-L4-H128`."""
    return f"m{index}-L{config.num_hidden_layers}-H{config.hidden_size}"


def plan_family(recipe: Recipe, mode: str | None = None, max_steps: int | None = None) -> FamilyPlan:
    """Resolve `recipe` (in `mode`, default the recipe's) into per-member numbers; `max_steps` caps every stage
    (smoke tests: the ledger then reports the tokens really trained)."""
    mode = mode or recipe.mode
    configs = member_configs(recipe)
    counts = [parameter_counts(config) for config in configs]
    budgets = _budgets(recipe, totals := [c["total"] for c in counts])
    tokens_per_step = recipe.batch_size * recipe.seq_len
    steps = [_steps(k, t, tokens_per_step) for k, t in enumerate(stage_tokens(totals, budgets, mode))]
    branches = [_branch_steps(recipe, mode, min(s, max_steps or s)) for s in steps]
    steps = [min(s, max_steps or s) + b for s, b in zip(steps, branches, strict=True)]
    blocks = [round(budget / recipe.seq_len) for budget in budgets]
    windows, lrs = stage_windows([s * recipe.batch_size for s in steps], blocks, mode), _max_lrs(recipe, totals)
    members, cumulative = [], 0.0
    for k, config in enumerate(configs):
        per_token, added = flops_per_token(config, recipe.seq_len), flops_per_added_layer(config, recipe.seq_len)
        apollo = _depth_sampler(recipe, mode, configs, k, steps[k] - branches[k])
        stage_flops = (per_token * steps[k] + added * (apollo.added_layers(0, steps[k]) if apollo else 0)) * (
            tokens_per_step
        )  # with the virtual layers each step runs beyond the member's own depth (Apollo)
        cumulative += stage_flops
        grown = mode != "independent" and k > 0
        members.append(
            MemberPlan(
                index=k,
                name=member_name(k, config),
                config=config,
                method=recipe.members[k].method if grown else None,
                parent=member_name(k - 1, configs[k - 1]) if grown else None,
                params=counts[k],
                budget_tokens=int(budgets[k]),
                stage_tokens=steps[k] * tokens_per_step,
                steps=steps[k],
                window=windows[k],
                flops_per_token=per_token,
                stage_flops=stage_flops,
                cumulative_flops=cumulative,
                independent_flops=per_token * budgets[k],
                max_lr=lrs[k],
                branch_steps=branches[k],
                apollo=apollo,
                flops_per_added_layer=added,
            )
        )
    return FamilyPlan(recipe, mode, members)


def _budgets(recipe: Recipe, totals: list[int]) -> list[float]:
    """D_k per member; a pretrained first member trains only on a budget the recipe gives it."""
    multiples = [m.tokens_per_param or recipe.tokens_per_param for m in recipe.members]
    if recipe.members[0].pretrained and recipe.members[0].tokens_per_param is None:
        multiples[0] = 0.0
    return token_budgets(totals, multiples)


def _branch_steps(recipe: Recipe, mode: str, trunk_steps: int) -> int:
    """`lr.across_stages: trunk`: each member's decay branch, `branch_ratio` of its trunk steps (at least one)."""
    if recipe.lr.across_stages != "trunk" or mode == "independent" or not trunk_steps:
        return 0
    return max(1, math.ceil(recipe.lr.branch_ratio * trunk_steps))


def _depth_sampler(recipe: Recipe, mode: str, configs: list, k: int, trunk_steps: int) -> DepthSampler | None:
    """Member k's virtual depths when its child grows by `+apollo` (its trunk steps sample; a branch does not)."""
    if mode == "independent" or k + 1 >= len(configs) or parse_method(recipe.members[k + 1].method)[1] != "apollo":
        return None
    spec = recipe.apollo
    return DepthSampler(
        layers=configs[k].num_hidden_layers,
        max_layers=configs[k + 1].num_hidden_layers,
        seed=recipe.seed + k,
        until_step=trunk_steps,
        distribution=spec.distribution,
        start=spec.lvps_start,
        end=spec.lvps_end,
    )


def _steps(k: int, tokens: float, tokens_per_step: int) -> int:
    """Optimizer steps of stage k; a stage whose budget is under half a step is refused (it would train one step
    on a budget it does not have, or, for a huge batch, read a window far past the data)."""
    steps = round(tokens / tokens_per_step)
    if tokens and not steps:
        raise RecipeError(
            f"members[{k}]: its stage trains {tokens:,.0f} tokens, less than one optimizer step of batch_size x "
            f"seq_len = {tokens_per_step:,} tokens; raise tokens_per_param or lower batch_size."
        )
    return steps


def _max_lrs(recipe: Recipe, totals: list[int]) -> list[float]:
    if recipe.lr.fixed is not None:
        default = [recipe.lr.fixed] * len(totals)
    elif recipe.lr.smallest is not None and recipe.lr.largest is not None:
        default = interpolate_lr(totals, recipe.lr.smallest, recipe.lr.largest)
    else:
        default = [None] * len(totals)
    return [m.max_lr if m.max_lr is not None else lr for m, lr in zip(recipe.members, default, strict=True)]


def _si(value: float) -> str:
    for unit, scale in (
        ("Y", 1e24),
        ("Z", 1e21),
        ("E", 1e18),
        ("P", 1e15),
        ("T", 1e12),
        ("G", 1e9),
        ("M", 1e6),
        ("k", 1e3),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def format_plan(plan: FamilyPlan) -> str:
    """The table `hf-progressive plan` prints."""
    head = (
        f"{'member':<16}{'params':>9}{'non-emb':>9}{'D_k':>9}{'tokens':>9}{'steps':>7}{'max lr':>9}"
        f"{'FLOPs':>10}{'cum FLOPs':>11}{'indep FLOPs':>12}  parent / operator"
    )
    lines = [
        f"{plan.recipe.name}: mode {plan.mode}, {plan.recipe.batch_size} x {plan.recipe.seq_len} tokens a step",
        head,
    ]
    for m in plan.members:
        source = plan.recipe.members[m.index].pretrained
        origin = f"{m.parent} / {m.method}" if m.parent else f"from {source}" if source else "from scratch"
        origin += f"; decay branch {m.branch_steps} steps" if m.branch_steps else ""
        origin += f"; virtual depths {m.apollo.layers}-{m.apollo.max_layers} (apollo)" if m.apollo else ""
        lines.append(
            f"{m.name:<16}{_si(m.params['total']):>9}{_si(m.params['non_embedding']):>9}"
            f"{_si(m.budget_tokens):>9}{_si(m.stage_tokens):>9}{m.steps:>7}{m.max_lr:>9.2e}"
            f"{_si(m.stage_flops):>10}{_si(m.cumulative_flops):>11}{_si(m.independent_flops):>12}  {origin}"
        )
    if plan.mode == "independent":
        lines.append(f"total FLOPs {_si(plan.total_flops)} (independent mode: this is the baseline)")
    else:
        lines.append(
            f"total FLOPs {_si(plan.total_flops)} vs {_si(plan.independent_total_flops)} to train every "
            f"member independently: saving {plan.saving:.1%}"
        )
    lines.append(
        "FLOPs per token = 6 * N_matmul + 12 * layers * seq_len * heads * head_dim, as computed (see budget.py); "
        "stage tokens follow the paper's 6ND rule"
    )
    return "\n".join(lines)


__all__ = ["FamilyPlan", "MemberPlan", "format_plan", "member_name", "plan_family"]
