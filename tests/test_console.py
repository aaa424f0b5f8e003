"""What a person reads at the console: one compact line per logging step and the ledger row of each member instead
of the Trainer's raw dicts (unless --verbose), and no stray git error from lm-eval."""

import re

import yaml
from testing_utils import tiny_recipe_data

from hf_progressive.cli import main


def _recipe(tmp_path) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_data()))
    return str(path)


def test_a_build_prints_compact_lines_and_member_rows(tmp_path, capsys):
    argv = ["build-family", _recipe(tmp_path), "--out", str(tmp_path / "out"), "--max-steps-per-stage", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    steps = re.findall(
        r"^(m\d-\S+) step (\d+)/2  loss \d+\.\d{4}  lr \S+  tokens [\d,]+  FLOPs \S+  [\d,]+ tok/s$", out, re.M
    )
    assert [(m[:2], s) for m, s in steps] == [("m0", "1"), ("m0", "2"), ("m1", "1"), ("m1", "2")], out
    assert len(re.findall(r"^m\d-\S+ step 2/2  eval loss \d+\.\d{4}$", out, re.M)) == 2  # once each, not repeated
    rows = re.findall(r"^(m\d-\S+)\s+(\S+)\s+2\s+[\d,]+\s", out, re.M)
    assert len(rows) == 4  # each member's row as it is saved, and again in the final table
    assert "{'loss'" not in out and "'grad_norm'" not in out


def test_verbose_keeps_the_trainers_own_output(tmp_path, capsys):
    argv = ["build-family", _recipe(tmp_path), "--out", str(tmp_path / "out"), "--max-steps-per-stage", "2"]
    assert main([*argv, "--verbose", "--until", "1"]) == 0
    captured = capsys.readouterr()
    assert "'loss'" in captured.out + captured.err and " step 1/2  loss" not in captured.out


def test_evaluate_outside_a_git_repository_prints_no_git_error(tiny_family, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # not a git repository
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert main(["evaluate", str(tiny_family[0]), "--limit", "2"]) == 0
    assert "not a git repository" not in capfd.readouterr().err
