"""Light processes: `hf-progressive --help`, every `CMD --help` and an argument error import neither torch nor
transformers, and a prepare-data worker (spawned from the console script, whose main module it re-imports) imports
neither and stays small. Each runs in a fresh subprocess, where `sys.modules` shows what was imported."""

import json
import subprocess
import sys

import pytest

from hf_progressive.cli.commands import COMMANDS


HEAVY = ("torch", "transformers", "datasets", "accelerate", "safetensors")
PROBE = """
import json, sys
from hf_progressive.cli import main  # what the console script runs
try:
    code = main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "heavy": [m for m in HEAVY_NAMES if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY_NAMES", repr(HEAVY))


def _run(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return json.loads(result.stderr.strip().splitlines()[-1])


ERRORS = [
    ["plan", "--bogus"],
    ["build-family", "--max-steps-per-stage", "0"],
    ["expand", "a", "b", "--max-shard-size", "lots"],
    ["push", "out"],
]


@pytest.mark.parametrize(
    "argv", [["--help"], *([name, "--help"] for name in COMMANDS), *ERRORS], ids=lambda argv: " ".join(argv)
)
def test_help_and_argument_errors_import_no_training_stack(argv):
    seen = _run(*argv)
    assert seen["heavy"] == [], seen
    assert seen["code"] == (0 if argv[-1] == "--help" else 2)


WORKER = """
import json, sys
from hf_progressive.cli import main  # the console script's main module: a spawned worker imports it again

def probe(_):
    # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's peak over into the child)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [m for m in HEAVY_NAMES if m in sys.modules], int(status["VmHWM"].split()[0])

if __name__ == "__main__":
    import multiprocessing
    from hf_progressive.data import tokenize_worker
    from hf_progressive.data.tokenizer import train_bpe
    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    train_bpe(iter_texts(DataSpec(), "train"), 400, 30_000).save_pretrained(sys.argv[1])
    init = (sys.argv[1], 0, True)
    with multiprocessing.get_context("spawn").Pool(1, tokenize_worker.load, init) as pool:
        ids = pool.apply(tokenize_worker.encode_chunk, (["a short document"],))
        heavy, rss_kb = pool.apply(probe, (0,))
    print(json.dumps({"heavy": heavy, "rss_mb": rss_kb / 1024, "tokens": len(ids)}))
""".replace("HEAVY_NAMES", repr(HEAVY))


def test_a_prepare_data_worker_imports_no_training_stack_and_stays_small(tmp_path):
    script = tmp_path / "spawn_probe.py"
    script.write_text(WORKER)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "tok")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == [] and seen["tokens"] > 1, seen
    assert seen["rss_mb"] < 100, seen  # its own peak (VmHWM), MB


EXPAND = r"""
import json, re, sys
from hf_progressive.cli import main
code = main(["expand", sys.argv[1], sys.argv[2], "--num-hidden-layers", "3", "--no-verify"])
model_code = re.compile(r"transformers\.modeling_utils|transformers\.models\.(?!auto\.)(\w+)\.modeling_\1")
modeling = sorted(m for m in sys.modules if model_code.fullmatch(m))  # PreTrainedModel, LlamaForCausalLM, ...
print(json.dumps({"code": code, "modeling": modeling, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def test_an_unverified_expand_never_imports_modeling_code(tiny_checkpoint, tmp_path):
    """Streaming growth is arithmetic on tensors: only verification builds layers, so only it may import a model's
    modeling code (seconds of start-up on a CLI that is otherwise as fast as the disk)."""
    argv = [sys.executable, "-c", EXPAND, str(tiny_checkpoint), str(tmp_path / "grown")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    seen = json.loads(result.stderr.strip().splitlines()[-1])
    assert seen["code"] == 0 and seen["torch"], result.stderr[-2000:]
    assert seen["modeling"] == [], seen
    assert (tmp_path / "grown" / "model.safetensors").is_file()
