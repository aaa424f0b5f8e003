"""`hf-progressive expand` / `demo`: success output, and for every kind of bad input exit code 2, one line on stderr
and nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testing_utils import gpt2_checkpoint, missing_weights, remote_code_checkpoint, truncated_weights
from transformers import LlamaForCausalLM

from hf_progressive.cli import main
from hf_progressive.cli.demo import run_demo


GROW = ["--hidden-size", "64", "--num-hidden-layers", "4"]


def test_expand_writes_a_vanilla_checkpoint_and_prints_the_report(tiny_checkpoint, tmp_path, capsys):
    dst = tmp_path / "big"
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW, "--method", "fpi+identity", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "fpi+identity (seed 3)" in out and "hidden_size           32 -> 64" in out and "max |delta logits|" in out
    assert {"config.json", "model.safetensors", "growth.json", "generation_config.json", "tokenizer_config.json"} <= {
        p.name for p in dst.iterdir()
    }
    assert LlamaForCausalLM.from_pretrained(dst).config.hidden_size == 64
    assert json.loads((dst / "growth.json").read_text())["preservation"]["max_abs_logit_diff"] < 1e-4


BAD_INPUTS = [
    # (id, make source dir (None: the tiny checkpoint), extra args, stderr fragment)
    ("shrinking", None, ["--hidden-size", "16"], "hidden_size=16 is smaller than the source's 32"),
    (
        "heads vs kv heads",
        None,
        ["--num-attention-heads", "6", "--num-key-value-heads", "4", "--hidden-size", "48"],
        "num_attention_heads=6 is not a multiple of num_key_value_heads=4",
    ),
    (
        "hidden vs heads",
        None,
        ["--hidden-size", "36", "--num-attention-heads", "8", "--num-key-value-heads", "4"],
        "hidden_size=36 is not a multiple of num_attention_heads=8",
    ),
    ("non-llama", gpt2_checkpoint, GROW, "model_type='gpt2': hf_progressive grows llama, mistral, qwen2, qwen3"),
    ("missing weights", missing_weights, GROW, "model.safetensors: missing"),
    ("remote code", remote_code_checkpoint, GROW, "asks for remote code (auto_map)"),
    ("truncated weights", truncated_weights, GROW, "truncated"),
    ("unknown method", None, [*GROW, "--method", "magic"], "unknown operator 'magic'"),
    ("hypercloning 1.5x", None, ["--hidden-size", "48", "--method", "hypercloning"], "1.5x ratio"),
    ("no such source", lambda tmp, src: tmp / "nope", GROW, "no such checkpoint directory"),
]


@pytest.mark.parametrize("make_src, args, fragment", [pytest.param(*row[1:], id=row[0]) for row in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tiny_checkpoint, tmp_path, capsys, make_src, args, fragment
):
    src = tiny_checkpoint if make_src is None else make_src(tmp_path, tiny_checkpoint)
    capsys.readouterr()  # drop what building the source printed
    dst = tmp_path / "out" / "big"
    assert main(["expand", str(src), str(dst), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hf-progressive expand: error: ") and fragment in err
    assert not (tmp_path / "out").exists()  # not DST, not its parent, no temp dir


def test_overwrite_replaces_only_a_grown_checkpoint(tiny_checkpoint, tmp_path, capsys):
    dst = tmp_path / "big"
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW]) == 0
    stamp = (dst / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW]) == 2  # our own output: needs --overwrite
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW, "--overwrite"]) == 0
    assert (dst / "model.safetensors").stat().st_mtime_ns != stamp
    (dst / "keep.txt").write_text("mine")  # now it also holds someone's file: never replaced
    capsys.readouterr()
    assert main(["expand", str(tiny_checkpoint), str(dst), *GROW, "--overwrite"]) == 2
    assert "not a grown checkpoint of hf_progressive (config.json" in capsys.readouterr().err
    assert (dst / "keep.txt").read_text() == "mine"


def test_interrupted_expansion_leaves_no_dst_and_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    def crash(src, dst, plan, dtype):
        (Path(dst) / "config.json").write_text("{")  # a half-written side file
        raise KeyboardInterrupt

    monkeypatch.setattr("hf_progressive.expansion.streaming._write_side_files", crash)
    assert main(["expand", str(tiny_checkpoint), str(tmp_path / "big"), *GROW]) == 130  # Ctrl-C: one line
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line or "interrupted" in line]
    assert lines == ["hf-progressive expand: interrupted; rerun the same command to resume."]  # progress bars aside
    assert list(tmp_path.iterdir()) == []


def test_console_entry_point_exit_code(tiny_checkpoint, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_progressive.cli",
            "expand",
            str(tiny_checkpoint),
            str(tmp_path / "b"),
            "--num-hidden-layers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "num_hidden_layers=1 is smaller than the source's 2" in result.stderr


def test_usage_without_command(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "usage: hf-progressive {plan,prepare-data,build-family,consistency,evaluate,report,compare,push," in err
    assert main(["bogus"]) == 2 and "unknown command 'bogus'" in capsys.readouterr().err


def test_demo_runs_every_operator(tmp_path):
    report = run_demo(tmp_path)
    table = report.split("\n\n")[-1].splitlines()
    assert len(table) == 6  # header + 5 operators
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["function_preserving+identity"][1] == "yes" and float(rows["function_preserving+identity"][2]) < 1e-4
    assert rows["aki+interpolate"][1] == "no" and float(rows["aki+interpolate"][3]) > 1e-3


def test_hub_script_expand(tiny_checkpoint, tmp_path):
    script = Path(__file__).parents[1] / "hub_scripts" / "expand.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_checkpoint), str(tmp_path / "big"), "--num-hidden-layers", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "num_hidden_layers     2 -> 3" in result.stdout and (tmp_path / "big" / "model.safetensors").is_file()
