"""Data: reading local corpora, the BPE tokenizer, packing into blocks, stage windows over blocks."""

import json

import pandas as pd
import pytest
import torch

from hf_progressive.data.blocks import BlockWindow, pack
from hf_progressive.data.documents import iter_texts
from hf_progressive.data.spec import DataSpec
from hf_progressive.data.tokenizer import check_tokenizer, train_bpe
from hf_progressive.errors import DataError, RecipeError
from hf_progressive.family.budget import Window


DOCS = ["Call me Ishmael.", "It is a truth universally acknowledged.", "In the beginning was the Word."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(iter_texts(DataSpec(), "train"), 300, 30_000)


@pytest.mark.parametrize("fmt", ["jsonl", "txt", "parquet", "jsonl.gz"])
def test_local_files_are_read_in_order(tmp_path, fmt):
    path = tmp_path / f"corpus.{fmt}"
    if fmt.startswith("jsonl"):
        import gzip

        text = "".join(json.dumps({"text": d}) + "\n" for d in DOCS).encode()
        path.write_bytes(gzip.compress(text) if fmt.endswith(".gz") else text)
    elif fmt == "txt":
        path.write_text("\n".join(DOCS) + "\n")
    else:
        pd.DataFrame({"text": DOCS}).to_parquet(path)
    assert list(iter_texts(DataSpec(train=str(path)), "train")) == DOCS


def test_missing_file_and_missing_column_are_clear(tmp_path):
    with pytest.raises(DataError, match="data.train='.*nope.jsonl': no such file"):
        list(iter_texts(DataSpec(train=str(tmp_path / "nope.jsonl")), "train"))
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match="data.text_field='text': not a column .* \\(columns: body\\)"):
        list(iter_texts(DataSpec(train=str(tmp_path / "c.jsonl")), "train"))


def test_embedded_corpus_ships_both_splits():
    assert sum(1 for _ in iter_texts(DataSpec(), "train")) == 2583
    assert sum(1 for _ in iter_texts(DataSpec(), "validation")) == 165


def test_bpe_has_the_requested_vocab_and_round_trips(tokenizer):
    assert len(tokenizer) == 300 and tokenizer.eos_token == "<|endoftext|>"
    text = "Whale-ship Pequod, 1851: naïve café!"
    assert tokenizer.decode(tokenizer(text).input_ids) == text  # byte-level: no unknown tokens
    check_tokenizer(tokenizer, 300)
    with pytest.raises(RecipeError, match="mismatched tokenizer"):
        check_tokenizer(tokenizer, 299)


def test_pack_joins_documents_with_eos_and_cuts_full_blocks(tokenizer):
    blocks = pack(iter(DOCS * 20), tokenizer, seq_len=16)
    ids = [i for d in DOCS * 20 for i in tokenizer(d).input_ids + [tokenizer.eos_token_id]]
    assert blocks.shape == (len(ids) // 16, 16) and blocks.flatten().tolist() == ids[: blocks.numel()]
    assert pack(iter(DOCS * 20), tokenizer, seq_len=16, max_blocks=3).shape == (3, 16)
    with pytest.raises(DataError, match="less than one block"):
        pack(iter(["a"]), tokenizer, seq_len=64)


def test_block_window_reads_its_spans_and_wraps():
    blocks = torch.arange(10).view(10, 1)
    window = BlockWindow(blocks, Window(7, 6, cap=10))
    assert [window[i]["input_ids"].item() for i in range(len(window))] == [7, 8, 9, 0, 1, 2]
    beyond = BlockWindow(blocks, Window(8, 6))  # past the end of a 10-block corpus: repeats, and says so
    assert [beyond[i]["labels"].item() for i in range(len(beyond))] == [8, 9, 0, 1, 2, 3] and beyond.epochs == 1.4
    with pytest.raises(IndexError):
        beyond[6]
