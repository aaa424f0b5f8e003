"""Growth at real published shapes (issue 25): random bf16 checkpoints with the shapes of public configs (typed in
from their config.json facts, written shard by shard; nothing is downloaded), each grown with `hf-progressive expand`
(verification on, the default) in its own process: wall time and peak RSS, the growth's own preservation report, and
one refusal where the published larger sibling cannot be reached by a function-preserving growth.

    python bench/published_shapes.py --work /tmp/hfp-published    # ~15 GB of disk, a few minutes on 2 cores

Resumable: sources and finished rows (WORK/results.json) are kept; a rerun skips them. Prints a Markdown table."""

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from expand_1b import make_source_argv
from expand_peer import timed


COMMON = dict(rms_norm_eps=1e-5)  # bf16, as MAKE_SOURCE writes every source
SOURCES = {
    "SmolLM2-135M": ("llama", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
    "Qwen2.5-0.5B": ("qwen2", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, head_dim=64, tie_word_embeddings=True, max_position_embeddings=32768,
        use_sliding_window=False, max_window_layers=24, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "Llama-3.2-1B": ("llama", dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, tie_word_embeddings=True, max_position_embeddings=131072,
        rope_parameters={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_theta": 500000.0})),
}  # fmt: skip
GROWTHS = {  # row -> (source, target sizes)
    "SmolLM2-135M -> 360M-class (SmolLM2-360M's sizes)": (
        "SmolLM2-135M",
        dict(
            hidden_size=960,
            intermediate_size=2560,
            num_hidden_layers=32,
            num_attention_heads=15,
            num_key_value_heads=5,
        ),
    ),
    "Qwen2.5-0.5B -> head_dim 128 (hidden 1792, FFN 8960, 28 layers)": (
        "Qwen2.5-0.5B",
        dict(head_dim=128, hidden_size=1792, intermediate_size=8960, num_hidden_layers=28),
    ),
    "Llama-3.2-1B -> head_dim 128 (hidden 3072, 20 layers)": (
        "Llama-3.2-1B",
        dict(head_dim=128, hidden_size=3072, num_hidden_layers=20),
    ),
}
REFUSED = ("Llama-3.2-1B", dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, head_dim=128))


def source(work: Path, name: str) -> Path:
    folder = work / name
    if not (folder / "model.safetensors.index.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        model_type, fields = SOURCES[name]
        subprocess.run(make_source_argv(model_type, {**COMMON, **fields}, folder, 2_000_000_000), check=True)
    return folder


def flags(sizes: dict) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in sizes.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/hfp-published"))
    parser.add_argument("--hfp", default=shutil.which("hf-progressive") or "hf-progressive")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    saved = args.work / "results.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    for row, (name, sizes) in GROWTHS.items():
        if row in results:
            continue
        out = args.work / "grown"
        shutil.rmtree(out, ignore_errors=True)
        measured = timed([args.hfp, "expand", str(source(args.work, name)), str(out), *flags(sizes)])
        growth = json.loads((out / "growth.json").read_text())
        results[row] = {**measured, "parameters": growth["num_parameters"], "preservation": growth["preservation"]}
        saved.write_text(json.dumps(results, indent=2))
        shutil.rmtree(out)
    name, sizes = REFUSED
    argv = [args.hfp, "expand", str(source(args.work, name)), str(args.work / "refused"), *flags(sizes)]
    refused = subprocess.run(argv, capture_output=True, text=True)
    results["refusal: Llama-3.2-1B -> Llama-3.2-3B's heads"] = {"code": refused.returncode, "stderr": refused.stderr}
    saved.write_text(json.dumps(results, indent=2))
    print("| growth | parameters | wall s | peak RSS GiB | max abs logit diff (bf16) | KL |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row, r in results.items():
        if "wall_s" in r:
            p, v = r["parameters"], r["preservation"]
            print(
                f"| {row} | {p['parent'] / 1e6:,.0f}M -> {p['grown'] / 1e6:,.0f}M | {r['wall_s']:.1f} | "
                f"{r['peak_rss_gib']:.2f} | {v['max_abs_logit_diff']:.3g} | {v['kl']:.2g} |"
            )
    print(results["refusal: Llama-3.2-1B -> Llama-3.2-3B's heads"]["stderr"].strip())


if __name__ == "__main__":
    main()
