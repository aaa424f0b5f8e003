"""Fixtures: a tiny saved Llama checkpoint (once per session) and deterministic seeding."""

import pytest
import torch
from testing_utils import STEPS, tiny_model, tiny_recipe


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
