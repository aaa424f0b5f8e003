"""The `hf-progressive` command line: it parses (arguments derived from the dataclasses in arguments.py by
parser.py), calls one library function and prints. No library logic lives here, and nothing heavy is imported before
the arguments are parsed: `--help` and a bad option cost no torch and no transformers.

    hf-progressive --help                       # every command, one line each
    hf-progressive plan tiny                    # budgets, steps, FLOPs and saving, before any training
    hf-progressive build-family tiny --out out/tiny
    hf-progressive expand ./small ./big --hidden-size 64 --num-hidden-layers 4 --method fpi+identity

Bad input (a non-Llama checkpoint, a shrinking size, an unknown flag, a non-empty DST, ...) exits 2 with one line on
stderr and writes nothing; a write that fails mid-run (a full disk) exits 1 with one line, finished work kept."""

import errno
import sys
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import HfProgressiveError
from ..expansion.arguments import GrowArguments
from ..family.ledger import FamilyPaths, read_family
from .arguments import (
    BuildArguments,
    CompareArguments,
    ConsistencyArguments,
    DemoArguments,
    EvaluateArguments,
    PlanArguments,
    PrepareArguments,
    PushArguments,
    PushMetricsArguments,
    ReportArguments,
    recipe_name,
)
from .parser import Parser, UsageError  # noqa: F401 (UsageError: raised through Parser.error)


def _parse(prog: str, arguments, argv: list[str], positionals=(), description: str | None = None) -> tuple:
    """Parse `argv` into the dataclass `arguments` plus positionals `(name, help, nargs)`; an unknown option is one
    line (exit 2), never a traceback or a usage block."""
    parser = Parser(arguments, prog=f"hf-progressive {prog}", description=description)
    for name, help, nargs in positionals:
        parser.add_argument(name, help=help, nargs=nargs)
    *parsed, rest = parser.parse_args_into_dataclasses(argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return tuple(parsed) if positionals else (parsed[0], None)


RECIPE = ("recipe_path", "Recipe name or YAML file (same as --recipe).", "?")
OUT = ("out", "A family directory written by build-family.", None)
DEMO = "Grow a tiny random Llama with every operator and print how well each preserves its function."
EXPAND = "Grow checkpoint SRC into DST, streamed in bounded memory and verified; DST appears complete or not at all."


def _expand_command(argv: list[str]) -> int:
    positionals = [("src", "Source checkpoint directory (or Hub id where the network allows).", None)]
    positionals.append(("dst", "Output directory (must be empty or absent unless --overwrite).", None))
    args, paths = _parse("expand", GrowArguments, argv, positionals, EXPAND)
    from ..expansion.grow import format_growth, grow_checkpoint

    print(format_growth(grow_checkpoint(paths.src, paths.dst, args)))
    print(f"saved to {paths.dst}")
    return 0


def _demo_command(argv: list[str]) -> int:
    (args, _) = _parse("demo", DemoArguments, argv, description=DEMO)
    from .demo import run_demo

    if args.out:
        print(run_demo(Path(args.out)))
        print(f"\ncheckpoints kept in {args.out}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(run_demo(Path(tmp)))
    return 0


def _plan_command(argv: list[str]) -> int:
    args, extra = _parse("plan", PlanArguments, argv, [RECIPE])
    from ..family.family_plan import format_plan, plan_family
    from ..family.recipe import load_recipe

    print(format_plan(plan_family(load_recipe(recipe_name(args, extra)), args.mode, args.max_steps_per_stage)))
    return 0


def _build_family_command(argv: list[str]) -> int:
    args, extra = _parse("build-family", BuildArguments, argv, [RECIPE])
    from ..analysis.report import write_report
    from ..family.builder import build_family
    from ..family.console import format_ledger
    from ..family.family_plan import format_plan, plan_family
    from ..family.recipe import load_recipe
    from ..training.trainer import process_state

    recipe, main_process = load_recipe(recipe_name(args, extra)), process_state().is_main_process
    if main_process:
        print(format_plan(plan_family(recipe, args.mode, args.max_steps_per_stage)), flush=True)
    options = {"max_steps": args.max_steps_per_stage, "report_to": args.report_to, "data": args.data}
    options.update(training=args.training_overrides(), until=args.until, console=not args.verbose)
    ledger = build_family(recipe, args.out, args.mode, **options)
    if main_process:
        paths = FamilyPaths(args.out)
        print(format_ledger(ledger))
        print(f"members in {paths.members}, ledger in {paths.ledger}, report in {write_report(args.out)}")
    return 0


def _prepare_data_command(argv: list[str]) -> int:
    args, extra = _parse("prepare-data", PrepareArguments, argv, [RECIPE])
    from ..data.token_store import format_store, prepare_store
    from ..errors import RecipeError
    from ..family.recipe import load_recipe

    recipe = load_recipe(recipe_name(args, extra))
    if not args.out:
        raise RecipeError("--out is required: the folder the token store is written to.")
    options = {"num_proc": args.num_proc, "max_tokens": args.max_tokens, "overwrite": args.overwrite}
    print(format_store(prepare_store(recipe, args.out, **options)))
    return 0


def _family(prog: str, arguments, argv: list[str]) -> tuple:
    """Arguments of a command over a built family, and that family's paths (one line if OUT is not one)."""
    args, target = _parse(prog, arguments, argv, [OUT])
    read_family(target.out)  # a missing or damaged ledger, or a missing or damaged member, fails here in one line
    return args, FamilyPaths(target.out)


def _consistency_command(argv: list[str]) -> int:
    args, paths = _family("consistency", ConsistencyArguments, argv)
    from ..analysis.consistency import format_consistency
    from ..analysis.report import family_consistency

    print(format_consistency(family_consistency(paths.root, None, args.pairs, args.max_blocks, data=args.data)))
    print(f"written to {paths.consistency}")
    return 0


def _evaluate_command(argv: list[str]) -> int:
    args, paths = _family("evaluate", EvaluateArguments, argv)
    from ..analysis.evaluation import evaluate_family, format_evaluation

    print(format_evaluation(evaluate_family(paths.root, args.task_list(), args.limit)))
    print(f"written to {paths.eval_results} and each member's {paths.eval_results.name}")
    return 0


def _report_command(argv: list[str]) -> int:
    args, paths = _family("report", ReportArguments, argv)
    from ..analysis.report import write_report

    print(f"report: {write_report(paths.root, args.baseline)}")
    return 0


def _compare_command(argv: list[str]) -> int:
    args, extra = _parse("compare", CompareArguments, argv, [RECIPE])
    from ..analysis.compare import compare

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    report = compare(
        recipe_name(args, extra), Path(args.out), variants, args.max_steps_per_stage, args.evaluate, args.eval_limit
    )
    print(report.read_text())
    print(f"report: {report}")
    return 0


def _push_command(argv: list[str]) -> int:
    args, paths = _family("push", PushArguments, argv)
    from ..hub.publish import push_family

    options = {k: getattr(args, k) for k in ("private", "dry_run", "revision", "endpoint", "allow_incomplete")}
    for line in push_family(paths.root, args.namespace, args.prefix, **options):
        print(line)
    return 0


def _push_metrics_command(argv: list[str]) -> int:
    args, paths = _family("push-metrics", PushMetricsArguments, argv)
    from ..hub.publish import push_metrics

    options = {k: getattr(args, k) for k in ("dry_run", "revision", "endpoint")}
    for line in push_metrics(paths.root, args.namespace, args.prefix, **options):
        print(line)
    return 0


COMMANDS = {  # name -> (handler, one line of help)
    "plan": (_plan_command, "budgets, steps, FLOPs and the saving of a recipe, before any training"),
    "prepare-data": (_prepare_data_command, "tokenize a recipe's corpus once into a token store (before building)"),
    "build-family": (_build_family_command, "build (or resume) every member of a recipe into OUT"),
    "consistency": (_consistency_command, "KL between the members of a built family -> OUT/consistency.json"),
    "evaluate": (_evaluate_command, "lm-eval on every member (the shipped offline tasks by default)"),
    "report": (_report_command, "OUT/report.md and plots, optionally beside a baseline build"),
    "compare": (_compare_command, "build a recipe independent and progressive (and variants), one report"),
    "push": (_push_command, "publish a family to the Hub: one repo per member, a family repo, a Collection"),
    "push-metrics": (_push_metrics_command, "refresh published cards and metrics after evaluate/consistency"),
    "expand": (_expand_command, "grow a Llama checkpoint folder into a larger one (streamed, verified)"),
    "demo": (_demo_command, "grow a tiny random Llama with every operator and print the preservation table"),
}


def usage() -> str:
    rows = [f"  {name:<14}{help}" for name, (_, help) in COMMANDS.items()]
    return "\n".join(
        [f"usage: hf-progressive {{{','.join(COMMANDS)}}} ...  (hf-progressive COMMAND --help)", "", *rows]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if argv[:1] == ["--version"]:
        print(f"hf-progressive {__version__}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        unknown = f"hf-progressive: unknown command {argv[0]!r}\n" if argv else ""
        print(unknown + usage(), file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]][0](argv[1:])
    except SystemExit as done:  # argparse: --help (0)
        return done.code if isinstance(done.code, int) else 2
    except KeyboardInterrupt:
        print(f"hf-progressive {argv[0]}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except HfProgressiveError as error:
        print(f"hf-progressive {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"hf-progressive {argv[0]}: error: {_os_error(error)}", file=sys.stderr)
        return 1


NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # these say "free space"; EIO and the rest give their reason


def _os_error(error: OSError) -> str:
    """One line for an I/O failure: a full disk says so and how to go on; anything else names the file and reason."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in NO_SPACE:
        return (
            f"{error.strerror or error}{where}; free space (or pick another output folder) and rerun the same "
            "command: finished work is kept and resumed."
        )
    if error.filename:
        return f"{error.strerror or error}{where}; check the path and its permissions."
    return ((error.strerror or str(error)).splitlines() or [type(error).__name__])[0]  # e.g. a Hub HTTP error


if __name__ == "__main__":
    sys.exit(main())
