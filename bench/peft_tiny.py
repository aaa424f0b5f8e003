"""Benchmark: the shipped `tiny` recipe with `full` versus `lora` growth stages (train_inherited), in one run:
trainable parameters, optimizer-state bytes, stage FLOPs, wall time and final validation loss per member.

    python bench/peft_tiny.py --work /tmp/hfp-peft     # two tiny family builds, ~6 minutes on 2 CPU cores"""

import argparse
import shutil
from pathlib import Path

import yaml

from hf_progressive.family.builder import build_family
from hf_progressive.family.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/hfp-peft"))
    parser.add_argument("--lora-r", type=int, default=8)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    members = yaml.safe_load(load_recipe("tiny").text)["members"]
    lora = [m if k == 0 else {**m, "train_inherited": "lora", "lora_r": args.lora_r} for k, m in enumerate(members)]
    ledgers = {
        mode: build_family(load_recipe("tiny", members=spec), args.work / mode)
        for mode, spec in (("full", members), ("lora", lora))
    }
    print("| member | stages | trainable params | optimizer state MB | stage FLOPs | wall s | val loss |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ledgers["full"].members:
        for mode, ledger in ledgers.items():
            r = ledger.members[name]
            print(
                f"| {name} | {mode} | {r.trainable_params:,} | {r.optimizer_state_bytes / 1e6:.2f} | "
                f"{r.flops_stage:.3g} | {r.wall_time_s:.1f} | {r.val_loss:.4f} |"
            )
    for mode, ledger in ledgers.items():
        print(f"{mode}: total {ledger.totals['flops']:.4g} FLOPs, {ledger.totals['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
