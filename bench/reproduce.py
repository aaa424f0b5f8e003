"""Benchmark: the paper's headline comparison (Yano et al. 2025, Tables 1-3) at CPU scale on the shared Gutenberg
corpus, made fair. One family of 4 members (each ~2x the previous, depth 1 -> 2 -> 3 -> 4, so every growth is a
depth growth Apollo can prepare), arms built from the same recipe and data order:

    independent               every member from scratch on its own budget (cosine per member)
    independent_wsd           the same with warmup-stable-decay (decay over the last 10%: the trunk arms' shape)
    progressive               grown member to member (function_preserving+identity, AdamW reset at growth)
    progressive_trunk         as progressive, on the trunk schedule (lr.across_stages: trunk; decay branches)
    progressive_apollo        as progressive, each member trained with Apollo's virtual depths, grown by +apollo
    progressive_apollo_trunk  both
    progressive_fixed_data, progressive_carry, progressive_fpi   earlier variants (see --variants)
    progressive_interpolate   Apollo's depth operator without its virtual depths (a variant: what each part costs)

Every arm gets the same tuning: the max LR decays log-linearly with size from 4e-3 (the first member) to `largest`,
and every `--tuned` arm searches the same ladder of `largest` values with the same rule: start at two rungs
(`--lr-start`, or an arm's own with `--arm-start`, e.g. a warm start from another budget's choice), and while the
best rung tried is at an end of those tried, add the next rung outward, so each arm's choice is bracketed (or sits at
the ladder's end). The criterion is the mean loss of the grown members (1-3) at seed 0
on the *selection* split: training-stream documents held out of training (data.validation: holdout). The tables
report the *validation* split (validation.jsonl), which selection never sees. An arm's choice, once bracketed, runs
at `--seeds` seeds (init and growth noise; the data order is fixed) while other arms still search. Tables show seed
means with their spread (min..max) and paired differences (same seed); adjacent KL is measured on the selection split.
The baseline of every claim is the independent arm (schedule) that selection prefers, tuned like the LR.

    python bench/reproduce.py --quick --work W    # 8 tokens/param, every arm
    python bench/reproduce.py --work W            # 40 tokens/param (2x Chinchilla, the paper's budget): hours

Runs go `--jobs` at a time as separate processes with one thread each; an arm's next run is queued as soon as its
own runs decide it (reproduce_search.py), so no worker waits for the other arms. Everything is resumable: a finished
run is skipped, an interrupted one continues from its last checkpoint, so rerun the same command after any stop.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from reproduce_search import best_lr, search
from reproduce_tables import aggregate, check_targets, grid_markdown, grown_mean, markdown, paired_markdown, run_time

from hf_progressive.family.ledger import FamilyPaths, Ledger


ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gutenberg"
ARMS = {  # name: (mode, recipe overrides)
    "independent": ("independent", {}),
    "independent_wsd": ("independent", {"lr": {"schedule": "wsd", "decay_ratio": 0.1}}),  # the trunk's LR shape
    "progressive": ("progressive", {}),
    "progressive_fixed_data": ("progressive_fixed_data", {}),
    "progressive_carry": ("progressive", {"optimizer": {"at_growth": "carry"}}),
    "progressive_fpi": ("progressive", {"method": "fpi+identity"}),
    "progressive_interpolate": ("progressive", {"method": "function_preserving+interpolate"}),  # apollo's operator
    "progressive_trunk": ("progressive", {"lr": {"across_stages": "trunk"}}),
    "progressive_apollo": ("progressive", {"method": "function_preserving+apollo"}),
    "progressive_apollo_trunk": (
        "progressive",
        {"method": "function_preserving+apollo", "lr": {"across_stages": "trunk"}},
    ),
}
TUNED = "independent,independent_wsd,progressive,progressive_trunk,progressive_apollo,progressive_apollo_trunk"
LR_GRID = (1.5e-3, 2.5e-3, 4.0e-3, 6.0e-3, 9.0e-3, 1.35e-2)  # the ladder of lr.largest (4e-3: no decay with size)
LR_START = (4.0e-3, 6.0e-3)  # the rungs every tuned arm runs first (the quick budget's optimum was at or above 6e-3)
# (hidden_size, num_hidden_layers, intermediate_size); head_dim 16, one kv head per query head, tied embeddings.
SHAPES = [(32, 1, 96), (48, 2, 128), (64, 3, 176), (80, 4, 216)]
HOLDOUT = 165  # training documents held out for LR selection (as many as validation.jsonl holds)
# glibc gives freed activation-sized blocks back to the kernel (they were mmapped, or trimmed off the heap's top), so
# each step faults them in anew: ~20% system time, ~30% fewer steps a second here. Kept in the heap, no faults.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}
LR = {"smallest": 4.0e-3, "largest": 1.5e-3}  # `largest` is replaced by each run's grid value


def recipe_dict(data: Path, quick: bool, method: str = "function_preserving+identity", at_growth: str = "reset"):
    """The reproduction recipe: a plain hf-progressive recipe (YAML-able), nothing benchmark-specific in it."""
    members = [
        {"hidden_size": d, "num_hidden_layers": n, "intermediate_size": f, "num_attention_heads": d // 16,
         "num_key_value_heads": d // 16, **({"method": method} if k else {})}
        for k, (d, n, f) in enumerate(SHAPES)
    ]  # fmt: skip
    return {
        "name": "reproduce-quick" if quick else "reproduce",
        "vocab_size": 1024,
        "seq_len": 128,
        "batch_size": 32,
        "tokens_per_param": 8.0 if quick else 40.0,
        "seed": 0,
        "head_dim": 16,
        "tie_word_embeddings": True,
        "tokenizer": {"train_bpe": True, "bpe_training_chars": 4_000_000},
        "data": {
            "train": str(data / "train.jsonl"),
            "validation": "holdout",
            "holdout_documents": HOLDOUT,
            "validation_blocks": 128 if quick else 256,
        },  # fmt: skip
        "lr": {**LR, "schedule": "cosine", "warmup_ratio": 0.05, "min_lr_ratio": 0.1},
        "optimizer": {"weight_decay": 0.1, "at_growth": at_growth},
        "logging_steps": 25,
        "save_steps": 1000,
        "eval_steps": 50 if quick else 200,
        "members": members,
    }


def run_name(arm: str, largest: float, seed: int) -> str:
    return f"{arm}-lr{largest:g}-s{seed}"


def arm_recipe(work: Path, arm: str, largest: float, seed: int):
    """The recipe file of one run: the arm's overrides, its max LR decay and its seed, reading the shared store."""
    from hf_progressive.family.recipe import load_recipe

    spec = yaml.safe_load((work / "recipe.yaml").read_text())
    overrides = dict(ARMS[arm][1])
    if "method" in overrides:
        method, members = overrides.pop("method"), spec["members"]
        spec["members"] = [members[0]] + [{**m, "method": method} for m in members[1:]]
    for key, value in overrides.items():
        spec[key] = {**spec[key], **value}
    spec["lr"] = {**spec["lr"], "largest": largest}
    spec["seed"] = seed
    spec["data"] = {**spec.get("data", {}), "prepared": str(work / "data")}
    path = work / f"{run_name(arm, largest, seed)}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_recipe(str(path))


def report_losses(out: Path) -> Path:
    """Where run `out`'s per-member losses on the report split are written, beside its folder."""
    return out.parent / f"{out.name}.validation.json"


def run_arm(work: Path, arm: str, largest: float, seed: int) -> None:
    """Build one run (resumable) and measure its consistency; runs in its own process."""
    from hf_progressive.analysis.report import family_consistency
    from hf_progressive.family.builder import build_family

    out = work / run_name(arm, largest, seed)  # every run reads the one token store in work/data (data.prepared)
    recipe = arm_recipe(work, arm, largest, seed)
    build_family(recipe, out, ARMS[arm][0])
    family_consistency(out, max_blocks=256)
    report = Path(recipe.data.train).parent / "validation.jsonl"
    blocks = recipe.data.validation_blocks
    report_losses(out).write_text(json.dumps(validation_losses(out, report, blocks), indent=1))


def validation_losses(out: Path, source: Path, max_blocks: int) -> dict[str, float]:
    """Each member's mean next-token loss on `source` (the report split, never used for selection), packed into
    blocks of the family's seq_len with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from hf_progressive.data.blocks import held_out_blocks

    ledger, paths = Ledger.read(out), FamilyPaths(out)
    losses = {}
    for name in ledger.members:
        blocks = held_out_blocks(paths.member(name), str(source), ledger.seq_len, max_blocks)
        model = AutoModelForCausalLM.from_pretrained(paths.member(name)).eval()
        with torch.no_grad():
            total = sum(model(part, labels=part).loss.item() * len(part) for part in blocks.split(32))
        losses[name] = total / len(blocks)
    return losses


def prepare(work: Path) -> None:
    """Train the BPE and pack the corpus once, into work/data."""
    from hf_progressive.data.token_store import prepare_store

    prepare_store(arm_recipe(work, "progressive", LR["largest"], 0), work / "data", overwrite=True)


def builder(work: Path, jobs: int, quick: bool):
    """A function that builds one run (arm, largest, seed) in its own process (one thread when `jobs` > 1), or skips
    it when it is built. Each run's time is its ledger's (the library's stage clock sums every launch)."""
    env = {**KEEP_FREED_MEMORY, **os.environ}
    env["OMP_NUM_THREADS"] = "1" if jobs > 1 else os.environ.get("OMP_NUM_THREADS", "2")

    def build(run: tuple[str, float, int]) -> None:
        name, start = run_name(*run), time.perf_counter()
        if is_built(work, run):
            return
        arm, largest, seed = run
        command = [sys.executable, __file__, "--work", str(work), "--arm", arm, "--lr-grid", str(largest)]
        command += ["--seed", str(seed)] + (["--quick"] if quick else [])
        with open(work / f"{name}.log", "w") as log:
            rc = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc:
            raise SystemExit(f"run {name} failed (exit {rc}); see {work / f'{name}.log'}")
        print(f"  {name}: done in {time.perf_counter() - start:.0f} s", flush=True)

    return build


def run_summary(out: Path) -> dict:
    """One built run: member losses on the report split (`val_loss`) and the selection split (`select_loss`),
    FLOPs, adjacent KL and wall time."""
    ledger = Ledger.read(out)
    kl = json.loads(FamilyPaths(out).consistency.read_text())
    names = list(ledger.members)
    adjacent = [p for p in kl["pairs"] if names.index(p["b"]) == names.index(p["a"]) + 1]
    return {
        "val_loss": json.loads(report_losses(out).read_text()),
        "select_loss": {n: r.val_loss for n, r in ledger.members.items()},
        "flops": ledger.totals["flops"],
        "adjacent_kl": [
            {"pair": f"{p['a']}-{p['b']}", "small_big": p["kl_a_b"], "big_small": p["kl_b_a"], "mean": p["kl_mean"]}
            for p in adjacent
        ],
        "mean_adjacent_kl": sum(p["kl_mean"] for p in adjacent) / len(adjacent),
        "wall_time_s": ledger.totals["wall_time_s"],
    }


def is_built(work: Path, run: tuple[str, float, int]) -> bool:
    """Whether `run` finished: its report-split losses are written, the last step of `run_arm`."""
    return report_losses(work / run_name(*run)).exists()


def built_summary(work: Path, run: tuple[str, float, int]) -> dict | None:
    """`run_summary` of a finished run, else None."""
    return run_summary(work / run_name(*run)) if is_built(work, run) else None


def baseline_arm(runs: dict[tuple[str, float, int], dict], chosen: dict[str, float]) -> str:
    """The tuned independent family: of the independent arms (LR schedules), the one whose choice has the lowest
    `grown_mean` at seed 0. The schedule is tuned like the LR, on the selection split."""
    return min(independent_arms(chosen), key=lambda arm: grown_mean(runs[(arm, chosen[arm], 0)]))


def independent_arms(arms) -> list[str]:
    """The arms that train every member from scratch (mode independent): the baselines."""
    return [arm for arm in arms if ARMS[arm][0] == "independent"]


def grown_arms(arms) -> list[str]:
    """The arms that grow their members (every mode but independent): the ones the paper's claims are checked on."""
    baselines = set(independent_arms(arms))
    return [arm for arm in arms if arm not in baselines]


def reach_ratios(work: Path, run: tuple[str, float, int], base: tuple[str, float, int]) -> dict:
    """Per member: the cumulative FLOPs at which `run` first reached the independent member's final loss (both on
    the selection split, where the Trainer evaluates), over the FLOPs the independent member spent; None: never."""
    from hf_progressive.analysis.report import equal_loss_savings

    rows = equal_loss_savings(work / run_name(*run), work / run_name(*base))
    return {
        r["member"]: None if r["flops_to_target"] is None else r["flops_to_target"] / r["baseline_flops"] for r in rows
    }


def compare(work: Path, results: Path, runs: dict, chosen: dict[str, float], variants: list[str]):
    """Every arm at its choice against the baseline (the better-tuned independent arm): the tables, the FLOPs to
    reach each baseline member's loss, the other independent arms' paired differences, and the report with plots
    in `results`. Returns (summary, tables)."""
    from hf_progressive.analysis.report import write_report

    baseline = baseline_arm(runs, chosen)
    for arm, lr, seed in [run for run in runs if chosen.get(run[0]) == run[1]]:
        if (base := (baseline, chosen[baseline], seed)) in runs:
            runs[(arm, lr, seed)]["reach"] = reach_ratios(work, (arm, lr, seed), base)
    summary = aggregate(runs, chosen, baseline)
    tables = [markdown(summary, check_targets(summary, grown_arms(chosen), baseline), baseline)]
    tables.append(grid_markdown(runs, chosen))
    grown = [arm for arm in grown_arms(chosen) if arm not in variants]
    for other in (arm for arm in independent_arms(chosen) if arm != baseline):
        tables.insert(1, paired_markdown(runs, chosen, grown, base=other))
    if variants:
        tables.append(paired_markdown(runs, chosen, variants))
    best = {arm: work / run_name(arm, chosen[arm], 0) for arm in chosen if (arm, chosen[arm], 0) in runs}
    others = [path for arm, path in best.items() if arm not in (baseline, "progressive")]
    write_report(best["progressive"], baseline=best[baseline], others=others, report_dir=results)
    return summary, tables


def start_rungs(tuned: list[str], ladder: list[float], default: str, per_arm: list[str]) -> dict[str, list[float]]:
    """Each arm's first rungs: `default` ("4e-3,6e-3"), or its own from `per_arm` ("arm=2.5e-3,4e-3"; e.g. a
    warm start from another budget's choice); every rung must be on the ladder."""
    start = dict.fromkeys(tuned, _floats(default)) | {
        arm: _floats(rungs) for arm, _, rungs in (item.partition("=") for item in per_arm)
    }
    for arm, rungs in start.items():
        if arm not in tuned or not rungs or set(rungs) - set(ladder):
            raise SystemExit(f"start rungs {arm}={rungs}: name a --tuned arm and rungs of --lr-grid {ladder}")
    return start


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _arms(text: str) -> list[str]:
    arms = [a for a in text.split(",") if a]
    if set(arms) - set(ARMS):
        raise SystemExit(f"unknown arm in {text!r}: choose among {', '.join(ARMS)}")
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="build folder (default /tmp/hfp-reproduce[-quick])")
    parser.add_argument("--results", type=Path, default=None, help="tables + PNGs (default bench/results/...)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train.jsonl and validation.jsonl")
    parser.add_argument("--quick", action="store_true", help="8 tokens per parameter instead of 40")
    parser.add_argument("--jobs", type=int, default=2, help="runs built at once (one thread each when > 1)")
    parser.add_argument("--tuned", default=TUNED, help="arms swept over --lr-grid, each at its own best")
    parser.add_argument("--variants", default="", help="arms run at progressive's LR (e.g. progressive_carry)")
    parser.add_argument("--lr-grid", default=",".join(f"{v:g}" for v in LR_GRID), help="the ladder of lr.largest")
    parser.add_argument("--lr-start", default=",".join(f"{v:g}" for v in LR_START), help="rungs every arm runs first")
    parser.add_argument("--arm-start", action="append", default=[], help="ARM=LR,LR: that arm's own first rungs")
    parser.add_argument("--seeds", type=int, default=2, help="seeds for each chosen setting (the grid runs seed 0)")
    parser.add_argument("--report-only", action="store_true", help="re-summarize runs already built in --work")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: build one run in this process
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    suffix = "-quick" if args.quick else ""
    work, grid = args.work or Path(f"/tmp/hfp-reproduce{suffix}"), _floats(args.lr_grid)
    if args.arm:
        return run_arm(work, args.arm, grid[0], args.seed)
    tuned, variants = _arms(args.tuned), _arms(args.variants)
    start_at = start_rungs(tuned, grid, args.lr_start, args.arm_start)
    if "progressive" not in tuned or not independent_arms(tuned):
        raise SystemExit("--tuned must include progressive (the variants' reference) and an independent arm.")
    results = args.results or ROOT / "bench" / "results" / f"reproduce{suffix}"
    results.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict(args.data, args.quick), sort_keys=False))
    start = time.perf_counter()
    build = (lambda run: None) if args.report_only else builder(work, args.jobs, args.quick)
    if not args.report_only:
        prepare(work)
        print(f"data ready in {time.perf_counter() - start:.0f} s", flush=True)
    runs = search(build, lambda run: built_summary(work, run), tuned, grid, start_at, args.seeds, args.jobs)
    chosen = {arm: best_lr(runs, arm) for arm in tuned} | {arm: best_lr(runs, "progressive") for arm in variants}
    later = [(arm, chosen[arm], seed) for seed in range(args.seeds) for arm in variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(build, later))
    runs |= {run: row for run in later if (row := built_summary(work, run)) is not None}
    summary, tables = compare(work, results, runs, chosen, variants)
    serial = {run_name(*run): row for run, row in runs.items()}
    (results / "results.json").write_text(json.dumps({"summary": summary, "runs": serial, "chosen": chosen}, indent=1))
    text = "\n\n".join(tables) + "\n\n" + run_time(runs, args.jobs)
    (results / "results.md").write_text(text + "\n")
    print(text, f"report and plots in {results}", sep="\n")


if __name__ == "__main__":
    main()
