"""The trunk schedule (lr.across_stages: trunk) and Apollo in whole builds: decay branches in the plan and the ledger,
the LR each step trained at, growth from the trunk (not from the annealed member), and resume exactness inside a
trunk, inside a branch and across `--until`, with Apollo's virtual depths on."""

import math

import pytest
import torch
from safetensors.torch import load_file
from testing_utils import BIG, SMALL, tiny_recipe
from transformers import AutoModelForCausalLM, TrainerCallback

from hf_progressive.data.blocks import BlockWindow
from hf_progressive.data.token_store import TokenStore
from hf_progressive.family.builder import build_family
from hf_progressive.family.family_plan import plan_family
from hf_progressive.family.ledger import FamilyPaths
from hf_progressive.utils.io import read_json


STEPS, BRANCH = 4, 2  # trunk steps per stage (--max-steps-per-stage) and the branch: ceil(0.5 x 4)
TRUNK = {"warmup_ratio": 0.0, "across_stages": "trunk", "branch_ratio": 0.5, "rewarm_ratio": 0.25, "min_lr_ratio": 0.1}
APOLLO = [SMALL, {**BIG, "method": "function_preserving+apollo"}]  # 1 -> 2 layers


def trunk_recipe(tmp_path, members=None, **changes):
    return tiny_recipe(tmp_path, members=members or [SMALL, BIG], lr=TRUNK, **changes)


@pytest.fixture(scope="module")
def trunk_family(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trunk")
    recipe = trunk_recipe(tmp, optimizer={"at_growth": "carry"})
    return recipe, tmp / "out", build_family(recipe, tmp / "out", max_steps=STEPS)


@pytest.fixture(scope="module")
def apollo_family(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("apollo")
    recipe = trunk_recipe(tmp, APOLLO, optimizer={"at_growth": "carry"}, apollo={"distribution": "uniform"})
    return recipe, tmp / "out", build_family(recipe, tmp / "out", max_steps=STEPS)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("mode", ["progressive", "progressive_fixed_data", "independent"])
def test_branches_are_planned_and_counted_against_the_saving(tmp_path, ratio, mode):
    members = [SMALL, BIG, {**BIG, "hidden_size": 96, "num_hidden_layers": 3}]
    restart = plan_family(tiny_recipe(tmp_path, mode=mode, members=members))
    trunk = plan_family(tiny_recipe(tmp_path, mode=mode, members=members, lr={**TRUNK, "branch_ratio": ratio}))
    tokens_per_step = 4 * 32
    for before, after in zip(restart.members, trunk.members, strict=True):
        branch = 0 if mode == "independent" else math.ceil(ratio * before.steps)
        assert (after.branch_steps, after.trunk_steps, after.steps) == (branch, before.steps, before.steps + branch)
        assert after.stage_flops == before.flops_per_token * after.steps * tokens_per_step
    branches = sum(m.branch_steps * m.flops_per_token * tokens_per_step for m in trunk.members)
    assert trunk.total_flops == pytest.approx(restart.total_flops + branches)
    assert (trunk.saving < restart.saving) == (mode != "independent")
    for previous, member in zip(trunk.members, trunk.members[1:], strict=False):  # a branch reads its own fresh tokens
        if mode == "progressive":
            assert member.window.start == previous.window.start + previous.window.length


def test_ledger_records_trunk_and_branch(trunk_family):
    recipe, out, ledger = trunk_family
    plan = plan_family(recipe, max_steps=STEPS)
    for member, (name, record) in zip(plan.members, ledger.members.items(), strict=True):
        assert (record.steps, record.branch_steps) == (STEPS + BRANCH, BRANCH)
        assert record.tokens == (STEPS + BRANCH) * 4 * 32 and record.flops_stage == member.stage_flops
        trunk = FamilyPaths(out).trunk(name)
        assert (trunk / "config.json").is_file() and FamilyPaths(out).trunk_optimizer(name).is_file()
        assert read_json(FamilyPaths(out).trunk_record(name))["step"] == STEPS
    assert ledger.totals["flops"] == pytest.approx(plan.total_flops)


def test_learning_rate_is_stable_on_the_trunk_and_decays_on_the_branch(trunk_family):
    recipe, out, ledger = trunk_family
    for k, (name, record) in enumerate(ledger.members.items()):
        logged = read_json(FamilyPaths(out).training_log(name))["log_history"]
        lrs = [entry["learning_rate"] for entry in logged if "learning_rate" in entry]
        assert len(lrs) == STEPS + BRANCH
        rewarm = 0 if k == 0 else math.ceil(TRUNK["rewarm_ratio"] * STEPS)  # one warm-up: the first stage has none
        assert all(lr < record.max_lr for lr in lrs[:rewarm])
        assert lrs[rewarm:STEPS] == pytest.approx([record.max_lr] * (STEPS - rewarm), rel=1e-9)
        branch = lrs[STEPS:]
        assert all(a >= b for a, b in zip([record.max_lr, *branch], branch, strict=False))  # transformers' WSD
        assert TRUNK["min_lr_ratio"] * record.max_lr <= branch[-1] < 0.6 * record.max_lr


def test_next_member_grows_from_the_trunk_not_the_annealed_member(trunk_family):
    """function_preserving growth: the grown member's first loss equals the trunk's loss on that batch, which the
    released (annealed) member's loss on it does not."""
    recipe, out, ledger = trunk_family
    first, second = ledger.members.values()
    name = next(iter(ledger.members))
    assert abs(second.first_step_loss - first.boundary_loss) <= 1e-3
    plan = plan_family(recipe, max_steps=STEPS)
    window = BlockWindow(TokenStore.open(FamilyPaths(out).data).train, plan.members[1].window)
    ids = torch.stack([window[i]["input_ids"] for i in range(recipe.batch_size)])
    with torch.no_grad():
        released = AutoModelForCausalLM.from_pretrained(FamilyPaths(out).member(name))(ids, labels=ids).loss.item()
        trunk = AutoModelForCausalLM.from_pretrained(FamilyPaths(out).trunk(name))(ids, labels=ids).loss.item()
    assert trunk == pytest.approx(first.boundary_loss, abs=1e-5)
    assert abs(released - second.first_step_loss) > 1e-3


def test_apollo_family_counts_its_virtual_layers_and_stays_vanilla(apollo_family):
    recipe, out, ledger = apollo_family
    plan = plan_family(recipe, max_steps=STEPS)
    first, second = ledger.members.values()
    sampler = plan.members[0].apollo
    assert (sampler.layers, sampler.max_layers, sampler.until_step) == (1, 2, STEPS)
    assert first.virtual_layers == sampler.added_layers(0, STEPS + BRANCH) > 0 and second.virtual_layers == 0
    assert first.flops_stage == plan.members[0].stage_flops  # own depth + the virtual layers each step ran
    model = AutoModelForCausalLM.from_pretrained(FamilyPaths(out).member(next(iter(ledger.members))))
    assert model.config.num_hidden_layers == 1 and len(model.model.layers) == 1  # released at its own depth


class _Crash(TrainerCallback):
    def __init__(self, stage: int, step: int):
        self.stage, self.step = stage, step

    def on_step_end(self, args, state, control, **kwargs):
        if args.stage_index == self.stage and state.global_step == self.step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize(
    "until, stage, step",
    [
        (None, 0, 3),  # inside the first trunk, while Apollo samples depths
        ("1", 1, STEPS + 1),  # after --until 1, inside the second member's decay branch
    ],
)
def test_resume_matches_the_uninterrupted_build(apollo_family, tmp_path, until, stage, step):
    recipe, reference_out, reference = apollo_family
    out = tmp_path / "out"
    if until:
        build_family(recipe, out, max_steps=STEPS, until=until)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_family(recipe, out, max_steps=STEPS, callbacks=[_Crash(stage, step)])
    ledger = build_family(recipe, out, max_steps=STEPS)
    for name, record in ledger.members.items():
        resumed, uninterrupted = (load_file(o / "members" / name / "model.safetensors") for o in (out, reference_out))
        assert all(torch.equal(resumed[key], uninterrupted[key]) for key in uninterrupted), name
        expected = reference.members[name]
        assert (record.final_train_loss, record.flops_stage, record.virtual_layers) == (
            expected.final_train_loss,
            expected.flops_stage,
            expected.virtual_layers,
        )


def test_member_cards_say_how_the_member_was_trained(apollo_family):
    from hf_progressive.hub.cards import member_card, repo_ids

    _, out, ledger = apollo_family
    ids = repo_ids(out, "org")
    first, second = (member_card(out, name, ids).text for name in ledger.members)
    assert "Released from a decay branch: the last 2 of its steps" in first and "Apollo's shared layers" in first
    assert "Released from a decay branch" in second and "Apollo" not in second.split("## How it was made")[1]


@pytest.mark.parametrize(
    "lr, members, match",
    [
        ({"across_stages": "wsd"}, None, r"lr.across_stages='wsd': choose restart or trunk"),
        ({"rewarm_ratio": 1.0}, None, r"lr.rewarm_ratio=1.0: use a fraction in \[0, 1\)"),
        ({"branch_ratio": 0}, None, r"lr.branch_ratio=0: use a fraction in \(0, 1\]"),
        ({"across_stages": "trunk"}, [SMALL, {**BIG, "train_inherited": "lora"}],
         r"lr.across_stages='trunk': member 1 trains LoRA adapters, and a trunk .* must be whole weights"),
    ],
)  # fmt: skip
def test_trunk_options_are_refused_in_one_line(tmp_path, lr, members, match):
    from hf_progressive.errors import RecipeError

    with pytest.raises(RecipeError, match=match):
        tiny_recipe(tmp_path, lr=lr, **({"members": members} if members else {}))
