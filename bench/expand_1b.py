"""Benchmark: grow a random ~1B-parameter bf16 Llama checkpoint into ~2B, streaming vs in memory, against the disk
floor (cp of the output's bytes). Every step runs in its own process so peak RSS is measured per step.

    python bench/expand_1b.py --work /tmp/bench        # ~15 GB of disk, a few minutes on 2 CPU cores

Prints a Markdown table (wall time, peak RSS, ratio to the copy floor) for BENCHMARKS.md."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


SOURCE = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
)
TARGET = dict(
    hidden_size=2560, intermediate_size=10240, num_hidden_layers=24, num_attention_heads=40, num_key_value_heads=10
)

MAKE_SOURCE = """
import json, sys, torch
from pathlib import Path
from hf_progressive.expansion.architectures import ARCHITECTURES
from hf_progressive.expansion.plan import GrowthPlan
from hf_progressive.expansion.streaming import _shard, _target_shapes, write_safetensors
model_type, fields, out, shard_bytes = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
arch = ARCHITECTURES[model_type]
config = arch.config_class()(**fields, dtype=torch.bfloat16)
config.architectures = [arch.causal_lm]
out.mkdir(parents=True)
config.save_pretrained(out)
shapes = _target_shapes(GrowthPlan.from_configs(config, config))  # shapes of the model itself
def produce(key):
    generator = torch.Generator().manual_seed(len(key) * 7919 + sum(map(ord, key)))
    return (torch.randn(shapes[key], generator=generator) * 0.02).to(torch.bfloat16)
shards = _shard(shapes, 2, shard_bytes)
names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
write_safetensors({out / name: keys for name, keys in zip(names, shards)}, shapes, torch.bfloat16, produce)
weight_map = {key: name for name, keys in zip(names, shards) for key in keys}
(out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
"""


def make_source_argv(model_type: str, fields: dict, out: Path, shard_bytes: int = 1_000_000_000) -> list[str]:
    """The command that writes a random bf16 checkpoint of `model_type` with config `fields` into `out`, shard by
    shard (`MAKE_SOURCE`, in a process of its own)."""
    return [sys.executable, "-c", MAKE_SOURCE, model_type, json.dumps(fields), str(out), str(shard_bytes)]


STREAM = """
import sys
from hf_progressive import ProgressiveLlamaConfig
from hf_progressive.expansion.checkpoint import read_config
from hf_progressive.expansion.streaming import expand_checkpoint
config = ProgressiveLlamaConfig.from_smaller(read_config(sys.argv[1]), **{target})
expand_checkpoint(sys.argv[1], sys.argv[2], config, "function_preserving", seed=0, progress=False)
"""

IN_MEMORY = """
import sys
from hf_progressive import ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.expansion.checkpoint import read_config
config = ProgressiveLlamaConfig.from_smaller(read_config(sys.argv[1]), **{target})
big = ProgressiveLlamaForCausalLM.from_smaller(sys.argv[1], config, "function_preserving", seed=0, verify=False)
big.save_pretrained(sys.argv[2], max_shard_size="5GB")
"""

COMPARE = """
import sys, json
from pathlib import Path
from safetensors import safe_open
import torch
def tensors(path):
    index = Path(path) / "model.safetensors.index.json"
    single = ["model.safetensors"]
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else single
    for f in files:
        with safe_open(str(Path(path) / f), "pt") as h:
            for k in h.keys():
                yield k, Path(path) / f
a, b = dict(tensors(sys.argv[1])), dict(tensors(sys.argv[2]))
assert set(a) == set(b), set(a) ^ set(b)
for key in a:
    with safe_open(str(a[key]), "pt") as x, safe_open(str(b[key]), "pt") as y:
        assert torch.equal(x.get_tensor(key), y.get_tensor(key)), key
print(f"bit-identical: {{len(a)}} tensors")
"""


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one command, run in a fresh child of a fresh process."""
    probe = (
        "import resource, subprocess, sys, time; t = time.time(); subprocess.run(sys.argv[1:], check=True); "
        "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    subprocess.run(["sync"], check=True)
    out = subprocess.run([sys.executable, "-c", probe, *argv], check=True, capture_output=True, text=True).stdout
    seconds, rss_kib = out.strip().splitlines()[-1].split()
    return float(seconds), int(rss_kib) / 2**20


def size_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/hfp-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    src, stream, memory, copy = (args.work / n for n in ("src", "stream", "in_memory", "copy"))
    make = measure(make_source_argv("llama", SOURCE, src))
    rows = {
        "streaming expand_checkpoint": measure(
            [sys.executable, "-c", STREAM.format(target=TARGET), str(src), str(stream)]
        ),
        "in-memory from_smaller + save_pretrained": measure(
            [sys.executable, "-c", IN_MEMORY.format(target=TARGET), str(src), str(memory)]
        ),
        "cp -r of the output (disk floor)": measure(["cp", "-r", str(stream), str(copy)]),
    }
    identical = subprocess.run(
        [sys.executable, "-c", COMPARE.format(), str(stream), str(memory)], check=True, capture_output=True, text=True
    ).stdout.strip()
    floor = rows["cp -r of the output (disk floor)"][0]
    params = lambda p: json.loads((p / "config.json").read_text())  # noqa: E731
    src_cfg, dst_cfg = params(src), params(stream)
    print(
        f"source: {size_gb(src):.2f} GB bf16 (hidden {src_cfg['hidden_size']}, {src_cfg['num_hidden_layers']} "
        f"layers; made in {make[0]:.0f} s); output: {size_gb(stream):.2f} GB (hidden {dst_cfg['hidden_size']}, "
        f"{dst_cfg['num_hidden_layers']} layers); {identical}"
    )
    print("| step | wall s | x copy floor | peak RSS GiB |\n| --- | ---: | ---: | ---: |")
    for name, (seconds, rss) in rows.items():
        print(f"| {name} | {seconds:.1f} | {seconds / floor:.2f} | {rss:.2f} |")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
