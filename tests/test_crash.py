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

from hf_progressive.expansion.checkpoint import complete_checkpoint
from hf_progressive.family.builder import build_family


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
    saved = sorted(p for p in (out / "members").iterdir() if p.name[0] != ".")
    return {p.name: load_file(p / "model.safetensors") for p in saved}


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
    assert {phase for phase, _ in trials()[: len(PHASES)]} == set(PHASES)  # the default run kills in every phase


def _trial_params():
    """Every trial; the first round (one kill per phase) runs by default, the second round is marked slow."""
    return [
        pytest.param(phase, n, id=f"{phase}-{n}", marks=[pytest.mark.slow] if k >= len(PHASES) else [])
        for k, (phase, n) in enumerate(trials())
    ]


@pytest.mark.parametrize("phase, n", _trial_params())
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


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_disk_full_during_a_member_save_keeps_the_previous_state(reference, tmp_path):
    """Files may not grow past a limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, the way a full disk
    fails them with ENOSPC) that the first member's files (weights, and AdamW moments of twice their size in its
    checkpoints) fit under but the second member's moments do not: the build stops in the second member's checkpoint
    save with one clear line, the first member and the ledger stay intact, and the same command then completes the
    family with the members of an uninterrupted build."""
    recipe, ref = reference
    out = tmp_path / "out"
    shutil.copytree(ref / "data", out / "data")
    m0, m1 = (p / "model.safetensors" for p in sorted((ref / "members").iterdir()))
    limit = m0.stat().st_size + m1.stat().st_size  # > 2 x m0 (its optimizer.pt), < 2 x m1
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "from hf_progressive.cli import main; "
        f"sys.exit(main(['build-family', '--recipe', {recipe.source!r}, '--out', {str(out)!r}, "
        f"'--max-steps-per-stage', '{STEPS}']))"
    )
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1, failed.stderr[-2000:]
    errors = [line for line in failed.stderr.splitlines() if "error:" in line]  # progress bars share stderr
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert "hf-progressive build-family: error: could not write a checkpoint" in errors[0]
    assert "is the disk full?" in errors[0] and "rerun the same command" in errors[0]
    assert_nothing_half_written(out)
    ledger = json.loads((out / "family.json").read_text())
    assert list(ledger["members"]) == [m0.parent.name] and list(members(out)) == [m0.parent.name]
    assert not [p for p in (out / "members").iterdir() if p.name.startswith(".")], "a temp member dir was left"
    build_family(recipe, out, max_steps=STEPS)
    expected, actual = members(ref), members(out)
    assert all(torch.equal(actual[m1.parent.name][k], t) for k, t in expected[m1.parent.name].items())


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (a real full disk: ENOSPC); skipped where mounting is not allowed (not root)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_on_a_real_filesystem_leaves_it_as_it_was(tiny_checkpoint, small_tmpfs, capsys, monkeypatch):
    """`expand` first compares the grown weights with the free space and refuses (exit 2, the size said); with that
    check switched off, the write itself runs out of space mid-way (exit 1) and leaves the folder as it was."""
    from hf_progressive.cli import main

    (small_tmpfs / "keep.txt").write_text("the user's file")
    assert _size(small_tmpfs) < 1024
    argv = [
        "expand",
        str(tiny_checkpoint),
        str(small_tmpfs / "big"),
        "--hidden-size",
        "256",
        "--num-hidden-layers",
        "4",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GB but" in err and "free" in err
    assert [p.name for p in small_tmpfs.iterdir()] == ["keep.txt"]
    monkeypatch.setattr("hf_progressive.expansion.grow.check_room", lambda *args: None)
    monkeypatch.setattr("hf_progressive.expansion.streaming.check_room", lambda *args: None)
    assert main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]  # the progress bar shares stderr
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err
    assert [p.name for p in small_tmpfs.iterdir()] == ["keep.txt"]
    assert (small_tmpfs / "keep.txt").read_text() == "the user's file"
