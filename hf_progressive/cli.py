"""The `hf-progressive` command line. Arguments are derived from the dataclasses below with HfArgumentParser.

    hf-progressive expand ./small ./big --hidden-size 64 --num-hidden-layers 4 --method fpi+identity
    hf-progressive demo            # grow a tiny random Llama with every operator and print the report

Bad input (a non-Llama checkpoint, a shrinking size, an unknown method, a non-empty DST, ...) exits 2 with one line
on stderr and writes nothing; a write that fails mid-run (a full disk) exits 1 with one line, finished work kept."""

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from .checkpoint import load_model, prepare_output_dir, read_config, resolve_source, write_json
from .configuration_llama import SIZE_FIELDS, ProgressiveLlamaConfig
from .data import iter_texts
from .errors import CheckpointError, ExpansionError
from .evaluation import OFFLINE_TASKS
from .family import format_plan, plan_family
from .modeling_llama import GROWTH_FILE
from .plan import DEFAULT_WIDTH
from .recipe import load_recipe, shipped_recipes
from .streaming import expand_checkpoint
from .verification import check_preservation, verify_expansion


@dataclass
class ExpandArguments:
    """Options of `hf-progressive expand SRC DST` (sizes left out keep the source's value)."""

    hidden_size: int | None = field(default=None, metadata={"help": "Target hidden_size."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Target intermediate_size (FFN)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Target number of layers."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Target query heads (head_dim fixed)."})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "Target key/value heads (GQA groups)."})
    method: str = field(
        default=DEFAULT_WIDTH,
        metadata={
            "help": "WIDTH, DEPTH or WIDTH+DEPTH. Width: function_preserving, fpi, aki, hypercloning; depth: "
            "identity, interpolate, stack (e.g. fpi+stack)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds every random choice and draw."})
    noise_std: float = field(
        default=0.0,
        metadata={
            "help": "Paired symmetry-breaking noise for copy-based width "
            "operators, as a fraction of each tensor's std."
        },
    )
    inserted_layers: list[int] | None = field(
        default=None, metadata={"help": "Positions of the new identity blocks in the grown model (default: even)."}
    )
    strict: bool = field(default=False, metadata={"help": "Fail if a function-preserving growth moves the logits."})
    verify: bool = field(
        default=True,
        metadata={
            "help": "Load both models after writing to measure preservation "
            "(--no-verify for checkpoints too large for memory)."
        },
    )
    max_shard_size: str = field(default="5GB", metadata={"help": "Largest output shard, e.g. 5GB or 500MB."})
    overwrite: bool = field(default=False, metadata={"help": "Replace DST if it exists and is not empty."})

    def sizes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SIZE_FIELDS if getattr(self, name) is not None}


def expand(src: str, dst: str, args: ExpandArguments, progress: bool = True) -> dict:
    """Grow checkpoint `src` into `dst` by streaming (bounded memory, written atomically), then, unless
    `--no-verify`, load both models to measure preservation; returns the growth record (growth.json)."""
    prepare_output_dir(dst, args.overwrite)  # fail before any work
    src_dir = resolve_source(src)
    config = ProgressiveLlamaConfig.from_smaller(read_config(src_dir), **args.sizes())
    expand_checkpoint(
        src_dir,
        dst,
        config,
        args.method,
        args.seed,
        noise_std=args.noise_std,
        inserted_layers=args.inserted_layers,
        max_shard_size=args.max_shard_size,
        overwrite=args.overwrite,
        progress=progress,
    )
    growth = json.loads((Path(dst) / GROWTH_FILE).read_text())
    growth["parent"] = src
    if args.verify:
        small, big = load_model(src_dir), load_model(dst)
        growth["preservation"] = verify_expansion(small, big)
        if args.strict and growth["plan"]["function_preserving"]:
            try:
                check_preservation(growth["preservation"], big.dtype)
            except ExpansionError:
                shutil.rmtree(dst)  # strict: a failed growth leaves nothing behind
                raise
    write_json(Path(dst) / GROWTH_FILE, growth)
    return growth


def format_report(growth: dict) -> str:
    """The preservation report printed after a growth."""
    plan, report = growth["plan"], growth["preservation"]
    rows = [(name, f"{old} -> {plan['dst_sizes'][name]}") for name, old in plan["src_sizes"].items()]
    counts = growth["num_parameters"]
    rows.append(("parameters", f"{counts['parent']:,} -> {counts['grown']:,} ({counts['new']:,} new)"))
    rows.append(("function preserving", "yes" if plan["function_preserving"] else "no (by design of the operator)"))
    if report:
        rows += [
            ("max |delta logits|", f"{report['max_abs_logit_diff']:.3g}"),
            ("mean |delta logits|", f"{report['mean_abs_logit_diff']:.3g}"),
            ("KL(small || big)", f"{report['kl']:.3g}"),
            ("loss small / big", f"{report['loss_small']:.4f} / {report['loss_big']:.4f}"),
        ]
    header = f"grew {growth['parent']} with {growth['operator']} (seed {growth['seed']})"
    return "\n".join([header] + [f"  {label:<22}{value}" for label, value in rows])


def _expand_command(argv: list[str]) -> int:
    parser = HfArgumentParser(ExpandArguments, prog="hf-progressive expand", description=expand.__doc__)
    parser.add_argument("src", help="Source checkpoint directory (or Hub id where the network allows).")
    parser.add_argument("dst", help="Output directory (must be empty or absent unless --overwrite).")
    args, paths = parser.parse_args_into_dataclasses(argv)
    print(format_report(expand(paths.src, paths.dst, args)))
    print(f"saved to {paths.dst}")
    return 0


def _demo_command(argv: list[str]) -> int:
    from .demo import run_demo

    parser = HfArgumentParser(
        [],
        prog="hf-progressive demo",
        description="Grow a tiny random Llama with every operator and print the function-preservation report.",
    )
    parser.add_argument("--out", default=None, help="Keep the checkpoints here (default: a temporary directory).")
    (paths,) = parser.parse_args_into_dataclasses(argv)
    if paths.out:
        print(run_demo(Path(paths.out)))
        print(f"\ncheckpoints kept in {paths.out}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(run_demo(Path(tmp)))
    return 0


@dataclass
class FamilyArguments:
    """Options of `hf-progressive build-family` and `hf-progressive plan`."""

    recipe: str = field(
        default="tiny", metadata={"help": f"A shipped recipe ({', '.join(shipped_recipes())}) or a YAML file."}
    )
    mode: str | None = field(
        default=None, metadata={"help": "independent, progressive or progressive_fixed_data (default: the recipe's)."}
    )
    out: str = field(default="out", metadata={"help": "Output directory (members/, family.json, stages/, data/)."})
    max_steps_per_stage: int | None = field(default=None, metadata={"help": "Cap every stage (smoke tests)."})
    report_to: str = field(default="none", metadata={"help": "Trainer report_to: none, tensorboard, wandb, ..."})


def _family_parser(prog: str) -> HfArgumentParser:
    return HfArgumentParser(FamilyArguments, prog=f"hf-progressive {prog}")


def _plan_command(argv: list[str]) -> int:
    parser = _family_parser("plan")
    parser.add_argument("recipe_path", nargs="?", help="Recipe name or YAML file (same as --recipe).")
    args, extra = parser.parse_args_into_dataclasses(argv)
    recipe = load_recipe(extra.recipe_path or args.recipe)
    print(format_plan(plan_family(recipe, args.mode, args.max_steps_per_stage)))
    return 0


def _build_family_command(argv: list[str]) -> int:
    from .builder import build_family, process_state
    from .report_text import format_ledger

    (args,) = _family_parser("build-family").parse_args_into_dataclasses(argv)
    recipe = load_recipe(args.recipe)
    if process_state().is_main_process:
        print(format_plan(plan_family(recipe, args.mode, args.max_steps_per_stage)), flush=True)
    ledger = build_family(recipe, args.out, args.mode, max_steps=args.max_steps_per_stage, report_to=args.report_to)
    if process_state().is_main_process:
        print(format_ledger(ledger))
        from .report import write_report

        print(
            f"members in {Path(args.out) / 'members'}, ledger in {Path(args.out) / 'family.json'}, "
            f"report in {write_report(args.out)}"
        )
    return 0


@dataclass
class AnalysisArguments:
    """Options of `hf-progressive consistency | evaluate | report OUT`."""

    data: str | None = field(
        default=None,
        metadata={
            "help": "consistency: held-out text file (txt/jsonl/parquet); default: the family's own validation blocks."
        },
    )
    pairs: str = field(default="all", metadata={"help": "consistency: all or adjacent member pairs."})
    max_blocks: int = field(default=64, metadata={"help": "consistency: held-out blocks to use."})
    tasks: str = field(
        default=",".join(OFFLINE_TASKS),
        metadata={"help": "evaluate: comma-separated lm-eval tasks (the shipped offline ones by default)."},
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate: documents per task (smoke runs)."})
    baseline: str | None = field(
        default=None,
        metadata={"help": "report: another build of the same recipe (e.g. independent mode) to compare with."},
    )


def _analysis(prog: str, argv: list[str]) -> tuple[AnalysisArguments, Path]:
    parser = HfArgumentParser(AnalysisArguments, prog=f"hf-progressive {prog}")
    parser.add_argument("out", help="A family directory written by build-family.")
    args, extra = parser.parse_args_into_dataclasses(argv)
    out = Path(extra.out)
    if not (out / "family.json").is_file():
        raise CheckpointError(f"{out}: no family.json; pass a directory written by hf-progressive build-family.")
    return args, out


def _consistency_command(argv: list[str]) -> int:
    from .consistency import format_consistency
    from .report import family_consistency

    args, out = _analysis("consistency", argv)
    blocks = None
    if args.data:
        from transformers import AutoTokenizer

        from .data import pack
        from .recipe import DataSpec

        tokenizer = AutoTokenizer.from_pretrained(out / "data" / "tokenizer")
        texts = iter_texts(DataSpec(validation=args.data), "validation")
        blocks = pack(texts, tokenizer, _family_seq_len(out), args.max_blocks)
    print(format_consistency(family_consistency(out, blocks, args.pairs, args.max_blocks)))
    print(f"written to {out / 'consistency.json'}")
    return 0


def _family_seq_len(out: Path) -> int:
    import torch

    return torch.load(out / "data" / "validation.pt", weights_only=True).shape[1]


def _evaluate_command(argv: list[str]) -> int:
    from .evaluation import evaluate_family, format_evaluation

    args, out = _analysis("evaluate", argv)
    table = evaluate_family(out, [t.strip() for t in args.tasks.split(",") if t.strip()], args.limit)
    print(format_evaluation(table))
    print(f"written to {out / 'eval_results.json'} and each member's eval_results.json")
    return 0


def _report_command(argv: list[str]) -> int:
    from .report import write_report

    args, out = _analysis("report", argv)
    print(f"report: {write_report(out, args.baseline)}")
    return 0


@dataclass
class CompareArguments(FamilyArguments):
    """Options of `hf-progressive compare RECIPE --out DIR`."""

    variants: str = field(
        default="",
        metadata={
            "help": "Extra runs, comma-separated: fixed_data (progressive_fixed_data), fixed_lr (one max LR for all)."
        },
    )
    evaluate: bool = field(default=False, metadata={"help": "Run the offline lm-eval tasks on every member."})
    eval_limit: int | None = field(default=None, metadata={"help": "Documents per lm-eval task."})


def _compare_command(argv: list[str]) -> int:
    from .compare import compare

    parser = HfArgumentParser(CompareArguments, prog="hf-progressive compare")
    parser.add_argument("recipe_path", nargs="?", help="Recipe name or YAML file (same as --recipe).")
    args, extra = parser.parse_args_into_dataclasses(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    report = compare(
        extra.recipe_path or args.recipe,
        Path(args.out),
        variants,
        args.max_steps_per_stage,
        args.evaluate,
        args.eval_limit,
    )
    print(report.read_text())
    print(f"report: {report}")
    return 0


COMMANDS = {
    "build-family": _build_family_command,
    "plan": _plan_command,
    "consistency": _consistency_command,
    "evaluate": _evaluate_command,
    "report": _report_command,
    "compare": _compare_command,
    "expand": _expand_command,
    "demo": _demo_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: hf-progressive {{{','.join(COMMANDS)}}} ...  (hf-progressive COMMAND --help)", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ExpansionError, CheckpointError) as error:
        print(f"hf-progressive {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, file too large, permission lost mid-run: not a bad input, still one line
        where = f" writing {error.filename}" if error.filename else ""
        print(
            f"hf-progressive {argv[0]}: error: {error.strerror or error}{where}; free space (or pick another "
            "output folder) and rerun the same command: finished work is kept and resumed.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
