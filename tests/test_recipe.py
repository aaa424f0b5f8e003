"""Recipes: every shipped recipe loads and plans; every kind of bad recipe is one clear line (API and CLI)."""

import pytest
import yaml
from testing_utils import BIG, SMALL

from hf_progressive.cli import main
from hf_progressive.data.documents import iter_texts
from hf_progressive.data.spec import DataSpec
from hf_progressive.data.tokenizer import get_tokenizer, train_bpe
from hf_progressive.family.family_plan import plan_family
from hf_progressive.family.recipe import RecipeError, load_recipe, member_configs, shipped_recipes


BASE = {
    "name": "t",
    "vocab_size": 512,
    "seq_len": 32,
    "batch_size": 4,
    "head_dim": 16,
    "tokens_per_param": 1.0,
    "tokenizer": {"train_bpe": True},
    "members": [SMALL, BIG],
}


def _write(tmp_path, **changes):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return path


@pytest.mark.parametrize("name", shipped_recipes())
def test_shipped_recipes_load_and_plan(name):
    recipe = load_recipe(name)
    plan = plan_family(recipe)
    assert len(plan.members) >= 3 and recipe.text and recipe.source.endswith(f"{name}.yaml")
    totals = [m.params["total"] for m in plan.members]
    assert totals == sorted(totals) and 0.15 < plan.saving < 0.35


BAD_RECIPES = [
    ("unknown top-level field", {"sequence_length": 64}, "unknown field 'sequence_length'"),
    ("unknown nested field", {"lr": {"maximum": 1e-3}}, "unknown field 'lr.maximum'"),
    ("unknown member field", {"members": [SMALL, {**BIG, "width": 3}]}, "unknown field 'members[1].width'"),
    ("non-increasing sizes", {"members": [BIG, SMALL]}, "members[1]: hidden_size=32 is smaller than the source's 48"),
    ("same sizes", {"members": [SMALL, SMALL]}, "members[1]: same sizes as members[0]"),
    ("zero tokens", {"tokens_per_param": 0}, "tokens_per_param=0: every member needs tokens"),
    (
        "zero member tokens",
        {"members": [SMALL, {**BIG, "tokens_per_param": 0}]},
        "members[1].tokens_per_param=0: every member needs tokens",
    ),
    ("two tokenizers", {"tokenizer": {"train_bpe": True, "path": "gpt2"}}, "set exactly one of tokenizer.path"),
    ("bad mode", {"mode": "fast"}, "mode='fast': choose one of independent, progressive"),
    ("bad method", {"members": [SMALL, {**BIG, "method": "magic"}]}, "members[1].method: method='magic'"),
    ("bad schedule", {"lr": {"schedule": "linear"}}, "lr.schedule='linear': choose cosine or wsd"),
    ("bad optimizer policy", {"optimizer": {"at_growth": "keep"}}, "optimizer.at_growth='keep'"),
    ("missing sizes", {"members": [{"hidden_size": 32}]}, "members[0]: missing intermediate_size"),
    ("missing name", {"name": ""}, "name='': give the family a name"),
]


@pytest.mark.parametrize("changes, fragment", [pytest.param(*row[1:], id=row[0]) for row in BAD_RECIPES])
def test_bad_recipe_is_one_clear_line(tmp_path, capsys, changes, fragment):
    path = _write(tmp_path, **changes)
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path))
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_unknown_recipe_name_lists_shipped_ones():
    with pytest.raises(RecipeError, match="no shipped recipe \\(shipped: paper-1b-8b, tiny\\)"):
        load_recipe("nope")


def test_mismatched_tokenizer_is_one_clear_line(tmp_path, capsys):
    tokenizer = train_bpe(iter_texts(DataSpec(), "train"), 400, 50_000)
    assert len(tokenizer) == 400
    tokenizer.save_pretrained(tmp_path / "tok")
    path = _write(tmp_path, vocab_size=300, tokenizer={"path": str(tmp_path / "tok")})
    with pytest.raises(RecipeError, match=f"tokenizer: it has {len(tokenizer)} tokens but vocab_size=300; mismatched"):
        get_tokenizer(load_recipe(str(path)))
    assert main(["build-family", "--recipe", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "mismatched tokenizer" in capsys.readouterr().err


def test_params_targets_are_solved_into_growing_shapes(tmp_path):
    path = _write(tmp_path, members=[SMALL, {"params": 120_000}, {"params": 300_000}])
    configs = member_configs(load_recipe(str(path)))
    from hf_progressive.expansion.sizes import parameter_counts

    totals = [parameter_counts(c)["total"] for c in configs]
    assert totals == sorted(totals) and abs(totals[1] - 120_000) / 120_000 < 0.25
    assert all(c.head_dim == 16 for c in configs)
