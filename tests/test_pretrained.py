"""A family started from an existing checkpoint (`members[0].from:`): its shape, settings and tokenizer become the
family's, it trains only on a budget the recipe gives it, and the ledger says where it came from."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from testing_utils import BIG, gpt2_checkpoint, remote_code_checkpoint, tiny_recipe_data

from hf_progressive.cli import main


def _recipe(tmp_path, source, **changes) -> str:
    data = {**tiny_recipe_data(members=[{"from": str(source)}, BIG]), "vocab_size": 300}
    data.pop("tokenizer")  # the family uses the checkpoint's
    data.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_family_starts_from_a_pretrained_checkpoint(pretrained, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build-family", _recipe(tmp_path, pretrained), "--out", str(out), "--max-steps-per-stage", "3"]) == 0
    ledger = json.loads((out / "family.json").read_text())
    (first, record), (second, grown) = ledger["members"].items()
    assert record["source"] == str(pretrained) and record["steps"] == record["tokens"] == record["flops_stage"] == 0
    assert record["final_train_loss"] is None and record["val_loss"] > 0  # evaluated, not trained
    assert grown["parent"] == first and grown["steps"] == 3 and grown["flops_stage"] > 0
    assert ledger["totals"]["flops"] == grown["flops_stage"]  # no FLOPs it did not spend
    saved, original = (
        load_file(out / "members" / first / "model.safetensors"),
        load_file(pretrained / "model.safetensors"),
    )
    assert all(torch.equal(saved[k], original[k]) for k in original)
    config = json.loads((out / "members" / second / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 50_000.0 and config["head_dim"] == 16  # from the checkpoint
    store_tokenizer = (out / "data" / "tokenizer" / "tokenizer.json").read_text()
    assert json.loads(store_tokenizer)["model"] == json.loads((pretrained / "tokenizer.json").read_text())["model"]
    assert json.loads((out / "members" / first / "growth.json").read_text())["operator"] == "pretrained"
    from hf_progressive.hub.cards import member_card

    card = member_card(out, first, {first: "org/a", second: "org/b"})
    assert f"Started from the pretrained checkpoint `{pretrained}`" in card.text


def _vocab_too_large(tmp_path, source):
    return _recipe(tmp_path, source, vocab_size=200)


def _own_tokenizer(tmp_path, source):
    return _recipe(tmp_path, source, tokenizer={"train_bpe": True})


@pytest.mark.parametrize(
    "make_source, make_recipe, fragment",
    [
        (gpt2_checkpoint, _recipe, "model_type='gpt2': hf_progressive grows llama, mistral, qwen2, qwen3"),
        (remote_code_checkpoint, _recipe, "asks for remote code"),
        (None, _vocab_too_large, "its vocab_size=300 exceeds vocab_size=200; set vocab_size: 300"),
        (None, _own_tokenizer, "the family uses the checkpoint's tokenizer"),
    ],
    ids=["unsupported architecture", "remote code", "vocabulary too large", "a tokenizer of its own"],
)
def test_bad_pretrained_first_member_is_one_line(pretrained, tmp_path, capsys, make_source, make_recipe, fragment):
    source = pretrained if make_source is None else make_source(tmp_path, pretrained)
    recipe = make_recipe(tmp_path, source)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    capsys.readouterr()  # what making the source printed
    assert main(["plan", recipe]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
