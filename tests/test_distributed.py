"""A real 2-process data-parallel build: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from testing_utils import BIG, SMALL, tiny_recipe_data
from transformers import AutoModelForCausalLM

from hf_progressive.cli import main


def test_two_process_accelerate_launch_builds_the_family(tmp_path):
    recipe = tiny_recipe_data(name="dist", eval_steps=100)
    (tmp_path / "dist.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["prepare-data", str(tmp_path / "dist.yaml"), "--out", str(tmp_path / "store")]) == 0  # step 1
    result = _launch(
        tmp_path / "dist.yaml", tmp_path / "out", "--max-steps-per-stage", "3", "--data", str(tmp_path / "store")
    )
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


def _launch(recipe, out, *extra: str) -> subprocess.CompletedProcess:
    """`accelerate launch` of `hf_progressive build-family` on 2 CPU processes (gloo)."""
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
        str(recipe),
        "--out",
        str(out),
        *extra,
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(out).parent, timeout=600)


SEEDS = {  # the plain family, and Apollo's shared virtual layers (DDP hooks see a layer used twice) with a trunk
    "plain": {},
    "apollo+trunk": {
        "members": [SMALL, {**BIG, "method": "function_preserving+apollo"}],
        "apollo": {"distribution": "uniform"},
        "lr": {"fixed": 1e-2, "warmup_ratio": 0.0, "across_stages": "trunk", "branch_ratio": 0.5},
    },
}


@pytest.mark.parametrize("case", SEEDS)
def test_two_processes_with_accumulation_match_one_process_with_the_full_batch(tmp_path, case):
    """2 processes x micro-batch 2 x 4 accumulation steps == 1 process x batch 16 (SGD: the update is linear in the
    gradient, so fp32 summation order is all that differs)."""
    recipe = tiny_recipe_data(name="acc", batch_size=16, micro_batch_size=2, training={"optim": "sgd"})
    recipe["lr"] = {"fixed": 1e-2, "warmup_ratio": 0.0}
    recipe.update(SEEDS[case])
    (tmp_path / "acc.yaml").write_text(yaml.safe_dump(recipe))
    result = _launch(tmp_path / "acc.yaml", tmp_path / "two", "--max-steps-per-stage", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    single = {**recipe, "micro_batch_size": None}
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(single))
    assert (
        main(
            ["build-family", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "one"), "--max-steps-per-stage", "2"]
        )
        == 0
    )
    for name in json.loads((tmp_path / "one" / "family.json").read_text())["members"]:
        two = load_file(tmp_path / "two" / "members" / name / "model.safetensors")
        one = load_file(tmp_path / "one" / "members" / name / "model.safetensors")
        for key, tensor in one.items():
            torch.testing.assert_close(two[key], tensor, atol=1e-5, rtol=0)
