"""A real 2-process data-parallel build: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo)."""

import json
import os
import subprocess
import sys

import yaml
from testing_utils import tiny_recipe_data
from transformers import AutoModelForCausalLM

from hf_progressive.cli import main


def test_two_process_accelerate_launch_builds_the_family(tmp_path):
    recipe = tiny_recipe_data(name="dist", eval_steps=100)
    (tmp_path / "dist.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["prepare-data", str(tmp_path / "dist.yaml"), "--out", str(tmp_path / "store")]) == 0  # step 1
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "hf_progressive",  # what a wheel install launches (hub_scripts/train_family.py is the same command)
        "build-family",
        str(tmp_path / "dist.yaml"),
        "--out",
        str(tmp_path / "out"),
        "--max-steps-per-stage",
        "3",
        "--data",  # step 2: every rank memory-maps the store
        str(tmp_path / "store"),
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ledger = json.loads((tmp_path / "out" / "family.json").read_text())
    first, second = ledger["members"].values()
    assert [r["world_size"] for r in (first, second)] == [2, 2]
    assert first["tokens"] == second["tokens"] == 3 * 4 * 32  # the global batch is split, not doubled
    assert abs(second["first_step_loss"] - first["boundary_loss"]) <= 1e-3
    for name in ledger["members"]:
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "members" / name)
        assert model.config.architectures == ["LlamaForCausalLM"]
    assert json.loads((tmp_path / "out" / "family.json").read_text())["data"]["store"] == str(
        (tmp_path / "store").resolve()
    )
    assert not (tmp_path / "out" / "data").exists()  # nothing re-tokenized inside the launch
    assert result.stdout.count("dist (progressive):") == 1  # the ledger is printed by the main process only
