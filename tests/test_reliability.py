"""Bad input across the CLI and the Python API: every row gets a one-line error that names what is wrong and the fix
(exit code 2 from the CLI, a typed ValueError from the API), no traceback, and nothing written or changed on disk.
The disk is compared file by file (path, size, content hash) before and after each call."""

import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from testing_utils import (
    BIG,
    SMALL,
    copy_checkpoint,
    gpt2_checkpoint,
    missing_weights,
    remote_code_checkpoint,
    tiny_config,
    tiny_recipe_data,
    truncated_weights,
)
from transformers import BertConfig, BertForMaskedLM

from hf_progressive import ProgressiveLlamaForCausalLM
from hf_progressive.cli import main
from hf_progressive.errors import CheckpointError, ExpansionError, RecipeError
from hf_progressive.expansion.streaming import expand_checkpoint
from hf_progressive.family.builder import build_family
from hf_progressive.family.ledger import Ledger
from hf_progressive.family.recipe import load_recipe


def snapshot(root: Path) -> dict[str, tuple[int, str] | str]:
    """Every path under `root` with its size and content hash (folders as "dir")."""
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*"))}


def _digest(path: Path) -> tuple[int, str] | str:
    return (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) if path.is_file() else "dir"


def recipe_file(tmp: Path, **changes) -> str:
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_data(**changes)))
    return str(path)


# ---- inputs: each builder gets (tmp, tiny_checkpoint) and returns the CLI argv (or an API call) --------------------


def _build(tmp, **changes):
    return ["build-family", "--recipe", recipe_file(tmp, **changes), "--out", str(tmp / "out")]


def _expand_from(make):
    def argv(tmp, ckpt):
        return ["expand", str(make(tmp, ckpt)), str(tmp / "big"), "--hidden-size", "64"]

    return argv


def _bert(tmp, _):
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
    BertForMaskedLM(config).save_pretrained(tmp / "bert")
    return tmp / "bert"


def _pickle_only(tmp, ckpt):
    path = copy_checkpoint(ckpt, tmp / "pickle")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")  # a .bin is never unpickled
    return path


def _data_file(tmp, name, content: bytes):
    (tmp / name).write_bytes(content)
    return str(tmp / name)


def _other_recipe_out(tmp, _):
    out = tmp / "out"
    out.mkdir()
    other = Ledger(
        recipe="someone-else",
        mode="progressive",
        recipe_text="name: someone-else",
        max_steps=None,
        batch_size=4,
        seq_len=32,
        tokenizer="t",
        data={},
        members_planned=2,
    )  # a valid ledger of the current schema, of another recipe
    other.write(out)
    return ["build-family", "--recipe", recipe_file(tmp), "--out", str(out)]


def _mismatched_tokenizer(tmp, _):
    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    train_bpe(iter_texts(DataSpec(), "train"), 400, 30_000).save_pretrained(tmp / "tok")
    return _build(tmp, vocab_size=300, tokenizer={"path": str(tmp / "tok")})


def _unwritable_out(tmp, _):
    (tmp / "a-file").write_text("not a folder")
    return ["build-family", "--recipe", recipe_file(tmp), "--out", str(tmp / "a-file" / "out")]


def _store(tmp, **changes):
    """A small token store of the test recipe (with `changes`), in tmp/store."""
    from hf_progressive.data.token_store import prepare_store

    prepare_store(load_recipe(recipe_file(tmp, **changes)), tmp / "store", max_tokens=320, progress=False)
    return tmp / "store"


def _build_with_store(make_store):
    def argv(tmp, _):
        store = make_store(tmp)  # first: it writes its own recipe file, which _build then replaces
        return [*_build(tmp), "--data", str(store)]

    return argv


def _damaged_manifest(tmp):
    store = _store(tmp)
    (store / "manifest.json").write_text('{"format": "hf_progressive-token-store", "seq_')
    return store


def _store_is_a_file(tmp):
    (tmp / "store.bin").write_bytes(b"\0" * 64)
    return tmp / "store.bin"


CLI_CASES = [
    # (id, argv builder, fragment of the one-line error)
    ("wrong type", lambda t, c: _build(t, batch_size="sixteen"), "batch_size"),
    ("float for int", lambda t, c: _build(t, seq_len=32.5), "seq_len"),
    ("unknown key", lambda t, c: _build(t, sequence_length=64), "unknown field 'sequence_length'"),
    ("shrinking sizes", lambda t, c: _build(t, members=[BIG, SMALL]), "smaller than the source's"),
    (
        "impossible heads",
        lambda t, c: _build(t, members=[SMALL, {**BIG, "num_attention_heads": 3, "num_key_value_heads": 2}]),
        "not a multiple of num_key_value_heads",
    ),
    ("tokenizer vs vocab", _mismatched_tokenizer, "mismatched tokenizer"),
    ("empty dataset", lambda t, c: _build(t, data={"train": _data_file(t, "empty.jsonl", b"")}), "empty; point"),
    (
        "non-text dataset",
        lambda t, c: _build(t, data={"train": _data_file(t, "blob.bin", bytes(range(256)) * 64)}),
        "unknown format",
    ),
    (
        "binary text file",
        lambda t, c: _build(t, data={"train": _data_file(t, "blob.txt", bytes(range(128, 256)) * 64)}),
        "cannot be read as text",
    ),
    (
        "jsonl without text field",
        lambda t, c: _build(t, data={"train": _data_file(t, "rows.jsonl", b'{"body": "hello"}\n' * 50)}),
        "text",
    ),
    (
        "seq_len > positions",
        lambda t, c: _build(t, model={"max_position_embeddings": 16}),
        "max_position_embeddings",
    ),
    ("negative budget", lambda t, c: _build(t, tokens_per_param=-1.0), "tokens_per_param=-1.0"),
    ("zero batch", lambda t, c: _build(t, batch_size=0), "batch_size=0"),
    ("zero lr", lambda t, c: _build(t, lr={"fixed": 0.0}), "lr.fixed"),
    ("bad lora rank", lambda t, c: _build(t, members=[SMALL, {**BIG, "train_inherited": "lora", "lora_r": 0}]), "r=0"),
    ("unwritable out", _unwritable_out, "not a directory"),
    ("out of another recipe", _other_recipe_out, "holds a family built with another recipe"),
    ("no such recipe", lambda t, c: ["build-family", "--recipe", str(t / "nope.yaml")], "no such file"),
    ("invalid yaml", lambda t, c: ["plan", _data_file(t, "bad.yaml", b"name: [unclosed\n")], "not valid YAML"),
    ("gpt2 source", _expand_from(gpt2_checkpoint), "model_type='gpt2': hf_progressive grows llama"),
    ("bert source", _expand_from(_bert), "model_type='bert': hf_progressive grows llama"),
    ("truncated safetensors", _expand_from(truncated_weights), "truncated"),
    ("missing safetensors", _expand_from(missing_weights), "missing"),
    ("pickle weights only", _expand_from(_pickle_only), "only safetensors checkpoints are read"),
    ("remote code", _expand_from(remote_code_checkpoint), "asks for remote code"),
    ("expand shrinking", lambda t, c: ["expand", str(c), str(t / "big"), "--hidden-size", "16"], "smaller"),
    ("consistency without family", lambda t, c: ["consistency", str(t)], "no family.json"),
    ("store of another seq_len", _build_with_store(lambda t: _store(t, seq_len=16)), "seq_len=16, but the recipe's"),
    ("store of another tokenizer", _build_with_store(lambda t: _store(t, vocab_size=400)), "another tokenizer"),
    ("damaged store manifest", _build_with_store(_damaged_manifest), "damaged or not a token store manifest"),
    ("store path is a file", _build_with_store(_store_is_a_file), "a file, not a token store folder"),
    (
        "prepare-data into a file",
        lambda t, c: ["prepare-data", recipe_file(t), "--out", _data_file(t, "f", b"x")],
        "a file",
    ),
]


@pytest.mark.parametrize("make_argv, fragment", [pytest.param(*row[1:], id=row[0]) for row in CLI_CASES])
def test_cli_bad_input_exits_2_with_one_line_and_changes_nothing(
    tiny_checkpoint, tmp_path, capsys, make_argv, fragment
):
    argv = make_argv(tmp_path, tiny_checkpoint)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"hf-progressive {argv[0]}: error: ")
    assert fragment in captured.err and "Traceback" not in captured.err + captured.out
    assert snapshot(tmp_path) == before


def _api_shrink(tmp, ckpt):
    from hf_progressive.expansion.checkpoint import load_model

    small = load_model(ckpt, ProgressiveLlamaForCausalLM)
    ProgressiveLlamaForCausalLM.from_smaller(small, tiny_config(hidden_size=16))


def _api_expand_gpt2(tmp, ckpt):
    expand_checkpoint(gpt2_checkpoint(tmp, ckpt), tmp / "big", tiny_config(hidden_size=64))


def _api_build_other(tmp, ckpt):
    _other_recipe_out(tmp, ckpt)
    build_family(load_recipe(recipe_file(tmp)), tmp / "out")


def _api_unknown_method(tmp, ckpt):
    from hf_progressive.expansion.checkpoint import load_model

    small = load_model(ckpt, ProgressiveLlamaForCausalLM)
    ProgressiveLlamaForCausalLM.from_smaller(small, tiny_config(hidden_size=64), method="magic")


def _api_truncated(tmp, ckpt):
    expand_checkpoint(truncated_weights(tmp, ckpt), tmp / "big", tiny_config(hidden_size=64))


API_CASES = [
    ("from_smaller shrinking", _api_shrink, ExpansionError, "hidden_size=16"),
    ("from_smaller unknown method", _api_unknown_method, ExpansionError, "magic"),
    ("expand_checkpoint gpt2", _api_expand_gpt2, CheckpointError, "model_type='gpt2': hf_progressive grows llama"),
    ("expand_checkpoint truncated", _api_truncated, CheckpointError, "truncated"),
    ("build_family other recipe", _api_build_other, CheckpointError, "another recipe"),
    ("load_recipe wrong type", lambda t, c: load_recipe(recipe_file(t, head_dim="big")), RecipeError, "head_dim"),
]


@pytest.mark.parametrize("call, error, fragment", [pytest.param(*row[1:], id=row[0]) for row in API_CASES])
def test_api_bad_input_raises_one_line_and_changes_nothing(tiny_checkpoint, tmp_path, call, error, fragment):
    calls = []

    def recorded(tmp, ckpt):  # inputs are made inside `call`; compare the disk from just before the failing step
        calls.append(snapshot(tmp))
        return call(tmp, ckpt)

    with pytest.raises(error) as raised:
        recorded(tmp_path, tiny_checkpoint)
    message = str(raised.value)
    assert fragment in message and "\n" not in message
    assert not (tmp_path / "big").exists() and not list(tmp_path.rglob(".*tmp*"))


def test_at_least_twenty_bad_inputs_are_covered():
    assert len(CLI_CASES) + len(API_CASES) >= 20 and len(CLI_CASES) >= 20


def test_weights_written_as_tensors_never_unpickle(tmp_path):
    """A `.bin` beside a valid config is ignored, not loaded: only safetensors are read for weights."""
    from hf_progressive.expansion.checkpoint import weight_files

    (tmp_path / "config.json").write_text(tiny_config().to_json_string())
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors"):
        weight_files(tmp_path)
    save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    assert weight_files(tmp_path) == [tmp_path / "model.safetensors"]
