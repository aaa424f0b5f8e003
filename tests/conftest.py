"""Fixtures: a tiny saved Llama checkpoint, a tiny built family and a pretrained first member (each once per
session), and deterministic seeding. Under pytest-xdist (`make test` runs one worker per core) each worker and the
processes it starts use one thread, so the workers do not oversubscribe the cores."""

import os

import pytest
import torch
from testing_utils import STEPS, tiny_model, tiny_recipe


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # this worker
    os.environ["OMP_NUM_THREADS"] = "1"  # the processes it starts


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real tiny Llama checkpoint directory (untied, every weight random) with a tokenizer file beside it."""
    path = tmp_path_factory.mktemp("tiny") / "small"
    tiny_model().save_pretrained(path)
    (path / "tokenizer_config.json").write_text('{"model_max_length": 64}\n')
    return path


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    """A built 2-member family (4 steps a stage): `(OUT, ledger)`. Tests may add files (eval, report) but must not
    change what is there."""
    from hf_progressive.family.builder import build_family

    tmp = tmp_path_factory.mktemp("family")
    ledger = build_family(tiny_recipe(tmp), tmp / "out", max_steps=STEPS)
    return tmp / "out", ledger


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """A saved tiny Llama (every weight random) with its own byte-level BPE tokenizer of 300 tokens."""
    from testing_utils import randomize_
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    path = tmp_path_factory.mktemp("pretrained") / "base"
    tokenizer = train_bpe(iter_texts(DataSpec(), "train"), 300, 30_000)
    config = LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, rope_theta=50_000.0,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    randomize_(LlamaForCausalLM(config)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
