"""Families of the other architectures end to end: a Qwen3 recipe (`architecture: qwen3`, head_dim growing between
members, optimizer carried across the growth, then consistency and a dry-run push) and a family started from a Qwen2
checkpoint (`members[0].from:`, the architecture taken from it; a LoRA stage). Every member is saved as its own vanilla
type, reloads without hf_progressive, and gets a card that names its own class."""

import json
import subprocess
import sys

import pytest
import yaml
from testing_utils import BIG, SMALL, randomize_, tiny_recipe_data

from hf_progressive.cli import main


RELOAD = (
    "import sys, json; sys.modules['hf_progressive'] = None\n"
    "from transformers import AutoModelForCausalLM\n"
    "print(json.dumps([type(AutoModelForCausalLM.from_pretrained(p)).__name__ for p in sys.argv[1:]]))\n"
)


def _members(out):
    ledger = json.loads((out / "family.json").read_text())
    return ledger, [out / "members" / name for name in ledger["members"]]


def _reload(folders) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", RELOAD, *map(str, folders)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_qwen3_family_grows_head_dim_and_carries_the_optimizer(tmp_path):
    data = tiny_recipe_data(
        architecture="qwen3",
        members=[SMALL, {**BIG, "head_dim": 32, "method": "function_preserving+identity"}],
        optimizer={"at_growth": "carry"},
    )
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["build-family", str(tmp_path / "recipe.yaml"), "--out", str(out), "--max-steps-per-stage", "2"]) == 0
    ledger, folders = _members(out)
    configs = [json.loads((folder / "config.json").read_text()) for folder in folders]
    assert [c["model_type"] for c in configs] == ["qwen3", "qwen3"]
    assert [c["head_dim"] for c in configs] == [16, 32]
    grown = json.loads((folders[1] / "growth.json").read_text())
    assert grown["plan"]["function_preserving"] and grown["preservation"]["max_abs_logit_diff"] < 1e-4
    assert _reload(folders) == ["Qwen3ForCausalLM", "Qwen3ForCausalLM"]
    assert all(record["flops_stage"] > 0 for record in ledger["members"].values())
    assert main(["consistency", str(out)]) == 0 and (out / "consistency.json").is_file()
    push = ["push", str(out), "--namespace", "org", "--prefix", "fam", "--dry-run", "--endpoint", "http://127.0.0.1:9"]
    assert main(push) == 0
    card = (out / "hub_upload" / f"fam-{folders[1].name}" / "README.md").read_text()
    assert "It is a plain `Qwen3ForCausalLM` checkpoint" in card and "- qwen3" in card


def save_checkpoint(path, model_type: str):
    """A saved tiny model of `model_type` (tied embeddings; every weight random, biases and norms included) with its
    own 300-token BPE."""
    import transformers

    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[model_type]
    tokenizer = train_bpe(iter_texts(DataSpec(), "train"), 300, 30_000)
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    randomize_(getattr(transformers, f"{prefix}ForCausalLM")(config)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen2_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("qwen2") / "base", "qwen2")


FROM = [pytest.param("qwen2", id="qwen2")] + [
    pytest.param(kind, id=kind, marks=pytest.mark.slow) for kind in ("mistral", "qwen3", "llama")
]


@pytest.mark.parametrize("model_type", FROM)
def test_a_family_starts_from_a_checkpoint_of_each_architecture(model_type, qwen2_checkpoint, tmp_path):
    source = qwen2_checkpoint if model_type == "qwen2" else save_checkpoint(tmp_path / "base", model_type)
    data = {**tiny_recipe_data(members=[{"from": str(source)}, {**BIG, "train_inherited": "lora"}])}
    data.pop("tokenizer")
    data["vocab_size"] = 300
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["build-family", str(tmp_path / "recipe.yaml"), "--out", str(out), "--max-steps-per-stage", "2"]) == 0
    ledger, folders = _members(out)
    configs = [json.loads((folder / "config.json").read_text()) for folder in folders]
    assert [c["model_type"] for c in configs] == [model_type, model_type] and configs[1]["tie_word_embeddings"]
    expected = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[model_type] + "ForCausalLM"
    assert [c["architectures"] for c in configs] == [[expected]] * 2 and _reload(folders) == [expected] * 2


def test_a_recipe_architecture_that_disagrees_with_its_checkpoint_is_one_line(qwen2_checkpoint, tmp_path, capsys):
    data = {**tiny_recipe_data(members=[{"from": str(qwen2_checkpoint)}, BIG]), "vocab_size": 300}
    data.pop("tokenizer")
    data["architecture"] = "llama"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    assert main(["plan", str(tmp_path / "recipe.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("architecture='llama': members[0].from=" + repr(str(qwen2_checkpoint)) + " has "
                            "architecture='qwen2'; remove architecture (the checkpoint fixes it).")  # fmt: skip


def test_an_unknown_recipe_architecture_is_one_line(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_data(architecture="gemma")))
    assert main(["plan", str(tmp_path / "recipe.yaml")]) == 2
    err = capsys.readouterr().err
    assert "architecture='gemma'" in err and "choose one of llama, mistral, qwen2, qwen3" in err


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["frozen", "lora"])
@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen2", "qwen3"])
def test_every_architecture_builds_a_family_with_parameter_efficient_stages(architecture, stage, tmp_path):
    """The whole product on every architecture: a 2-member family with a frozen or LoRA growth stage, consistency,
    cards and a dry-run push, each member saved as its own vanilla class."""
    members = [SMALL, {**BIG, "head_dim": 32, "train_inherited": stage}]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_data(architecture=architecture, members=members)))
    out = tmp_path / "out"
    assert main(["build-family", str(tmp_path / "recipe.yaml"), "--out", str(out), "--max-steps-per-stage", "2"]) == 0
    _, folders = _members(out)
    expected = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[
        architecture
    ] + "ForCausalLM"
    assert _reload(folders) == [expected, expected]
    assert main(["consistency", str(out)]) == 0
    push = ["push", str(out), "--namespace", "org", "--prefix", "fam", "--dry-run", "--endpoint", "http://127.0.0.1:9"]
    assert main(push) == 0
    assert (
        f"It is a plain `{expected}` checkpoint"
        in (out / "hub_upload" / f"fam-{folders[1].name}" / "README.md").read_text()
    )
