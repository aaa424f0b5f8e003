"""The options of each `hf-progressive` command, as dataclasses (HfArgumentParser derives the flags and --help from
them). Each command accepts exactly the options it uses; commands that read a recipe take it the same way
(positional, or `--recipe` for compatibility)."""

from dataclasses import dataclass, field

import yaml

from ..analysis.evaluation import OFFLINE_TASKS
from ..errors import RecipeError
from ..family.ledger import LEDGER_FILE
from ..family.recipe import shipped_recipes


DEFAULT_RECIPE = "tiny"


def positive(args, *names: str) -> None:
    """One-line error for an option that must be a positive integer (None allowed: the option was left out)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise RecipeError(f"--{name.replace('_', '-')} {value}: use a positive integer (or leave the option out).")


@dataclass
class RecipeChoice:
    recipe: str | None = field(
        default=None,
        metadata={
            "help": f"A shipped recipe ({', '.join(shipped_recipes())}) or a YAML file (or give it positionally)."
        },
    )


@dataclass
class PrepareArguments(RecipeChoice):
    """Options of `hf-progressive prepare-data [RECIPE] --out DIR`."""

    out: str | None = field(default=None, metadata={"help": "Folder of the token store (required)."})
    num_proc: int = field(default=1, metadata={"help": "Tokenizer worker processes (the blocks do not depend on it)."})
    max_tokens: int | None = field(default=None, metadata={"help": "Stop after this many training tokens."})

    def __post_init__(self):
        positive(self, "num_proc", "max_tokens")

    overwrite: bool = field(default=False, metadata={"help": "Replace a store made from another recipe or cap."})


@dataclass
class RecipeArguments(RecipeChoice):
    max_steps_per_stage: int | None = field(default=None, metadata={"help": "Cap every stage (smoke tests)."})

    def __post_init__(self):
        positive(self, "max_steps_per_stage")


@dataclass
class PlanArguments(RecipeArguments):
    """Options of `hf-progressive plan [RECIPE]`."""

    mode: str | None = field(
        default=None, metadata={"help": "independent, progressive or progressive_fixed_data (default: the recipe's)."}
    )


@dataclass
class BuildArguments(PlanArguments):
    """Options of `hf-progressive build-family [RECIPE] --out OUT`."""

    out: str = field(default="out", metadata={"help": f"Output directory ({LEDGER_FILE}, members/, stages/, data/)."})
    report_to: str = field(default="none", metadata={"help": "Trainer report_to: none, tensorboard, wandb, ..."})
    data: str | None = field(
        default=None,
        metadata={"help": "A token store from prepare-data (default: the recipe's data.prepared, else OUT/data)."},
    )
    training: list[str] | None = field(
        default=None,
        metadata={
            "help": "TrainingArguments for every stage, over the recipe's training: (KEY=VALUE ...).",
            "action": "extend",  # a repeated --training adds its pairs (and a key given twice is refused)
        },
    )
    until: str | None = field(
        default=None,
        metadata={"help": "Stop after this member (a name, or a count): one launch per stage; rerun to go on."},
    )
    verbose: bool = field(
        default=False,
        metadata={"help": "Show the Trainer's own log dicts and progress bar instead of one compact line per step."},
    )

    def training_overrides(self) -> dict:
        """`--training a=1 b=true` as `{"a": 1, "b": True}` (values read as YAML, so numbers and booleans work)."""
        overrides = {}
        for pair in self.training or []:
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key or not value.strip():
                raise RecipeError(f"--training {pair!r}: write KEY=VALUE, e.g. --training gradient_checkpointing=true")
            if key in overrides:
                raise RecipeError(f"--training {key}: given twice; give each key once.")
            try:
                overrides[key] = yaml.safe_load(value)
            except yaml.YAMLError as error:
                reason = str(error).splitlines()[0]
                raise RecipeError(f"--training {pair!r}: the value is not valid YAML ({reason}); quote it.") from None
        return overrides


@dataclass
class CompareArguments(RecipeArguments):
    """Options of `hf-progressive compare [RECIPE] --out DIR`."""

    out: str = field(default="out", metadata={"help": "Output directory: one family per run, and report.md."})
    variants: str = field(
        default="",
        metadata={
            "help": "Extra runs, comma-separated: fixed_data (progressive_fixed_data), fixed_lr (one max LR for all)."
        },
    )
    evaluate: bool = field(default=False, metadata={"help": "Run the offline lm-eval tasks on every member."})
    eval_limit: int | None = field(default=None, metadata={"help": "Documents per lm-eval task."})

    def __post_init__(self):
        positive(self, "max_steps_per_stage", "eval_limit")
        if self.eval_limit is not None and not self.evaluate:
            raise RecipeError(f"--eval-limit {self.eval_limit}: it limits --evaluate; add --evaluate or drop it.")


def recipe_name(args: RecipeChoice, positional) -> str:
    """The recipe given positionally or with --recipe (both: they must agree); default `tiny`."""
    given = getattr(positional, "recipe_path", None)
    if given and args.recipe and given != args.recipe:
        raise RecipeError(f"recipe given twice ({given!r} and --recipe {args.recipe!r}); give it once.")
    return given or args.recipe or DEFAULT_RECIPE


@dataclass
class ConsistencyArguments:
    """Options of `hf-progressive consistency OUT`."""

    data: str | None = field(
        default=None,
        metadata={"help": "Held-out text file(s) (txt/jsonl/parquet); default: the family's own validation blocks."},
    )
    pairs: str = field(default="all", metadata={"help": "all or adjacent member pairs."})
    max_blocks: int = field(default=64, metadata={"help": "Held-out blocks to use."})

    def __post_init__(self):
        positive(self, "max_blocks")
        if self.pairs not in ("all", "adjacent"):
            raise RecipeError(f"--pairs {self.pairs!r}: choose all or adjacent.")


@dataclass
class EvaluateArguments:
    """Options of `hf-progressive evaluate OUT`."""

    tasks: str = field(
        default=",".join(OFFLINE_TASKS),
        metadata={"help": "Comma-separated lm-eval tasks (the shipped offline ones by default)."},
    )
    limit: int | None = field(default=None, metadata={"help": "Documents per task (smoke runs)."})

    def __post_init__(self):
        positive(self, "limit")

    def task_list(self) -> list[str]:
        return [task.strip() for task in self.tasks.split(",") if task.strip()]


@dataclass
class ReportArguments:
    """Options of `hf-progressive report OUT`."""

    baseline: str | None = field(
        default=None, metadata={"help": "Another build of the same recipe (e.g. independent mode) to compare with."}
    )


@dataclass
class PushMetricsArguments:
    """Options of `hf-progressive push-metrics OUT --namespace ORG`."""

    namespace: str = field(metadata={"help": "User or organisation that owns the repos."})
    prefix: str | None = field(default=None, metadata={"help": "Repo name prefix (default: the recipe name)."})
    dry_run: bool = field(default=False, metadata={"help": "Stage the folders and print the plan; no network."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (default: main)."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub endpoint (default: huggingface_hub's)."})


@dataclass
class PushArguments(PushMetricsArguments):
    """Options of `hf-progressive push OUT --namespace ORG`."""

    private: bool = field(default=False, metadata={"help": "Create private repos and collection."})
    allow_incomplete: bool = field(
        default=False, metadata={"help": "Publish a family whose build has not finished every member."}
    )


@dataclass
class DemoArguments:
    """Options of `hf-progressive demo`."""

    out: str | None = field(
        default=None, metadata={"help": "Keep the checkpoints here (default: a temporary directory)."}
    )


__all__ = [
    "DemoArguments",
    "BuildArguments",
    "CompareArguments",
    "ConsistencyArguments",
    "EvaluateArguments",
    "PlanArguments",
    "PrepareArguments",
    "PushArguments",
    "PushMetricsArguments",
    "ReportArguments",
    "recipe_name",
]
