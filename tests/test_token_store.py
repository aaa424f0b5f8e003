"""The token store (hf-progressive prepare-data): compact dtype, deterministic across worker counts, held-out
documents disjoint from training, the streaming path, interruption, a store smaller than the plan, and the same
blocks as the in-memory packing it replaces."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from testing_utils import STEPS, tiny_recipe, tiny_recipe_data

from hf_progressive.cli import main
from hf_progressive.data.blocks import pack
from hf_progressive.data.documents import iter_texts
from hf_progressive.data.token_store import MANIFEST, TRAIN_FILE, TokenStore, prepare_store, store_dtype
from hf_progressive.family.recipe import load_recipe
from hf_progressive.family.recipe_text import written_fields


@pytest.mark.parametrize(
    "vocab, dtype", [(512, np.uint16), (65_536, np.uint16), (65_537, np.uint32), (152_064, np.uint32)]
)
def test_dtype_is_the_smallest_that_holds_every_id(vocab, dtype):
    assert store_dtype(vocab) == dtype


def _corpus(tmp_path, n=60, name="docs.jsonl"):
    """`n` documents, each with a unique marker word (doc0007zz ...), as JSONL."""
    lines = [
        json.dumps({"text": f"doc{i:04d}zz " + "the quick brown fox jumps over it. " * (5 + i % 7)}) for i in range(n)
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The tiny test recipe prepared with 1 and with 2 worker processes."""
    tmp = tmp_path_factory.mktemp("stores")
    recipe = tiny_recipe(tmp)
    return recipe, {n: prepare_store(recipe, tmp / f"p{n}", num_proc=n, progress=False) for n in (1, 2)}


def test_store_is_compact_and_identical_for_any_number_of_processes(stores):
    recipe, by_procs = stores
    one, two = by_procs[1], by_procs[2]
    assert one.manifest["dtype"] == "uint16" and one.train.dtype == np.uint16
    size = (one.path / TRAIN_FILE).stat().st_size
    assert size == one.train.size * 2 and one.train.shape[1] == recipe.seq_len  # 2 bytes a token, nothing else
    assert np.array_equal(one.train, two.train) and np.array_equal(one.validation, two.validation)
    assert one.manifest["tokenizer_hash"] == two.manifest["tokenizer_hash"]
    assert one.train.shape[0] > 100 and isinstance(one.train, np.memmap)


def test_store_blocks_equal_the_in_memory_packing_it_replaces(stores):
    """The old path packed `iter_texts` with `pack` into one int64 tensor: same blocks, same order."""
    from transformers import AutoTokenizer

    recipe, by_procs = stores
    store = by_procs[1]
    tokenizer = AutoTokenizer.from_pretrained(store.tokenizer_dir)
    old = pack(iter_texts(recipe.data, "train"), tokenizer, recipe.seq_len)
    assert torch.equal(torch.from_numpy(store.train.astype(np.int64)), old[: len(store.train)])
    assert len(store.train) == len(old)  # uncapped: every full block of the corpus
    old_validation = pack(iter_texts(recipe.data, "validation"), tokenizer, recipe.seq_len, 4)
    assert torch.equal(torch.from_numpy(store.validation.astype(np.int64)), old_validation)


def _markers(store: TokenStore, blocks) -> set[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(store.tokenizer_dir)
    text = tokenizer.decode(np.asarray(blocks).reshape(-1).tolist())
    return {marker[:7] for marker in re.findall(r"doc\d{4}zz", text)}


@pytest.mark.parametrize("shuffle_seed", [None, 3], ids=["in order", "shuffled"])
def test_held_out_documents_are_disjoint_from_training_blocks(tmp_path, shuffle_seed):
    data = {
        "train": _corpus(tmp_path),
        "validation": "holdout",
        "holdout_documents": 6,
        "validation_blocks": 100,
        "shuffle_seed": shuffle_seed,
        "shuffle_buffer": 20,
    }
    recipe = tiny_recipe(tmp_path, data=data, seq_len=16, tokenizer={"train_bpe": True, "bpe_training_chars": 50_000})
    store = prepare_store(recipe, tmp_path / "store", progress=False)
    held, trained = _markers(store, store.validation), _markers(store, store.train)
    assert 4 <= len(held) <= 6 and len(trained) >= 45  # blocks cut documents: edges may lose a marker
    assert not held & trained
    if shuffle_seed is None:
        assert held <= {f"doc{i:04d}" for i in range(6)}  # the first documents, in order
    else:
        assert held != {f"doc{i:04d}" for i in range(6)}  # a shuffled stream (seed recorded in the manifest)
    assert store.manifest["shuffle"]["seed"] == shuffle_seed and store.manifest["holdout_documents"] == 6


def test_streaming_a_local_parquet_dataset_folder_gives_the_same_blocks(tmp_path):
    """A dataset folder goes through the Hub-id code path (`load_dataset(path, streaming=True)`), offline."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = _corpus(tmp_path)
    folder = tmp_path / "parquet_dataset"
    (folder / "data").mkdir(parents=True)
    rows = [json.loads(line) for line in open(jsonl)]
    pq.write_table(
        pa.table({"text": [r["text"] for r in rows[:30]]}), folder / "data" / "train-00000-of-00002.parquet"
    )
    pq.write_table(
        pa.table({"text": [r["text"] for r in rows[30:]]}), folder / "data" / "train-00001-of-00002.parquet"
    )
    common = {"validation": "holdout", "holdout_documents": 3}
    tokenizer = {"train_bpe": True, "bpe_training_chars": 50_000}
    a = prepare_store(tiny_recipe(tmp_path, data={"train": jsonl, **common}, tokenizer=tokenizer), tmp_path / "a")
    b = prepare_store(
        tiny_recipe(tmp_path, data={"train": str(folder), **common}, tokenizer=tokenizer), tmp_path / "b"
    )
    assert np.array_equal(a.train, b.train) and np.array_equal(a.validation, b.validation)


SLOW_ENCODE = """
import sys, time
from hf_progressive.data import token_store
from hf_progressive.family.recipe import load_recipe
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2  # seconds per chunk of tokens
max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else None
original = token_store.write_blocks
def slow(stream, *args):
    def trickle():
        for tokens in stream:
            time.sleep(delay)
            yield tokens
    return original(trickle(), *args)
token_store.write_blocks = slow
token_store.prepare_store(load_recipe(sys.argv[1]), sys.argv[2], max_tokens=max_tokens, progress=False)
"""


def test_killed_prepare_data_is_never_visible_and_a_rerun_completes(stores, tmp_path):
    recipe, by_procs = stores
    out = tmp_path / "store"
    process = subprocess.Popen([sys.executable, "-c", SLOW_ENCODE, recipe.source, str(out)])
    deadline = time.time() + 120
    while not list(tmp_path.glob(f".store.tmp-*/{TRAIN_FILE}")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # some training blocks are written
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert list(tmp_path.glob(".store.tmp-*")), "the kill came too late to test anything"
    assert not out.exists() or not any(out.iterdir())  # never visible half-written (the lock holds an empty folder)
    store = prepare_store(recipe, out, progress=False)  # the rerun restarts cleanly
    assert np.array_equal(store.train, by_procs[1].train) and not list(tmp_path.glob(".store.tmp-*"))


def test_an_existing_store_of_the_same_request_is_reused(stores):
    recipe, by_procs = stores
    stamp = (by_procs[1].path / TRAIN_FILE).stat().st_mtime_ns
    again = prepare_store(recipe, by_procs[1].path, progress=False)
    assert (again.path / TRAIN_FILE).stat().st_mtime_ns == stamp


def test_build_family_reads_a_store_and_says_when_it_is_too_small(tmp_path, caplog):
    recipe = tiny_recipe(tmp_path)
    store = prepare_store(recipe, tmp_path / "store", max_tokens=6 * recipe.seq_len, progress=False)
    assert len(store.train) == 6
    argv = ["build-family", recipe.source, "--data", str(store.path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-steps-per-stage", str(STEPS)]) == 0
    err = caplog.text  # a logger warning: on stderr for a user, before the first stage trains
    assert re.search(r"holds 6 blocks of 32 tokens but the plan reads \d+: stages wrap around and read the data", err)
    ledger = json.loads((tmp_path / "o" / "family.json").read_text())
    assert ledger["data"]["store"] == str(store.path.resolve()) and not (tmp_path / "o" / "data").exists()
    assert max(r["data_passes"] for r in ledger["members"].values()) > 1


def test_prepare_data_cli_writes_a_store_build_family_can_use(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_data()))
    assert main(["prepare-data", str(path), "--out", str(tmp_path / "s"), "--max-tokens", "640"]) == 0
    assert "20 training blocks (640 tokens) and 4 validation blocks of 32 tokens, uint16" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    assert manifest["request"]["max_tokens"] == 640 and manifest["library_version"]
    store = TokenStore.open(tmp_path / "s")
    recipe = load_recipe(str(path))
    store.check(recipe, written_fields(recipe, "data"))  # made for this recipe


def test_the_progress_estimate_of_an_uncapped_local_corpus(tmp_path):
    """Without --max-tokens the bar's total (hence its ETA) is estimated from the files' size; none for gzip."""
    from hf_progressive.data.token_stream import TokenEstimate as _Estimate

    corpus = _corpus(tmp_path, n=200)
    texts = [json.loads(line)["text"] for line in open(corpus)]
    estimate = _Estimate(iter(texts), corpus)
    assert estimate.total(100) is None  # nothing read yet
    half = list(zip(range(100), estimate, strict=False))
    assert len(half) == 100 and estimate.total(1000) > 1000  # more to come than read so far
    list(estimate)  # everything read: the estimate is the tokens scaled by bytes per character read
    assert 1000 <= estimate.total(1000) <= 1150  # JSON quoting and the "text" key add a few bytes a document
    assert _Estimate(iter(texts), "hf_progressive/corpus/gutenberg_train.jsonl.gz").total(1000) is None


@pytest.mark.parametrize(
    "manifest", ['{"format": "hf_progressive-token-store", "seq_', "[1, 2]", '{"format": "other"}', "{}"]
)
def test_damaged_or_foreign_manifests_are_one_line(stores, tmp_path, manifest):
    """Checked explicitly (not with `assert`, which `python -O` strips)."""
    from hf_progressive.data.token_store import read_manifest
    from hf_progressive.errors import DataError

    store = tmp_path / "store"
    store.mkdir()
    (store / MANIFEST).write_text(manifest)
    with pytest.raises(DataError, match="damaged or not a token store manifest") as raised:
        read_manifest(store)
    assert "\n" not in str(raised.value)
