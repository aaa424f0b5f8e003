"""Building a family on CPU: two tiny stages of a few steps each on the embedded corpus."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from testing_utils import STEPS, tiny_recipe, tiny_recipe_data
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from hf_progressive.errors import CheckpointError
from hf_progressive.family.builder import build_family
from hf_progressive.family.console import format_ledger
from hf_progressive.family.ledger import FamilyPaths, Ledger
from hf_progressive.family.recipe import load_recipe


def _weights(out, name):
    return load_file(out / "members" / name / "model.safetensors")


@pytest.fixture
def built(tiny_family):
    return tiny_family


def test_two_stages_produce_loadable_vanilla_members(built):
    out, ledger = built
    names = list(ledger.members)
    assert names == ["m0-L1-H32", "m1-L2-H48"]
    for name in names:
        member = out / "members" / name
        model = AutoModelForCausalLM.from_pretrained(member)
        tokenizer = AutoTokenizer.from_pretrained(member)
        assert json.loads((member / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
        assert {"growth.json", "training_log.json", "tokenizer.json"} <= {p.name for p in member.iterdir()}
        ids = tokenizer("Call me Ishmael.", return_tensors="pt").input_ids
        assert torch.isfinite(model(ids).logits).all()
    assert json.loads((out / "members" / names[1] / "growth.json").read_text())["parent"] != ""
    assert json.loads((out / "members" / names[0] / "growth.json").read_text())["operator"] == "from_scratch"


def test_ledger_accounts_tokens_and_flops_exactly(built):
    out, ledger = built
    first, second = ledger.members.values()
    assert first.steps == second.steps == STEPS
    assert first.tokens == second.tokens == STEPS * 4 * 32
    assert second.parent == "m0-L1-H32" and second.method == "function_preserving+identity"
    assert second.flops_cumulative == pytest.approx(first.flops_stage + second.flops_stage)
    assert ledger.totals["tokens"] == 2 * STEPS * 4 * 32
    assert all(r.val_loss > 0 and r.final_train_loss > 0 and r.wall_time_s > 0 for r in (first, second))
    assert Ledger.read(out) == ledger and json.loads(FamilyPaths(out).ledger.read_text())["schema_version"] == 2
    logged = json.loads((out / "members" / "m1-L2-H48" / "training_log.json").read_text())["log_history"]
    assert logged[0]["tokens"] == first.tokens + 4 * 32 and logged[0]["stage"] == 1
    assert "m1-L2-H48" in format_ledger(ledger)


def test_function_preserving_growth_starts_stage_2_at_stage_1_loss(built):
    """Stage 2's first-step loss equals stage 1's final model's loss on that same batch (the boundary batch;
    consecutive batches differ by more than 1e-3, so the comparison must be on one batch)."""
    _, ledger = built
    first, second = ledger.members.values()
    assert abs(second.first_step_loss - first.boundary_loss) <= 1e-3


def test_non_preserving_growth_does_not_start_at_stage_1_loss(tmp_path):
    ledger = build_family(tiny_recipe(tmp_path, method="function_preserving+stack"), tmp_path / "out", max_steps=STEPS)
    first, second = ledger.members.values()
    assert abs(second.first_step_loss - first.boundary_loss) > 1e-3


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if args.stage_index == 1 and state.global_step == 3:
            raise RuntimeError("simulated crash")


def test_resume_after_crash_matches_uninterrupted_run(built, tmp_path):
    reference_out, reference = built
    recipe = load_recipe(ledger_recipe_path(reference_out))  # the very same recipe file
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_family(recipe, out, max_steps=STEPS, callbacks=[_Crash()])
    assert (out / "members" / "m0-L1-H32").is_dir() and not (out / "members" / "m1-L2-H48").exists()
    assert (out / "stages" / "m1-L2-H48" / "checkpoint-2").is_dir()
    ledger = build_family(recipe, out, max_steps=STEPS)
    for name in ledger.members:
        resumed, uninterrupted = _weights(out, name), _weights(reference_out, name)
        assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
        assert ledger.members[name].tokens == reference.members[name].tokens
        assert ledger.members[name].final_train_loss == reference.members[name].final_train_loss


def test_rerun_of_a_finished_family_trains_nothing(built):
    out, ledger = built
    stamp = (out / "members" / "m1-L2-H48" / "model.safetensors").stat().st_mtime_ns
    again = build_family(load_recipe(ledger_recipe_path(out)), out, max_steps=STEPS)
    assert again == ledger
    assert (out / "members" / "m1-L2-H48" / "model.safetensors").stat().st_mtime_ns == stamp


def ledger_recipe_path(out):
    return str(next(out.parent.glob("recipe-*.yaml")))


def test_out_of_another_family_is_refused(built):
    out, _ = built
    with pytest.raises(CheckpointError, match="holds a family built with another mode"):
        build_family(load_recipe(ledger_recipe_path(out)), out, mode="independent", max_steps=STEPS)


def test_independent_mode_trains_every_member_from_scratch(tmp_path):
    ledger = build_family(tiny_recipe(tmp_path, mode="independent"), tmp_path / "out", max_steps=2)
    assert [r.parent for r in ledger.members.values()] == [None, None]
    growth = json.loads((tmp_path / "out" / "members" / "m1-L2-H48" / "growth.json").read_text())
    assert growth["operator"] == "from_scratch"


def test_carry_optimizer_state_runs_and_is_recorded(tmp_path):
    recipe = tiny_recipe(tmp_path, optimizer={"at_growth": "carry"})
    ledger = build_family(recipe, tmp_path / "out", max_steps=2)
    assert (tmp_path / "out" / "stages" / "m0-L1-H32" / "optimizer_final.pt").is_file()
    first, second = ledger.members.values()
    assert abs(second.first_step_loss - first.boundary_loss) <= 1e-3  # carrying moments keeps the function


def test_wsd_schedule_and_fixed_lr(tmp_path):
    recipe = tiny_recipe(
        tmp_path, lr={"schedule": "wsd", "fixed": 1e-3, "decay_ratio": 0.5, "min_lr_ratio": 0.0, "warmup_ratio": 0.0}
    )
    build_family(recipe, tmp_path / "out", max_steps=STEPS)
    history = json.loads((tmp_path / "out" / "members" / "m1-L2-H48" / "training_log.json").read_text())
    lrs = [entry["learning_rate"] for entry in history["log_history"] if "learning_rate" in entry]
    assert lrs[:2] == [1e-3, 1e-3] and lrs[-1] < 1e-3  # stable, then decaying


def test_members_are_grown_by_streaming_once_not_in_memory(tmp_path, monkeypatch):
    """The next member is streamed from its saved parent (bounded memory) and verified there; the in-memory
    `from_smaller` is never called, and the grown folder is removed once the member is saved."""
    from hf_progressive.models.llama.modeling_llama import ProgressiveLlamaForCausalLM

    def in_memory(*args, **kwargs):
        raise AssertionError("the builder grew a member in memory")

    monkeypatch.setattr(ProgressiveLlamaForCausalLM, "from_smaller", classmethod(in_memory))
    ledger = build_family(tiny_recipe(tmp_path), tmp_path / "out", max_steps=2)
    first, second = ledger.members.values()
    growth = json.loads((tmp_path / "out" / "members" / "m1-L2-H48" / "growth.json").read_text())
    assert growth["parent"] == "m0-L1-H32" and growth["preservation"]["max_abs_logit_diff"] < 1e-4
    assert abs(second.first_step_loss - first.boundary_loss) <= 1e-3  # still function preserving
    assert not (tmp_path / "out" / "stages" / "m1-L2-H48" / "grown").exists()


def _identical_copies(member_dir) -> dict[str, int]:
    """{axis: (copy groups still bit-identical, copy groups)} in a grown member, for the q, ffn and hidden axes."""
    growth = json.loads((member_dir / "growth.json").read_text())
    weights = load_file(member_dir / "model.safetensors")
    head_dim = growth["plan"]["dst_sizes"]["hidden_size"] // growth["plan"]["dst_sizes"]["num_attention_heads"]
    probes = {  # axis -> (tensor, rows per unit, dim)
        "q": ("model.layers.0.self_attn.q_proj.weight", head_dim, 0),
        "ffn": ("model.layers.0.mlp.gate_proj.weight", 1, 0),
        "hidden": ("model.embed_tokens.weight", 1, 1),
    }
    identical = {}
    for axis, (key, per_unit, dim) in probes.items():
        units = weights[key].movedim(dim, 0).unflatten(0, (-1, per_unit))
        groups: dict[int, list[int]] = {}
        for unit, source in enumerate(growth["plan"]["index_maps"][axis]):
            groups.setdefault(source, []).append(unit)
        copies = [g for g in groups.values() if len(g) > 1]
        assert copies, axis  # the growth did make copies along this axis
        same = sum(all(torch.equal(units[g[0]], units[u]) for u in g[1:]) for g in copies)
        identical[axis] = (same, len(copies))
    return identical


@pytest.mark.parametrize("noise, stays_identical", [(None, False), (0.0, True)], ids=["default noise", "no noise"])
def test_copy_based_growth_breaks_symmetry_by_default(tmp_path, noise, stays_identical):
    """fpi copies units; without noise the copies get identical gradients and stay bit-identical however long they
    train (the negative control); the default paired noise makes them diverge while keeping the function."""
    data = tiny_recipe_data("fpi+identity")
    doubled = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
    data["members"][1] = {**data["members"][1], **doubled, "noise_std": noise}  # integer ratios: fpi preserves
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    ledger = build_family(load_recipe(str(path)), tmp_path / "out", max_steps=3)
    member_dir = tmp_path / "out" / "members" / list(ledger.members)[1]
    identical = _identical_copies(member_dir)
    assert all(same == (groups if stays_identical else 0) for same, groups in identical.values()), identical
    growth = json.loads((member_dir / "growth.json").read_text())
    assert growth["plan"]["noise_std"] == (0.0 if noise == 0.0 else 0.01)
    assert growth["preservation"]["max_abs_logit_diff"] < 1e-4  # the noise is paired: the function is kept
