"""The command line's conventions: --help everywhere, one way to give a recipe, no option a command ignores, one error
hierarchy, I/O errors worded by what failed; and `expand` verifies before it replaces anything."""

import errno
import hashlib
import shutil

import pytest
import torch
from testing_utils import STEPS, tiny_recipe

from hf_progressive import errors
from hf_progressive.cli.commands import COMMANDS, _os_error, main
from hf_progressive.expansion import verification


GROW = ["--hidden-size", "64", "--num-hidden-layers", "4"]


def test_top_level_help_exits_0_and_lists_every_command(capsys):
    assert main(["--help"]) == 0
    printed = capsys.readouterr().out
    assert all(f"  {name} " in printed for name in COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_help_exits_0_with_usage(command, capsys):
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: hf-progressive {command}")


@pytest.mark.parametrize("command", ["plan", "build-family", "compare"])
def test_recipe_positional_or_flag_and_not_two_different_ones(command, tmp_path, capsys):
    recipe = str(tmp_path / "nope.yaml")
    for argv in ([command, recipe], [command, "--recipe", recipe]):
        assert main([*argv, "--out", str(tmp_path / "o")] if command != "plan" else argv) == 2
        assert "nope.yaml': no such file and no shipped recipe" in capsys.readouterr().err
    assert main([command, "tiny", "--recipe", "paper-1b-8b"]) == 2
    assert "recipe given twice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


IGNORED_OPTIONS = [  # (command line, the option it must refuse)
    (["plan", "tiny", "--out", "x"], "--out"),
    (["plan", "tiny", "--report_to", "wandb"], "--report_to"),
    (["compare", "tiny", "--mode", "independent"], "--mode"),
    (["consistency", "OUT", "--tasks", "x"], "--tasks"),
    (["evaluate", "OUT", "--pairs", "adjacent"], "--pairs"),
    (["report", "OUT", "--limit", "3"], "--limit"),
    (["push-metrics", "OUT", "--namespace", "o", "--private"], "--private"),
]


@pytest.mark.parametrize("argv, option", IGNORED_OPTIONS, ids=[" ".join(a[:1] + [o]) for a, o in IGNORED_OPTIONS])
def test_options_a_command_ignores_are_refused(argv, option, tmp_path, capsys):
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {option}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_one_error_hierarchy():
    kinds = [errors.RecipeError, errors.ExpansionError, errors.CheckpointError, errors.DataError]
    for kind in kinds:
        assert kind.__bases__ == (errors.HfProgressiveError,)
    assert issubclass(errors.HfProgressiveError, ValueError)


def test_data_errors_are_their_own_kind(tmp_path):
    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec

    with pytest.raises(errors.DataError, match="no such file"):
        next(iter_texts(DataSpec(train=str(tmp_path / "none.jsonl")), "train"))


@pytest.mark.parametrize(
    "error, wanted, unwanted",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/o/x"), "free space", "permissions"),
        (OSError(errno.EFBIG, "File too large", "/o/x"), "free space", "permissions"),
        (PermissionError(errno.EACCES, "Permission denied", "/o/recipe.yaml"), "permissions", "free space"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/o/a"), "(/o/a)", "free space"),
        (OSError("Client error 422 for url https://hub/api"), "422", "free space"),
    ],
)
def test_os_errors_are_worded_by_what_failed(error, wanted, unwanted):
    line = _os_error(error)
    assert wanted in line and unwanted not in line and "\n" not in line


def test_a_failed_read_is_not_reported_as_a_full_disk(tiny_family, tmp_path, capsys):
    out = tmp_path / "family"
    shutil.copytree(tiny_family[0], out)
    log = out / "members" / next(iter(tiny_family[1].members)) / "training_log.json"
    log.unlink()
    log.mkdir()  # unreadable as a file, whoever runs the test (root included)
    assert main(["report", str(out)]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]  # progress bars aside, one line
    assert "Is a directory" in line and "training_log.json" in line and "Traceback" not in err
    assert "free space" not in err and "writing" not in err


def _tree_bytes(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_failed_strict_expand_with_overwrite_keeps_the_previous_dst(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    dst = tmp_path / "big"
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW, "--method", "fpi+identity", "--seed", "1"]) == 0
    before = _tree_bytes(dst)
    monkeypatch.setitem(verification.TOLERANCES, torch.float32, 0.0)  # any drift at all now fails --strict
    argv = ["expand", str(tiny_checkpoint), str(dst), *GROW, "--strict", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]  # progress bars aside, one line
    assert "strict: max |delta logits|" in line and "Traceback" not in err
    assert _tree_bytes(dst) == before  # byte-identical: verified before the output was moved into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]  # no temp folder left beside it


def test_expand_library_call_has_no_cli_import(tiny_checkpoint, tmp_path):
    """The library grows a checkpoint on its own (the CLI only parses and prints)."""
    import subprocess
    import sys

    code = (
        "import sys; from hf_progressive.expansion.grow import GrowArguments, grow_checkpoint; "
        f"grow_checkpoint({str(tiny_checkpoint)!r}, {str(tmp_path / 'b')!r}, GrowArguments(num_hidden_layers=3), "
        "progress=False); assert 'hf_progressive.cli' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "b" / "growth.json").is_file()


def test_build_family_positional_recipe_builds(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    argv = ["build-family", recipe.source, "--out", str(tmp_path / "o"), "--max-steps-per-stage", str(STEPS)]
    assert main(argv) == 0
    assert "ledger in" in capsys.readouterr().out and (tmp_path / "o" / "family.json").is_file()
