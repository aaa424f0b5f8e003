"""Crash safety: SIGKILL a family build at seeded points (mid-stage, mid-checkpoint, right after a growth, inside a
member's save, half-way through a ledger write), check that nothing visible is half-written, rerun the same build and
get exactly the members of an uninterrupted build. Disk full during a save: a clear error, the previous state kept."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from testing_utils import tiny_recipe

from hf_progressive.builder import build_family
from hf_progressive.checkpoint import complete_checkpoint


DRIVER = Path(__file__).with_name("crash_driver.py")
STEPS = 6  # per stage, with save_steps=2: checkpoints at 2, 4, 6
PHASES = {"stage": 2 * STEPS, "checkpoint": 2 * STEPS // 2, "growth": 1, "member_save": 2, "ledger": 2}
TRIALS = 10


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted build: (recipe, OUT)."""
    tmp = tmp_path_factory.mktemp("crash")
    recipe = tiny_recipe(tmp)
    build_family(recipe, tmp / "reference", max_steps=STEPS)
    return recipe, tmp / "reference"


def members(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(p / "model.safetensors") for p in sorted((out / "members").iterdir()) if p.name[0] != "."}


def assert_nothing_half_written(out: Path) -> None:
    """Every visible file a reader would trust is whole: JSON parses, members load, checkpoints are complete or are
    the one being written when the kill came (the rerun removes it)."""
    for path in out.rglob("*.json"):
        if not any(part.startswith(".") for part in path.relative_to(out).parts):
            json.loads(path.read_text())
    for member in (out / "members").glob("[!.]*") if (out / "members").is_dir() else []:
        assert (member / "config.json").is_file() and load_file(member / "model.safetensors")
    ledger = json.loads((out / "family.json").read_text()) if (out / "family.json").is_file() else {"members": {}}
    for name in ledger["members"]:
        assert (out / "members" / name / "model.safetensors").is_file(), f"ledger lists {name} but it is not saved"


def trials() -> list[tuple[str, int]]:
    names = list(PHASES)
    return [(names[k % len(names)], random.Random(k).randint(1, PHASES[names[k % len(names)]])) for k in range(TRIALS)]


def test_trials_cover_every_phase():
    assert len(trials()) >= 10 and {phase for phase, _ in trials()} == set(PHASES)


@pytest.mark.parametrize("phase, n", trials(), ids=[f"{p}-{n}" for p, n in trials()])
def test_killed_build_reruns_to_the_same_family(reference, tmp_path, phase, n):
    recipe, ref = reference
    out = tmp_path / "out"
    shutil.copytree(ref / "data", out / "data")  # the same tokenizer and blocks; skips retraining the BPE
    killed = subprocess.run(
        [sys.executable, str(DRIVER), recipe.source, str(out), str(STEPS), phase, str(n)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, f"the build was not killed at {phase} {n}:\n{killed.stderr[-2000:]}"
    assert_nothing_half_written(out)
    build_family(recipe, out, max_steps=STEPS)  # the same command again
    expected, actual = members(ref), members(out)
    assert list(actual) == list(expected)
    for name, tensors in expected.items():
        assert tensors.keys() == actual[name].keys()
        for key, tensor in tensors.items():
            assert torch.equal(actual[name][key], tensor), f"{name}/{key} differs after the rerun"
    ledger, ref_ledger = (json.loads((p / "family.json").read_text()) for p in (out, ref))
    assert ledger["totals"]["tokens"] == ref_ledger["totals"]["tokens"]
    assert [r["val_loss"] for r in ledger["members"].values()] == [
        r["val_loss"] for r in ref_ledger["members"].values()
    ]
    assert not [p for p in out.rglob(".*") if "tmp" in p.name], "temp files left behind"
    assert all(complete_checkpoint(c) for c in out.glob("stages/*/checkpoint-*"))
