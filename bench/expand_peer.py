"""Benchmark: `hf-progressive expand` against mergekit and the disk floor, side by side in one run, on the same random
1.1B-parameter bf16 Llama (the source of `bench/expand_1b.py`). Every command runs in its own process, one after
another; each row gives its wall time, the time of the `sync` right after it (what it left unflushed: `expand` flushes
its output before it returns, `cp` and mergekit do not), and its peak RSS.

    python bench/expand_peer.py --work /tmp/hfp-peer     # ~20 GB of disk, ~5 minutes on 2 cores

mergekit (0.1.5, from PyPI) is installed into a venv of its own under WORK, so its pins never touch ours; its job is
the SOLAR-style depth up-scaling our `--method stack` also does (passthrough slices [0,12] + [4,16]: 16 -> 24 layers).
Resumable: the source, the mergekit venv and every finished row are kept in WORK (rows in results.json); a rerun
skips them. `--fresh` starts over. Prints a Markdown table for BENCHMARKS.md."""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import expand_1b


MERGEKIT = "mergekit==0.1.5"
TORCH = "torch==2.13.0"  # the CPU wheel on this machine: installed first, so mergekit does not pull a CUDA build
PASSTHROUGH = """merge_method: passthrough
dtype: bfloat16
slices:
  - sources:
      - model: {src}
        layer_range: [0, 12]
  - sources:
      - model: {src}
        layer_range: [4, 16]
"""
DEPTH = ["--num-hidden-layers", "24", "--method", "stack"]
WIDTH = [f"--{key.replace('_', '-')}={value}" for key, value in expand_1b.TARGET.items()]


def timed(argv: list[str]) -> dict:
    """Wall seconds, peak RSS (GiB) of `argv` run in a fresh child, then the seconds of a `sync` right after it."""
    probe = (
        "import resource, subprocess, sys, time; t = time.time(); subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    subprocess.run(["sync"], check=True)
    out = subprocess.run([sys.executable, "-c", probe, *argv], check=True, capture_output=True, text=True).stdout
    seconds, rss_kib = out.strip().splitlines()[-1].split()
    start = time.time()
    subprocess.run(["sync"], check=True)
    return {"wall_s": float(seconds), "sync_s": time.time() - start, "peak_rss_gib": int(rss_kib) / 2**20}


def mergekit_venv(work: Path) -> Path:
    """mergekit's own venv under `work` (created once)."""
    venv = work / "mergekit-venv"
    tool = venv / "bin" / "mergekit-yaml"
    if not tool.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, TORCH], check=True)
        subprocess.run([*pip, MERGEKIT], check=True)
    return tool


def jobs(work: Path, hfp: str, mergekit: Path) -> dict[str, tuple[list[str], Path]]:
    """Every measured command, by row name, in the order they run, with the folder it writes."""
    src, recipe = work / "src", work / "passthrough.yml"
    recipe.write_text(PASSTHROUGH.format(src=src))
    out = {name: work / name for name in ("depth", "depth_nv", "mk", "mk_tuned", "width", "width_nv")}
    return {
        "depth 16 -> 24, expand --method stack (verified: the default)": (
            [hfp, "expand", src, out["depth"], *DEPTH],
            out["depth"],
        ),
        "same, --no-verify": ([hfp, "expand", src, out["depth_nv"], *DEPTH, "--no-verify"], out["depth_nv"]),
        "mergekit passthrough [0,12]+[4,16] (defaults)": ([mergekit, recipe, out["mk"], "--quiet"], out["mk"]),
        "mergekit, tuned (-j 2 --async-write --write-threads 2)": (
            [mergekit, recipe, out["mk_tuned"], "--quiet", "-j", "2", "--async-write", "--write-threads", "2"],
            out["mk_tuned"],
        ),
        "cp -r of the depth output (disk floor)": (
            ["cp", "-r", out["depth_nv"], work / "cp_depth"],
            work / "cp_depth",
        ),
        "width+depth to 2.4B, expand (verified)": ([hfp, "expand", src, out["width"], *WIDTH], out["width"]),
        "same, --no-verify ": ([hfp, "expand", src, out["width_nv"], *WIDTH, "--no-verify"], out["width_nv"]),
        "cp -r of the width+depth output (disk floor)": (
            ["cp", "-r", out["width_nv"], work / "cp_width"],
            work / "cp_width",
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/hfp-peer"))
    parser.add_argument("--fresh", action="store_true", help="forget finished rows and the source")
    parser.add_argument("--hfp", default=shutil.which("hf-progressive") or "hf-progressive")
    args = parser.parse_args()
    if args.fresh:  # only what this bench writes: WORK itself may be any folder the user named
        (args.work / "results.json").unlink(missing_ok=True)
        shutil.rmtree(args.work / "src", ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    results_file = args.work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if not (args.work / "src" / "config.json").is_file():
        shutil.rmtree(args.work / "src", ignore_errors=True)
        subprocess.run(expand_1b.make_source_argv("llama", expand_1b.SOURCE, args.work / "src"), check=True)
    plan = jobs(args.work, args.hfp, mergekit_venv(args.work))
    for name, (argv, output) in plan.items():
        if name in results:
            continue
        shutil.rmtree(output, ignore_errors=True)
        results[name] = {**timed([str(a) for a in argv]), "output_gb": expand_1b.size_gb(output)}
        results_file.write_text(json.dumps(results, indent=2))
        print(name, results[name], flush=True)
    for _argv, output in plan.values():  # the outputs are measured; keep the source, the venv and the rows
        shutil.rmtree(output, ignore_errors=True)
    print(table(results))


def table(results: dict) -> str:
    head = "| command | wall s | + sync s | wall + sync | x floor (wall) | x floor (wall + sync) | peak RSS GiB | GB |"
    rows = [head]
    rows.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    floor = None
    names = list(results)
    for i, name in enumerate(names):  # each block's floor is the cp row that follows it
        later = [n for n in names[i:] if n.startswith("cp -r")]
        floor = results[later[0]] if later else floor
        r = results[name]
        both, floor_both = r["wall_s"] + r["sync_s"], floor["wall_s"] + floor["sync_s"]
        rows.append(
            f"| {name.strip()} | {r['wall_s']:.1f} | {r['sync_s']:.1f} | {both:.1f} | "
            f"{r['wall_s'] / floor['wall_s']:.2f} | {both / floor_both:.2f} | {r['peak_rss_gib']:.2f} | "
            f"{r['output_gb']:.2f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
