"""Reliability, round 2: what a new user broke with only the README and --help. Every row of the table is bad input
that must exit 2 with one line and change nothing on disk (the same contract as test_reliability.py, whose helpers
are reused); the rest are the mechanisms behind the fixes: OUT's lock, the build identity written before any stage,
derived results that know which members they cover, orphan temp folders, and storage errors worded by cause."""

import errno
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_reliability import recipe_file, snapshot
from testing_utils import BIG, SMALL, tiny_recipe_data

from hf_progressive.cli.commands import _os_error, main
from hf_progressive.family.builder import build_family
from hf_progressive.family.ledger import Ledger, build_lock
from hf_progressive.family.recipe import load_recipe
from hf_progressive.utils.io import storage_errors


def _raw_recipe(tmp: Path, text: str | bytes) -> str:
    path = tmp / "raw.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _with_line(tmp: Path, line: str) -> str:
    """The test recipe with its field `line` names written verbatim (for spellings safe_dump would quote)."""
    data = tiny_recipe_data()
    data.pop(line.split(":")[0], None)
    return _raw_recipe(tmp, yaml.safe_dump(data) + line + "\n")


def _build(tmp: Path, *extra: str, **changes) -> list[str]:
    return ["build-family", recipe_file(tmp, **changes), "--out", str(tmp / "out"), *extra]


def _copy_family(tmp: Path, family: Path) -> Path:
    shutil.copytree(family, tmp / "fam")
    return tmp / "fam"


def _family_json(tmp: Path, family: Path, text: str) -> Path:
    out = _copy_family(tmp, family)
    (out / "family.json").write_text(text)
    return out


def _other_recipe_family(tmp: Path, family: Path) -> Path:
    other = _copy_family(tmp, family).rename(tmp / "other")
    ledger = json.loads((other / "family.json").read_text())
    (other / "family.json").write_text(json.dumps({**ledger, "recipe": "someone-else"}))
    return other


def _user_folder(tmp: Path) -> Path:
    """A stand-in for `/` or a home folder: someone's files, no family.json."""
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    (root / "consistency.json").write_text('{"mine": true}')
    return root


def _expand(tmp, ckpt, dst, *extra) -> list[str]:
    return ["expand", str(ckpt), str(dst), "--hidden-size", "64", *extra]


def _nested_source(tmp: Path, ckpt: Path) -> Path:
    shutil.copytree(ckpt, tmp / "outer" / "src")
    return tmp / "outer" / "src"


CASES = [
    # (id, argv builder (tmp, tiny checkpoint, tiny family), fragment of the one-line error)
    ("typo'd flag", lambda t, c, f: _build(t, "--max-step-per-stage", "2"), "did you mean --max-steps-per-stage"),
    ("two positionals", lambda t, c, f: [*_build(t), "extra"], "unrecognized arguments: extra"),
    ("recipe is a list", lambda t, c, f: ["plan", _raw_recipe(t, "- a\n- b\n")], "a recipe is a YAML mapping"),
    ("recipe not UTF-8", lambda t, c, f: ["plan", _raw_recipe(t, b"name: \xff\xfe\n")], "not UTF-8"),
    ("seed: abc", lambda t, c, f: _build(t, seed="abc"), "seed: expected an integer, got 'abc'"),
    ("batch_size: true", lambda t, c, f: _build(t, batch_size=True), "batch_size: expected an integer, got True"),
    ("lr .inf", lambda t, c, f: ["plan", _with_line(t, "lr: {fixed: .inf}")], "lr.fixed: expected a finite"),
    (
        "budget .inf",
        lambda t, c, f: ["plan", _with_line(t, "tokens_per_param: .inf")],
        "tokens_per_param: expected a finite number",
    ),
    ("near-zero budget", lambda t, c, f: _build(t, tokens_per_param=1e-9), "less than one optimizer step"),
    ("huge batch", lambda t, c, f: _build(t, batch_size=1_000_000_000), "less than one optimizer step"),
    ("negative weight decay", lambda t, c, f: _build(t, optimizer={"weight_decay": -0.1}), "weight_decay=-0.1"),
    ("beta2 of 1", lambda t, c, f: _build(t, optimizer={"adam_beta2": 1.0}), "adam_beta2=1.0"),
    (
        "noise on function_preserving",
        lambda t, c, f: _build(t, members=[SMALL, {**BIG, "noise_std": 0.1}]),
        "members[1].noise_std=0.1",
    ),
    ("max steps -1", lambda t, c, f: _build(t, "--max-steps-per-stage", "-1"), "--max-steps-per-stage -1: use a"),
    ("max steps 0", lambda t, c, f: _build(t, "--max-steps-per-stage", "0"), "--max-steps-per-stage 0: use a"),
    ("report_to bogus", lambda t, c, f: _build(t, "--report-to", "bogus"), "bogus is not supported"),
    ("out ''", lambda t, c, f: ["build-family", recipe_file(t), "--out", ""], "--out '': give the folder"),
    (
        "out holds someone's files",
        lambda t, c, f: ["build-family", recipe_file(t), "--out", str(_user_folder(t))],
        "entries that are not a family (consistency.json, etc)",
    ),
    (
        "truncated family.json: build",
        lambda t, c, f: ["build-family", recipe_file(t), "--out", str(_family_json(t, f, '{"schema_'))],
        "not valid JSON",
    ),
    ("truncated family.json: report", lambda t, c, f: ["report", str(_family_json(t, f, "{"))], "not valid JSON"),
    (
        "foreign family.json: consistency",
        lambda t, c, f: ["consistency", str(_family_json(t, f, "[1, 2]"))],
        "ledger schema None",
    ),
    (
        "foreign family.json: push",
        lambda t, c, f: ["push", str(_family_json(t, f, '"text"')), "--namespace", "org", "--dry-run"],
        "ledger schema None",
    ),
    ("evaluate unknown task", lambda t, c, f: ["evaluate", str(f), "--tasks", "nosuch"], "'nosuch' is not an lm-eval"),
    ("evaluate --limit 0", lambda t, c, f: ["evaluate", str(f), "--limit", "0"], "--limit 0: use a positive"),
    ("consistency --max-blocks 0", lambda t, c, f: ["consistency", str(f), "--max-blocks", "0"], "--max-blocks 0"),
    ("report baseline missing", lambda t, c, f: ["report", str(f), "--baseline", str(t / "nope")], "no family.json"),
    (
        "report baseline of another recipe",
        lambda t, c, f: ["report", str(f), "--baseline", str(_other_recipe_family(t, f))],
        "not comparable",
    ),
    ("expand onto itself", lambda t, c, f: _expand(t, c, c, "--overwrite"), "is the source checkpoint"),
    ("expand into itself", lambda t, c, f: _expand(t, c, c / "sub"), "is inside the source checkpoint"),
    (
        "expand over its parent",
        lambda t, c, f: _expand(t, _nested_source(t, c), t / "outer", "--overwrite"),
        "holds the source checkpoint",
    ),
    ("expand noise inf", lambda t, c, f: _expand(t, c, t / "big", "--method", "fpi", "--noise-std", "inf"), "finite"),
    ("expand shard 0", lambda t, c, f: _expand(t, c, t / "big", "--max-shard-size", "0"), "max_shard_size='0'"),
    ("expand shard -5GB", lambda t, c, f: _expand(t, c, t / "big", "--max-shard-size=-5GB"), "positive size"),
    ("expand shard lots", lambda t, c, f: _expand(t, c, t / "big", "--max-shard-size", "lots"), "positive size"),
    (
        "expand larger than the disk",
        lambda t, c, f: ["expand", str(c), str(t / "big"), "--intermediate-size", str(10**12)],
        "GB but",
    ),
    (
        "push id with /..",
        lambda t, c, f: ["push", str(f), "--namespace", "org", "--prefix", "x/..", "--dry-run"],
        "not a valid Hub id",
    ),
    (
        "push namespace with /..",
        lambda t, c, f: ["push", str(f), "--namespace", "../org", "--dry-run"],
        "not a valid Hub id",
    ),
]


@pytest.mark.parametrize("make_argv, fragment", [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    tiny_checkpoint, tiny_family, tmp_path, capsys, make_argv, fragment
):
    family = tiny_family[0]
    argv = make_argv(tmp_path, tiny_checkpoint, family)
    before, family_before = snapshot(tmp_path), snapshot(family)
    checkpoint_before = snapshot(tiny_checkpoint)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"hf-progressive {argv[0]}: error: ")
    assert fragment in captured.err and "Traceback" not in captured.err + captured.out, captured.err
    assert snapshot(tmp_path) == before and snapshot(family) == family_before
    assert snapshot(tiny_checkpoint) == checkpoint_before


def test_push_refuses_an_incomplete_family_and_a_missing_token(tiny_family, tmp_path, capsys, monkeypatch):
    out = _copy_family(tmp_path, tiny_family[0])
    ledger = json.loads((out / "family.json").read_text())
    (out / "family.json").write_text(json.dumps({**ledger, "members_planned": ledger["members_planned"] + 1}))
    argv = ["push", str(out), "--namespace", "org", "--dry-run"]
    assert main(argv) == 2 and "--allow-incomplete" in capsys.readouterr().err
    assert main([*argv, "--allow-incomplete"]) == 0  # asked for: staged
    capsys.readouterr()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["push", str(out), "--namespace", "org", "--allow-incomplete"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Hugging Face token" in err


def test_a_second_builder_on_the_same_out_is_refused_in_one_line(tmp_path, capsys):
    """A real build-family runs in a subprocess; a second one on the same OUT is refused while it holds the lock;
    a killed holder leaves nothing stuck (the kernel drops a flock with its process)."""
    out, recipe = tmp_path / "out", recipe_file(tmp_path)
    argv = ["build-family", recipe, "--out", str(out), "--max-steps-per-stage", "40"]
    first = subprocess.Popen(
        [sys.executable, "-m", "hf_progressive", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not (out / "family.json").is_file() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, "the first build ended before the second could start"
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another build-family is running on this folder" in err
    finally:
        first.kill()
        first.wait()
    with build_lock(out):  # the killed holder's lock is gone
        pass


class _StopAfterFirstSave:
    """A TrainerCallback that interrupts the build like Ctrl-C right after the first Trainer checkpoint is saved."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def on_save(self, *args, **kwargs):
        raise KeyboardInterrupt


def _weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return {p.name: load_file(p / "model.safetensors") for p in sorted((out / "members").iterdir())}


def test_an_interrupted_smoke_run_does_not_poison_the_next_build(tmp_path):
    """Smoke run (2 steps a stage) stopped after its first checkpoint, before any member finished; the longer run
    in the same OUT then gives exactly the family of a clean longer run (the smoke's checkpoints are not resumed)."""
    recipe = load_recipe(recipe_file(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        build_family(recipe, tmp_path / "out", max_steps=2, callbacks=[_StopAfterFirstSave()])
    assert list((tmp_path / "out" / "stages").rglob("checkpoint-*"))  # the stale state is really there
    build_family(recipe, tmp_path / "out", max_steps=4)
    build_family(recipe, tmp_path / "clean", max_steps=4)
    ours, clean = _weights(tmp_path / "out"), _weights(tmp_path / "clean")
    assert list(ours) == list(clean)
    assert all(torch.equal(ours[m][k], clean[m][k]) for m in clean for k in clean[m])


def test_derived_results_are_recomputed_when_the_family_grows(tmp_path):
    from hf_progressive.analysis.report import family_consistency, write_report

    recipe = load_recipe(recipe_file(tmp_path))
    out = tmp_path / "out"
    build_family(recipe, out, max_steps=2, until="1")
    assert family_consistency(out, max_blocks=2)["members"] == list(Ledger.read(out).members)  # one member
    build_family(recipe, out, max_steps=2)  # resume: the family grows
    write_report(out)
    members = list(Ledger.read(out).members)
    assert len(members) == 2 and json.loads((out / "consistency.json").read_text())["members"] == members
    assert (
        members[1] in (out / "report.md").read_text().split("## ")[-1] or members[1] in (out / "report.md").read_text()
    )


def test_orphan_temp_folders_of_a_killed_expand_are_removed(tiny_checkpoint, tmp_path):
    dead = tmp_path / ".big.tmp-999999999-x"  # no such pid
    live = tmp_path / f".big.tmp-{__import__('os').getpid()}-y"  # this process: another expand still writing
    dead.mkdir(), live.mkdir()
    assert main(_expand(tmp_path, tiny_checkpoint, tmp_path / "big")) == 0
    assert not dead.exists() and live.exists()


FULL_DISK = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


@pytest.mark.parametrize(
    "raised, code, says_space",
    [
        (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), errno.ENOSPC, True),
        (RuntimeError("Parent directory does not exist."), errno.EIO, False),
        (
            __import__("safetensors").SafetensorError(FULL_DISK),
            errno.ENOSPC,
            True,
        ),  # noqa: E501
        (__import__("safetensors").SafetensorError("Error while serializing: bad dtype"), errno.EIO, False),
    ],
    ids=["torch full", "torch other", "safetensors full", "safetensors other"],
)
def test_storage_errors_say_free_space_only_for_a_full_disk(raised, code, says_space):
    with pytest.raises(OSError) as error:
        with storage_errors("a checkpoint in out/stages/m0"):
            raise raised
    assert error.value.errno == code
    line = _os_error(error.value)
    assert ("free space" in line) is says_space and "\n" not in line and "a checkpoint in out/stages/m0" in line


def test_a_full_disk_while_the_trainer_writes_weights_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })'
        )

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", full)
    assert main(_build(tmp_path, "--max-steps-per-stage", "2")) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "free space" in errors[0] and "could not write a checkpoint" in errors[0], errors
