"""Reliability, round 3: the surfaces added in round 2 (token stores, `--data`, `training:`, `members[0].from:`, the
partial-family readers) and every command that may replace a folder. Each table row is bad input that must exit 2
with one line and leave the disk as it was (every file hashed before and after); the rest are the mechanisms behind
the fixes (a lock, a CPU cap, bounded memory, a recorded tokenizer). Item numbers refer to issue 22.

Nothing here touches a real system path: the filesystem root is only ever named with every remover mocked to fail,
and the home folder is a temp folder (HOME)."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_reliability import snapshot
from test_token_store import SLOW_ENCODE
from testing_utils import BIG, SMALL, STEPS, tiny_recipe_data

from hf_progressive.cli import main
from hf_progressive.data.documents import EMBEDDED


def _assert_refused(argv: list[str], capsys, fragment: str, *roots: Path) -> None:
    """`main(argv)` exits 2 with one line holding `fragment`, and every folder of `roots` is unchanged."""
    before = [snapshot(root) for root in roots]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.split("\n") if line and "\r" not in line]  # progress bars of work done
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"hf-progressive {argv[0]}: error: "), captured.err
    assert fragment in lines[0] and "Traceback" not in captured.err + captured.out, captured.err
    assert [snapshot(root) for root in roots] == before


def _corpus(tmp: Path, name: str = "corpus", documents: int = 400, skip: int = 0) -> Path:
    """A local JSONL corpus (train and validation) cut from the embedded public-domain text."""
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, start in (("train", documents, skip), ("validation", 60, 0)):
        with gzip.open(EMBEDDED[split], "rt") as source:
            lines = [line for _, line in zip(range(start + count), source, strict=False)][start:]
        (folder / f"{split}.jsonl").write_text("".join(lines))
    return folder


def _recipe(tmp: Path, name: str = "recipe.yaml", folder: str = "recipes", **changes) -> str:
    """The 2-member test recipe (BPE of 512, seq_len 32) written to tmp/<folder>/<name>."""
    path = tmp / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_recipe_data(**changes)))
    return str(path)


def _local_recipe(tmp: Path, **data) -> str:
    corpus = tmp / "corpus"
    if not corpus.exists():
        _corpus(tmp, skip=500)  # not the embedded corpus's first documents: its BPE is another
    sources = {"train": str(corpus / "train.jsonl"), "validation": str(corpus / "validation.jsonl")}
    return _recipe(tmp, data={**sources, "validation_blocks": 4, **data})


# ---- item 1: a command replaces only its own output, never the root, home, CWD, the recipe or the corpus ----------


def _fake_root(tmp: Path) -> Path:
    """A stand-in for `/`: system folders and files of someone else."""
    root = tmp / "fakeroot"
    for folder, file, text in (("etc", "passwd", "root:x:0:0"), ("boot", "vmlinuz", "kernel"), ("home/u", "a", "b")):
        (root / folder).mkdir(parents=True)
        (root / folder / file).write_text(text)
    return root


def _foreign(tmp: Path) -> Path:
    (tmp / "user").mkdir()
    (tmp / "user" / "notes.txt").write_text("mine")
    return tmp / "user"


TARGETS = {  # name -> (tmp, family) -> a folder a command is pointed at
    "fake root": lambda t, f: _fake_root(t),
    "folder of notes": lambda t, f: _foreign(t),
    "built family": lambda t, f: Path(shutil.copytree(f, t / "fam")),
    "corpus folder": lambda t, f: t / "corpus",
    "recipe folder": lambda t, f: t / "recipes",
}
COMMANDS = {  # name -> (recipe, checkpoint, target) -> argv
    "prepare-data": lambda r, c, o: ["prepare-data", r, "--out", str(o), "--overwrite", "--max-tokens", "640"],
    "expand": lambda r, c, o: ["expand", str(c), str(o), "--hidden-size", "64", "--overwrite"],
    "compare": lambda r, c, o: ["compare", r, "--out", str(o), "--max-steps-per-stage", "1"],
    "demo": lambda r, c, o: ["demo", "--out", str(o)],
    "build-family": lambda r, c, o: ["build-family", r, "--out", str(o), "--max-steps-per-stage", "1"],
}
FOLDER_CASES = [
    (target, command)
    for target in TARGETS
    for command in COMMANDS
    if (target, command) != ("built family", "build-family")  # a family is build-family's own OUT (resume)
]


@pytest.mark.parametrize("target, command", FOLDER_CASES, ids=[f"{c} into {t}" for t, c in FOLDER_CASES])
def test_no_command_replaces_a_folder_it_did_not_write(
    tiny_checkpoint, tiny_family, tmp_path, capsys, target, command
):
    recipe = _local_recipe(tmp_path)
    folder = TARGETS[target](tmp_path, tiny_family[0])
    argv = COMMANDS[command](recipe, tiny_checkpoint, folder)
    _assert_refused(argv, capsys, str(folder), tmp_path, tiny_checkpoint, tiny_family[0])


def _no_removal(monkeypatch) -> None:
    """From here on, every way a command could remove, rename or create something fails the test: the filesystem
    root can be named safely. The command modules are imported first (their imports may write caches)."""
    import hf_progressive.analysis.compare
    import hf_progressive.cli.demo
    import hf_progressive.data.token_store  # noqa: F401

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to change the disk: {args}")

    for target in ("shutil.rmtree", "os.rmdir", "os.unlink", "os.remove", "os.rename", "os.replace", "os.mkdir"):
        monkeypatch.setattr(target, refuse)
    monkeypatch.setattr("tempfile.mkdtemp", refuse)
    monkeypatch.setattr(Path, "rename", refuse)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_filesystem_root_is_refused_before_any_work(tiny_checkpoint, tmp_path, capsys, monkeypatch, command):
    argv = COMMANDS[command](_recipe(tmp_path), tiny_checkpoint, Path("/"))
    _no_removal(monkeypatch)
    fragment = {"build-family": "entries that are not a family", "expand": "holds the source checkpoint"}.get(
        command, "the filesystem root"
    )
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


@pytest.mark.parametrize("command", ["prepare-data", "expand", "compare", "demo"])
@pytest.mark.parametrize("place", ["home", "cwd", "parent of cwd"])
def test_home_and_the_current_directory_are_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch, command, place):
    recipe = _recipe(tmp_path)
    (tmp_path / "home").mkdir()
    (tmp_path / "work" / "here").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work" / "here")
    folder = {"home": tmp_path / "home", "cwd": Path("."), "parent of cwd": tmp_path / "work"}[place]
    fragment = {"home": "is the home folder", "cwd": "is the current directory"}.get(place, "holds the current")
    _assert_refused(COMMANDS[command](recipe, tiny_checkpoint, folder), capsys, fragment, tmp_path)


def test_overwrite_still_replaces_our_own_store(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    out = tmp_path / "store"
    assert main(["prepare-data", recipe, "--out", str(out), "--max-tokens", "640"]) == 0
    _assert_refused(["prepare-data", recipe, "--out", str(out), "--max-tokens", "960"], capsys, "another", tmp_path)
    assert main(["prepare-data", recipe, "--out", str(out), "--max-tokens", "960", "--overwrite"]) == 0
    assert json.loads((out / "manifest.json").read_text())["train_blocks"] == 30


# ---- items 2, 3, 4, 18: the data a family trains on is the data it says ----------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A token store of the local corpus (train.jsonl / validation.jsonl), and its recipe's folder."""
    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("store")
    recipe = load_recipe(_local_recipe(tmp))
    prepare_store(recipe, tmp / "store", max_tokens=2000, progress=False)
    return tmp


STORE_MISMATCHES = [  # (id, data fields of the recipe, field the error names)
    ("another train source", lambda t: {"train": str(t / "corpus" / "validation.jsonl")}, "data.train="),
    ("another shuffle seed", lambda t: {"shuffle_seed": 7}, "data.shuffle_seed=7"),
    ("other validation blocks", lambda t: {"validation_blocks": 2}, "data.validation_blocks=2"),
    ("another text field", lambda t: {"text_field": "body"}, "data.text_field='body'"),
    ("held-out validation", lambda t: {"validation": "holdout", "holdout_documents": 5}, "data.holdout_documents=5"),
]


@pytest.mark.parametrize("fields, fragment", [r[1:] for r in STORE_MISMATCHES], ids=[r[0] for r in STORE_MISMATCHES])
def test_a_store_of_other_data_fields_is_refused(store, tmp_path, capsys, fields, fragment):
    corpus = store / "corpus"
    data = {
        "train": str(corpus / "train.jsonl"),
        "validation": str(corpus / "validation.jsonl"),
        "validation_blocks": 4,
    }
    recipe = _recipe(tmp_path, data={**data, **fields(store)})
    argv = ["build-family", recipe, "--data", str(store / "store"), "--out", str(tmp_path / "out")]
    _assert_refused(argv, capsys, fragment, tmp_path, store)


def test_a_recipe_without_data_fields_trains_on_the_store_and_records_its_request(store, tmp_path):
    out = tmp_path / "out"
    argv = ["build-family", _recipe(tmp_path), "--data", str(store / "store"), "--out", str(out)]
    assert main([*argv, "--max-steps-per-stage", "1", "--until", "1"]) == 0
    data = json.loads((out / "family.json").read_text())["data"]
    assert data["train"] == str(store / "corpus" / "train.jsonl") and data["validation_blocks"] == 4


@pytest.fixture(scope="module")
def one_member(store, tmp_path_factory):
    """A family whose first member was built (--until 1) on `store`, from a recipe that names no data."""
    tmp = tmp_path_factory.mktemp("one")
    recipe = _recipe(tmp)
    argv = ["build-family", recipe, "--data", str(store / "store"), "--out", str(tmp / "out")]
    assert main([*argv, "--max-steps-per-stage", "1", "--until", "1"]) == 0
    return tmp


def _other_corpus_store(tmp: Path) -> Path:
    """A store whose BPE (same vocabulary and character budget) was learnt on another part of the corpus."""
    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    corpus = _corpus(tmp, "other", skip=1000)
    data = {
        "train": str(corpus / "train.jsonl"),
        "validation": str(corpus / "validation.jsonl"),
        "validation_blocks": 4,
    }
    prepare_store(
        load_recipe(_recipe(tmp, "other.yaml", data=data)), tmp / "other-store", max_tokens=2000, progress=False
    )
    return tmp / "other-store"


TOKENIZER_SWAPS = {  # how the resume names its data -> argv tail
    "--data a store of another corpus": lambda t: ["--data", str(_other_corpus_store(t))],
    "OUT/data of the recipe's own (embedded) corpus": lambda t: [],
}


@pytest.mark.parametrize("swap", TOKENIZER_SWAPS)
def test_a_family_never_mixes_tokenizers(one_member, tmp_path, capsys, swap):
    """m0 was trained with the BPE of one corpus; resuming with a store whose BPE (same vocabulary, same character
    budget) was learnt on another corpus is refused, members untouched."""
    out = Path(shutil.copytree(one_member / "out", tmp_path / "out"))
    recipe = str(one_member / "recipes" / "recipe.yaml")
    argv = ["build-family", recipe, "--out", str(out), "--max-steps-per-stage", "1", *TOKENIZER_SWAPS[swap](tmp_path)]
    before = snapshot(out / "members")
    capsys.readouterr()
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.split("\n") if "error:" in line]  # progress bars aside
    assert len(errors) == 1 and "is not the one" in errors[0] and "every member shares one tokenizer" in errors[0]
    assert snapshot(out / "members") == before


def _mixed(tmp: Path, kinds: tuple[str, ...]) -> str:
    import pandas as pd

    folder = tmp / "mixed"
    (folder / "sub").mkdir(parents=True)
    rows = [json.loads(line) for line in gzip.open(EMBEDDED["train"], "rt").readlines()[:50]]
    writers = {
        "jsonl": lambda: (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)),
        "parquet": lambda: pd.DataFrame(rows).to_parquet(folder / "sub" / "b.parquet"),
        "txt": lambda: (folder / "c.txt").write_text("\n".join(r["text"] for r in rows)),
        "csv": lambda: pd.DataFrame(rows).to_csv(folder / "d.csv", index=False),
    }
    for kind in kinds:
        writers[kind]()
    return str(folder)


@pytest.mark.parametrize("kinds", [("jsonl", "parquet", "txt"), ("jsonl", "csv"), ("txt", "parquet")])
def test_a_folder_of_mixed_formats_is_refused(tmp_path, capsys, kinds):
    recipe = _recipe(tmp_path, data={"train": _mixed(tmp_path, kinds), "validation_blocks": 4})
    argv = ["prepare-data", recipe, "--out", str(tmp_path / "s"), "--max-tokens", "640"]
    _assert_refused(argv, capsys, "mixes file formats", tmp_path)


EMPTY_CORPORA = [  # (id, file name, content, data field)
    ("300 empty JSONL texts", "e.jsonl", '{"text": ""}\n' * 300, "train"),
    ("300 empty lines", "e.txt", "\n" * 300, "train"),
    ("empty validation texts", "e.jsonl", '{"text": ""}\n' * 300, "validation"),
]


@pytest.mark.parametrize("name, content, split", [r[1:] for r in EMPTY_CORPORA], ids=[r[0] for r in EMPTY_CORPORA])
def test_a_corpus_without_text_is_refused(tmp_path, capsys, name, content, split):
    (tmp_path / name).write_text(content)
    recipe = _recipe(tmp_path, data={split: str(tmp_path / name), "validation_blocks": 1})
    argv = ["prepare-data", recipe, "--out", str(tmp_path / "s"), "--max-tokens", "640"]
    _assert_refused(argv, capsys, f"data.{split}=", tmp_path)


# ---- items 5, 6, 7, 8: temp folders, locks, worker counts and memory ------------------------------------------------


@pytest.mark.parametrize(
    "leftover",
    [".data.tmp-999999999-x3k", ".family.json.tmp", ".data.tmp-1-old", ".consistency.json.tmp"],
)
def test_our_own_temp_leftovers_never_make_out_foreign(tmp_path, leftover):
    from hf_progressive.family.ledger import check_out

    out = tmp_path / "out"
    (out / leftover).mkdir(parents=True) if "tmp-" in leftover else (out.mkdir(), (out / leftover).write_text("{"))
    check_out(out)  # no refusal: the library's own temp names
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match=r"holds 1 entries that are not a family \(notes.txt\)"):
        check_out(out)


def test_a_build_after_a_kill_during_the_first_data_preparation(tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)  # the store folder a killed preparation held its lock on, still empty
    (out / ".data.tmp-999999999-abc").mkdir(parents=True)  # ... and its temp folder (its pid is gone)
    (out / ".data.tmp-999999999-abc" / "train.bin").write_bytes(b"\0" * 64)
    argv = ["build-family", _recipe(tmp_path), "--out", str(out), "--max-steps-per-stage", "1", "--until", "1"]
    assert main(argv) == 0
    assert not list(out.glob(".data.tmp-*")) and (out / "family.json").is_file()


def test_a_second_prepare_data_is_refused_while_the_first_writes(tmp_path, capsys):
    recipe, out = _recipe(tmp_path), tmp_path / "store"
    first = subprocess.Popen([sys.executable, "-c", SLOW_ENCODE, recipe, str(out), "0.5", "4000"])
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".store.tmp-*/train.bin")) and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first prepare ended before the second could start"
        live = list(tmp_path.glob(".store.tmp-*"))
        argv = ["prepare-data", recipe, "--out", str(out), "--max-tokens", "4000", "--overwrite"]
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another prepare-data is writing this token store" in err, err
        assert all(path.exists() for path in live)  # the live temp folder was left alone
        assert first.wait(timeout=300) == 0  # and the first run finishes
    finally:
        first.kill()
        first.wait()
    assert json.loads((out / "manifest.json").read_text())["train_blocks"] == 4000 // 32


def test_temp_folders_of_live_writers_are_kept_and_of_dead_ones_removed(tmp_path):
    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    dead, live = tmp_path / ".store.tmp-999999999-x", tmp_path / f".store.tmp-{os.getpid()}-y"
    dead.mkdir(), live.mkdir()
    prepare_store(load_recipe(_recipe(tmp_path)), tmp_path / "store", max_tokens=640, progress=False)
    assert not dead.exists() and live.exists()


class _PoolStarted(Exception):
    pass


@pytest.mark.parametrize("asked", [100_000, os.cpu_count() + 1, 10**9])
def test_num_proc_is_capped_at_the_cpu_count(tmp_path, monkeypatch, caplog, asked):
    """No worker is ever started: the pool is mocked and records the count it was asked for."""
    import multiprocessing

    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    started = []

    class Context:
        def Pool(self, processes, *args):  # noqa: N802 (multiprocessing's name)
            started.append(processes)
            raise _PoolStarted

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    with pytest.raises(_PoolStarted):
        prepare_store(load_recipe(_recipe(tmp_path)), tmp_path / "s", num_proc=asked, max_tokens=640, progress=False)
    cpus = len(os.sched_getaffinity(0))
    assert started and all(1 <= count <= cpus for count in started), started
    assert f"--num-proc {asked}: this machine has {cpus} CPUs" in caplog.text


def test_split_documents_encode_as_the_whole_document():
    from tokenizers import Tokenizer

    from hf_progressive.data.documents import iter_texts, split_document
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    texts = list(zip(range(40), iter_texts(DataSpec(), "train"), strict=False))
    text = " ".join(t for _, t in texts)
    tokenizer = Tokenizer.from_str(train_bpe(iter(t for _, t in texts), 400, 50_000).backend_tokenizer.to_str())
    for max_chars in (1000, 4096, 50_000):
        pieces = split_document(text, max_chars)
        assert "".join(pieces) == text and all(len(p) <= max_chars for p in pieces) and len(pieces) > 1
        whole = tokenizer.encode(text, add_special_tokens=False).ids
        assert [i for p in pieces for i in tokenizer.encode(p, add_special_tokens=False).ids] == whole


PEAK_RSS = """
import resource, sys
from hf_progressive.cli import main
assert main(["prepare-data", sys.argv[1], "--out", sys.argv[2], "--max-tokens", "20000"]) == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kb(tmp: Path, chars: int) -> int:
    words = " ".join(json.loads(line)["text"] for line in gzip.open(EMBEDDED["train"], "rt").readlines()[:300])
    text = (words + " ") * (chars // (len(words) + 1) + 1)
    (tmp / f"{chars}.jsonl").write_text(json.dumps({"text": text[:chars]}) + "\n")
    recipe = _recipe(tmp, f"{chars}.yaml", data={"train": str(tmp / f"{chars}.jsonl"), "validation_blocks": 2})
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, recipe, str(tmp / f"s{chars}")], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1])


@pytest.mark.slow  # multi-MB documents: real-size memory
def test_memory_does_not_grow_with_the_length_of_a_document(tmp_path):
    """One 2 MB line and one 8 MB line, capped at 20k tokens: the peak differs by far less than the text (it used to
    grow by about 240 MB per MB of line)."""
    small, large = _peak_rss_kb(tmp_path, 2_000_000), _peak_rss_kb(tmp_path, 8_000_000)
    assert large - small < 100_000, (small, large)


# ---- items 9, 10, 11: every stage's Trainer options are checked, typed and owned before anything is written ---------

TRAINING_CASES = [  # (id, training: mapping or --training pairs, fragment)
    ("negative workers", {"dataloader_num_workers": -1}, "dataloader_num_workers=-1: use 0 or more"),
    ("unknown report_to", {"report_to": "bogus"}, "bogus is not supported"),
    ("report_to not installed", {"report_to": "wandb"}, "wandb is not installed"),
    ("fsdp on a 1-process CPU run", {"fsdp": "full_shard"}, "FSDP shards a model"),
    ("deepspeed config missing", {"deepspeed": "nope/ds.json"}, "deepspeed='nope/ds.json': no such file"),
    ("not valid YAML", ["optim_args={a: 1"], "not valid YAML"),
    ("bf16: maybe", {"bf16": "maybe"}, "bf16: expected true or false, got 'maybe'"),
    ("gradient_checkpointing: 3", {"gradient_checkpointing": 3}, "gradient_checkpointing: expected true or false"),
    ("fp16 on a CPU", {"fp16": True}, "fp16 mixed precision needs a CUDA GPU"),
    ("dataloader_num_workers: two", {"dataloader_num_workers": "two"}, "expected an integer, got 'two'"),
    ("optim: magic", {"optim": "magic"}, "magic is not a valid OptimizerNames"),
    ("optimizer package missing", {"optim": "adamw_bnb_8bit"}, "install `bitsandbytes`"),
    ("optim_args not KEY=VALUE", {"optim_args": "a"}, "optim_args='a'"),
    ("liger kernel missing", {"use_liger_kernel": True}, "liger-kernel is not installed"),
    ("push_to_hub", {"push_to_hub": True}, "hf-progressive push"),
    ("hub_model_id", {"hub_model_id": "org/x"}, "hf-progressive push"),
    ("hub_strategy", {"hub_strategy": "end"}, "hf-progressive push"),
    ("resume_from_checkpoint", {"resume_from_checkpoint": "x"}, "rerun the same build-family command"),
    ("use_cpu", {"use_cpu": True}, "it follows the machine"),
    ("--training key=", ["bf16="], "write KEY=VALUE"),
    ("duplicate --training keys", ["bf16=false", "bf16=true"], "--training bf16: given twice"),
]


@pytest.mark.parametrize("training, fragment", [r[1:] for r in TRAINING_CASES], ids=[r[0] for r in TRAINING_CASES])
def test_bad_training_options_are_refused_before_anything_is_written(tmp_path, capsys, training, fragment):
    from transformers.integrations import is_wandb_available

    if "wandb" in fragment and is_wandb_available():
        pytest.skip("wandb is installed here")
    if "FSDP" in fragment and torch.cuda.is_available():
        pytest.skip("a GPU machine")
    pairs = [arg for pair in training for arg in ("--training", pair)] if isinstance(training, list) else []
    recipe = _recipe(tmp_path, training={} if pairs else training)
    argv = ["build-family", recipe, "--out", str(tmp_path / "out"), "--max-steps-per-stage", "1", *pairs]
    _assert_refused(argv, capsys, fragment, tmp_path)


def test_a_training_option_of_one_member_is_checked_too(tmp_path, capsys):
    recipe = _recipe(tmp_path, members=[SMALL, {**BIG, "training": {"bf16": "yes"}}])
    argv = ["build-family", recipe, "--out", str(tmp_path / "out")]
    _assert_refused(argv, capsys, "members[1].training.bf16: expected true or false", tmp_path)


# ---- item 12: a family started from a checkpoint (`members[0].from:`) ----------------------------------------------


def _variant(tmp: Path, base: Path, change) -> Path:
    """A copy of `base` changed by `change(folder)`."""
    folder = Path(shutil.copytree(base, tmp / "variant"))
    change(folder)
    return folder


def _edit_config(folder: Path, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))


def _edit_weights(folder: Path, **extra) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file({**weights, **extra}, folder / "model.safetensors", metadata={"format": "pt"})


def _bigger_tokenizer(folder: Path) -> None:
    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    train_bpe(iter_texts(DataSpec(), "train"), 400, 30_000).save_pretrained(folder)


def _from_recipe(tmp: Path, source: Path, first: dict | None = None, **changes) -> str:
    data = tiny_recipe_data(members=[{"from": str(source), **(first or {})}, BIG], **changes)
    data.pop("tokenizer")
    if "vocab_size" not in changes:
        data.pop("vocab_size")
    path = tmp / "from.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


FROM_CASES = [  # (id, change to the checkpoint, recipe changes, fragment)
    ("tokenizer larger than the vocabulary", _bigger_tokenizer, {}, "its tokenizer has 400 tokens but its vocab"),
    (
        "an extra tensor",
        lambda f: _edit_weights(f, **{"model.layers.0.self_attn.extra.weight": torch.zeros(2, 2)}),
        {},
        "tensors a Llama of this config does not have (model.layers.0.self_attn.extra.weight)",
    ),
    ("seq_len above the positions", None, {"seq_len": 128}, "has max_position_embeddings=64; use seq_len <= 64"),
    ("vocab_size the checkpoint overrides", None, {"vocab_size": 512}, "its vocab_size=300 differs from"),
    ("head_dim the checkpoint overrides", None, {"head_dim": 8}, "head_dim=8: members[0].from="),
    ("hidden_size on members[0]", None, {"first": {"hidden_size": 64}}, "members[0].hidden_size=64: the first"),
    ("params on members[0]", None, {"first": {"params": 1e5}}, "members[0].params=100000.0"),
    ("model settings", None, {"model": {"rms_norm_eps": 1e-5}}, "fixes the model settings"),
    ("from: ''", "empty", {}, "members[0].from='': give a checkpoint folder (or Hub id)"),
    ("from: on members[1]", "second", {}, "members[1].from: only the first member"),
]


@pytest.mark.parametrize("change, changes, fragment", [r[1:] for r in FROM_CASES], ids=[r[0] for r in FROM_CASES])
def test_a_checkpoint_that_does_not_fit_its_recipe_is_refused(pretrained, tmp_path, capsys, change, changes, fragment):
    base = pretrained  # conftest's checkpoint: a tiny Llama with its own BPE of 300 tokens
    source = _variant(tmp_path, base, change) if callable(change) else base
    if change == "empty":
        source = ""
    recipe = _from_recipe(tmp_path, source, **changes)
    if change == "second":
        data = yaml.safe_load(Path(recipe).read_text())
        data["members"][1]["from"] = str(base)
        Path(recipe).write_text(yaml.safe_dump(data))
    _assert_refused(["build-family", recipe, "--out", str(tmp_path / "out")], capsys, fragment, tmp_path, base)


def test_legacy_rotary_buffers_are_dropped_and_a_bf16_checkpoint_trains_in_float32(pretrained, tmp_path):
    from safetensors.torch import load_file

    def legacy_bf16(folder):
        weights = {k: v.to(torch.bfloat16) for k, v in load_file(folder / "model.safetensors").items()}
        weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
        from safetensors.torch import save_file

        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        _edit_config(folder, dtype="bfloat16")

    source = _variant(tmp_path, pretrained, legacy_bf16)
    recipe = _from_recipe(tmp_path, source, first={"tokens_per_param": 1.0})
    out = tmp_path / "out"
    assert main(["build-family", recipe, "--out", str(out), "--max-steps-per-stage", "2"]) == 0
    for member in json.loads((out / "family.json").read_text())["members"]:
        weights = load_file(out / "members" / member / "model.safetensors")
        assert {t.dtype for t in weights.values()} == {torch.float32}  # fp32 master weights, trained
        assert not any("inv_freq" in key for key in weights)
    assert (
        "from " + str(source)
        in subprocess.run(
            [sys.executable, "-m", "hf_progressive", "plan", recipe], capture_output=True, text=True
        ).stdout
    )  # plan says where the first member comes from


# ---- item 13: a store holding ids the model has no embedding for ------------------------------------------------


def _damaged_store(tmp: Path, where: str) -> Path:
    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    store = prepare_store(load_recipe(_recipe(tmp, "store.yaml")), tmp / "store", max_tokens=4000, progress=False)
    name, row = {"first block": ("train.bin", 0), "validation": ("validation.bin", 1)}[where]
    blocks = np.memmap(store.path / name, dtype=np.uint16, mode="r+").reshape(-1, 32)
    blocks[row, 5] = 60_000  # the right size, an id past vocab_size=512
    blocks.flush()
    return store.path


@pytest.mark.parametrize("where", ["first block", "validation"])
def test_a_store_with_ids_past_the_vocabulary_is_refused_before_training(tmp_path, capsys, where):
    store = _damaged_store(tmp_path, where)
    argv = ["build-family", _recipe(tmp_path), "--data", str(store), "--out", str(tmp_path / "out")]
    _assert_refused(argv, capsys, "holds token id 60000 but vocab_size=512", tmp_path)


def test_ids_past_the_vocabulary_in_a_later_window_stop_before_that_stage(tmp_path, capsys):
    from hf_progressive.data.blocks import BlockWindow
    from hf_progressive.family.family_plan import plan_family
    from hf_progressive.family.recipe import load_recipe

    store = _damaged_store(tmp_path, "first block")
    recipe = _recipe(tmp_path)
    window = BlockWindow(np.zeros((125, 1)), plan_family(load_recipe(recipe), None, 2).members[1].window)
    row = window.block_index(5) % 125  # past the first batch (m0's boundary loss reads that one)
    blocks = np.memmap(store / "train.bin", dtype=np.uint16, mode="r+").reshape(-1, 32)
    blocks[0, 5], blocks[row, 7] = 1, 60_000  # m0's window clean, m1's not
    blocks.flush()
    argv = ["build-family", recipe, "--data", str(store), "--out", str(tmp_path / "out"), "--max-steps-per-stage", "2"]
    capsys.readouterr()
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # progress bars aside
    assert len(errors) == 1 and f"block {row} holds token id 60000" in errors[0], errors
    ledger = json.loads((tmp_path / "out" / "family.json").read_text())
    assert list(ledger["members"]) == ["m0-L1-H32"]  # the first member finished, the second never started


# ---- items 14, 15, 16: readers and reruns on a hand-edited or damaged family ----------------------------------------


def _ledger_field(out: Path, member_field: str, value) -> None:
    ledger = json.loads((out / "family.json").read_text())
    first = next(iter(ledger["members"]))
    ledger["members"][first][member_field] = value
    (out / "family.json").write_text(json.dumps(ledger))


def _ledger_top(out: Path, **fields) -> None:
    ledger = json.loads((out / "family.json").read_text())
    (out / "family.json").write_text(json.dumps({**ledger, **fields}))


def _members(out: Path) -> list[Path]:
    return [out / "members" / name for name in json.loads((out / "family.json").read_text())["members"]]


def _truncate(out: Path) -> None:
    weights = _members(out)[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1024])


def _swap_weights(out: Path) -> None:
    first, second = _members(out)[:2]
    shutil.copy2(second / "model.safetensors", first / "model.safetensors")


DAMAGES = {  # name -> (change to a copy of the family, fragment)
    "val_loss: abc": (lambda o: _ledger_field(o, "val_loss", "abc"), "val_loss: expected a finite number, got 'abc'"),
    "steps: 1.5": (lambda o: _ledger_field(o, "steps", 1.5), "steps: expected an integer, got 1.5"),
    "truncated weights": (_truncate, "is damaged"),
    "another member's weights": (_swap_weights, "is damaged (9 tensors a Llama of this config does not have"),
    "deleted member folder": (lambda o: shutil.rmtree(_members(o)[0]), "is in family.json but its folder"),
    "deleted training log": (lambda o: (_members(o)[1] / "training_log.json").unlink(), "training_log.json missing"),
    "members not a mapping": (lambda o: _ledger_top(o, members=[1, 2]), "not a valid ledger"),
    "a member record not a mapping": (lambda o: _ledger_top(o, members={"m0": 3}), "not a valid ledger"),
}
READERS = {
    "report": lambda o: ["report", str(o)],
    "consistency": lambda o: ["consistency", str(o), "--max-blocks", "2"],
    "evaluate": lambda o: ["evaluate", str(o), "--limit", "2"],
    "push": lambda o: ["push", str(o), "--namespace", "org", "--dry-run"],
    "push-metrics": lambda o: ["push-metrics", str(o), "--namespace", "org", "--dry-run"],
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_readers_refuse_a_damaged_family_in_one_line(tiny_family, tmp_path, capsys, damage, reader):
    out = Path(shutil.copytree(tiny_family[0], tmp_path / "fam"))
    change, fragment = DAMAGES[damage]
    change(out)
    _assert_refused(READERS[reader](out), capsys, fragment, tmp_path)


def _family_recipe(tmp: Path) -> str:
    """The recipe the session's tiny family was built from (the same text, so the same build identity)."""
    (tmp / "family-recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_data()))
    return str(tmp / "family-recipe.yaml")


@pytest.mark.parametrize("damage", ["truncated weights", "another member's weights"])
def test_a_rerun_refuses_a_damaged_finished_member(tiny_family, tmp_path, capsys, damage):
    out = Path(shutil.copytree(tiny_family[0], tmp_path / "fam"))
    DAMAGES[damage][0](out)
    argv = ["build-family", _family_recipe(tmp_path), "--out", str(out), "--max-steps-per-stage", str(STEPS)]
    _assert_refused(argv, capsys, f"member {_members(out)[0].name} is damaged", tmp_path)


def test_a_rerun_rebuilds_a_deleted_member(tiny_family, tmp_path):
    from safetensors.torch import load_file

    out = Path(shutil.copytree(tiny_family[0], tmp_path / "fam"))
    last = _members(out)[-1]
    original = load_file(last / "model.safetensors")
    shutil.rmtree(last)
    argv = ["build-family", _family_recipe(tmp_path), "--out", str(out), "--max-steps-per-stage", str(STEPS)]
    assert main(argv) == 0
    rebuilt = load_file(last / "model.safetensors")
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)  # deterministic: the same member


# ---- item 19: expand checks the weights against their config first -------------------------------------------------


def _no_head_dim(folder: Path) -> None:
    """config.json without head_dim (so hidden_size / heads = 8), while q_proj was built for head_dim 16."""
    from safetensors.torch import load_file, save_file

    config = json.loads((folder / "config.json").read_text())
    config.pop("head_dim", None)
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    for layer in range(config["num_hidden_layers"]):
        key = f"model.layers.{layer}.self_attn.q_proj.weight"
        weights[key] = torch.zeros(weights[key].shape[0] * 2, weights[key].shape[1])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _missing_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights.pop("model.norm.weight")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


EXPAND_CASES = [
    ("q_proj of another head_dim", _no_head_dim, "self_attn.q_proj.weight has shape [64, 32] but config.json gives"),
    (
        "an unknown tensor",
        lambda f: _edit_weights(f, **{"model.extra.weight": torch.zeros(3)}),
        "does not have (model.extra.weight)",
    ),
    ("a missing tensor", _missing_tensor, "tensors missing (model.norm.weight"),
    ("another checkpoint's weights", lambda f: _edit_config(f, hidden_size=48), "has shape"),
]


@pytest.mark.parametrize("change, fragment", [r[1:] for r in EXPAND_CASES], ids=[r[0] for r in EXPAND_CASES])
def test_expand_refuses_weights_that_do_not_fit_their_config(tiny_checkpoint, tmp_path, capsys, change, fragment):
    source = _variant(tmp_path, tiny_checkpoint, change)
    argv = ["expand", str(source), str(tmp_path / "big"), "--hidden-size", "64"]
    _assert_refused(argv, capsys, fragment, tmp_path)


def test_expand_drops_legacy_rotary_buffers(tiny_checkpoint, tmp_path):
    source = _variant(
        tmp_path, tiny_checkpoint, lambda f: _edit_weights(f, **{"model.rotary_emb.inv_freq": torch.ones(4)})
    )
    assert main(["expand", str(source), str(tmp_path / "big"), "--hidden-size", "64"]) == 0


# ---- the LOW list: one line each ---------------------------------------------------------------------------------


def _store_of(tmp: Path, name: str = "store", **changes) -> Path:
    from hf_progressive.data.token_store import prepare_store
    from hf_progressive.family.recipe import load_recipe

    recipe = load_recipe(_recipe(tmp, f"{name}.yaml", **changes))
    return prepare_store(recipe, tmp / name, max_tokens=640, progress=False).path


def _without(store: Path, name: str) -> Path:
    (store / name).unlink()
    return store


def _glob_with_a_bad_file(tmp: Path) -> str:
    folder = _corpus(tmp, documents=20)
    (folder / "b.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    return str(folder / "*.jsonl")


def _null_text(tmp: Path) -> str:
    (tmp / "n.jsonl").write_text('{"text": "a document"}\n' * 3 + '{"text": null}\n')
    return str(tmp / "n.jsonl")


def _partial_baseline(tmp: Path, family: Path) -> Path:
    other = Path(shutil.copytree(family, tmp / "other"))
    ledger = json.loads((other / "family.json").read_text())
    (other / "family.json").write_text(json.dumps({**ledger, "max_steps": 7}))
    return other


LOW_CASES = [  # (id, argv builder (tmp, checkpoint, family), fragment, fragment that must be absent)
    (
        "BPE mismatch names both tokenizers",
        lambda t, c, f: [
            "build-family",
            _recipe(t),
            "--out",
            str(t / "o"),
            "--data",
            str(_store_of(t, tokenizer={"train_bpe": True, "bpe_training_chars": 100_000})),
        ],
        "trained on 100,000 characters) than the recipe's (BPE of vocab 512 trained on 200,000",
        None,
    ),
    ("unknown field list", lambda t, c, f: ["plan", _recipe(t, sequence_len=3)], "known fields here", "source"),
    (
        "carry with SGD",
        lambda t, c, f: ["build-family", _recipe(t, optimizer={"at_growth": "carry"}, training={"optim": "sgd"})],
        "optim='sgd'",
        "OptimizerNames",
    ),
    (
        "--strict on a copy-based growth",
        lambda t, c, f: ["expand", str(c), str(t / "big"), "--hidden-size", "48", "--method", "fpi", "--strict"],
        "strict does not apply",
        None,
    ),
    (
        "noise_std 1e6 in a recipe",
        lambda t, c, f: ["plan", _recipe(t, members=[SMALL, {**BIG, "method": "fpi", "noise_std": 1e6}])],
        "noise_std=1000000.0",
        None,
    ),
    (
        "--noise-std 1e6",
        lambda t, c, f: [
            "expand",
            str(c),
            str(t / "big"),
            "--hidden-size",
            "64",
            "--method",
            "fpi",
            "--noise-std",
            "1e6",
        ],
        "outweighs the weights",
        None,
    ),
    ("expand without a size", lambda t, c, f: ["expand", str(c), str(t / "big")], "no target size", None),
    (
        "report --baseline itself",
        lambda t, c, f: ["report", str(f), "--baseline", str(f)],
        "is the family itself",
        None,
    ),
    (
        "report --baseline of another budget",
        lambda t, c, f: ["report", str(f), "--baseline", str(_partial_baseline(t, f))],
        "--max-steps-per-stage 7",
        None,
    ),
    (
        "compare --eval-limit without --evaluate",
        lambda t, c, f: ["compare", _recipe(t), "--out", str(t / "c"), "--eval-limit", "3"],
        "add --evaluate",
        None,
    ),
    (
        "store without validation.bin",
        lambda t, c, f: [
            "build-family",
            _recipe(t),
            "--out",
            str(t / "o"),
            "--data",
            str(_without(_store_of(t), "validation.bin")),
        ],
        "validation.bin: missing",
        "no file",
    ),
    (
        "--data folder missing",
        lambda t, c, f: ["build-family", _recipe(t), "--out", str(t / "o"), "--data", str(t / "nope")],
        "no such token store folder",
        None,
    ),
    (
        "a bad file in a glob",
        lambda t, c, f: ["prepare-data", _recipe(t, data={"train": _glob_with_a_bad_file(t)}), "--out", str(t / "s")],
        "b.jsonl: cannot be read as json",
        "Failed to load JSON",
    ),
    (
        "a row without text",
        lambda t, c, f: ["prepare-data", _recipe(t, data={"train": _null_text(t)}), "--out", str(t / "s")],
        "document 3 has no 'text'",
        "NoneType",
    ),
    (
        "resume with another recipe text",
        lambda t, c, f: [
            "build-family",
            _recipe(t, lr={"warmup_ratio": 0.1}),
            "--out",
            str(shutil.copytree(f, t / "fam")),
        ],
        "another recipe (field lr.warmup_ratio: 0.0 -> 0.1)",
        None,
    ),
]


@pytest.mark.parametrize("make_argv, fragment, absent", [r[1:] for r in LOW_CASES], ids=[r[0] for r in LOW_CASES])
def test_low_list_one_line_each(tiny_checkpoint, tiny_family, tmp_path, capsys, make_argv, fragment, absent):
    argv = make_argv(tmp_path, tiny_checkpoint, tiny_family[0])
    _assert_refused(argv, capsys, fragment, tmp_path, tiny_family[0], tiny_checkpoint)
    if absent:
        capsys.readouterr()
        main(argv)
        assert absent not in capsys.readouterr().err


def test_low_list_what_now_works(tiny_checkpoint, tiny_family, tmp_path, capsys):
    """--max-shard-size in KiB, a relative data.prepared beside its recipe, singular counts, a partial family said
    to be partial, and no passes note when no stage repeated data."""
    assert (
        main(
            ["expand", str(tiny_checkpoint), str(tmp_path / "big"), "--hidden-size", "64", "--max-shard-size", "10KiB"]
        )
        == 0
    )
    assert len(list((tmp_path / "big").glob("model-*.safetensors"))) > 1
    store = _store_of(tmp_path, data={"validation_blocks": 1})
    (tmp_path / "elsewhere").mkdir()
    recipe = Path(_recipe(tmp_path, folder="recipes", data={"prepared": "../store"}))
    os.chdir(tmp_path / "elsewhere")  # restored by pytest's own cwd handling below
    try:
        capsys.readouterr()
        assert (
            main(
                [
                    "build-family",
                    str(recipe),
                    "--out",
                    str(tmp_path / "o"),
                    "--max-steps-per-stage",
                    "1",
                    "--until",
                    "1",
                ]
            )
            == 0
        )
    finally:
        os.chdir(Path(__file__).parent.parent)
    printed = capsys.readouterr()
    assert json.loads((tmp_path / "o" / "family.json").read_text())["data"]["store"] == str(store.resolve())
    assert "passes > 1" not in printed.out and "PARTIAL: 1 of 2 members built" in printed.out
    assert "PARTIAL: 1 of 2 members built" in (tmp_path / "o" / "report.md").read_text()
    assert (
        main(
            [
                "prepare-data",
                _recipe(tmp_path, "one.yaml", data={"validation_blocks": 1}),
                "--out",
                str(tmp_path / "s1"),
                "--max-tokens",
                "640",
            ]
        )
        == 0
    )
    assert "and 1 validation block of 32 tokens" in capsys.readouterr().out
