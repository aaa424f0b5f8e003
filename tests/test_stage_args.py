"""Global batch vs micro-batch (gradient accumulation gives the same members), and the recipe's `training:` mappings
reaching the Trainer (with unknown and library-owned keys refused in one line)."""

import pytest
import torch
from safetensors.torch import load_file
from testing_utils import BIG, SMALL, tiny_recipe
from transformers import TrainerCallback

from hf_progressive.cli import main
from hf_progressive.errors import RecipeError
from hf_progressive.family.builder import build_family
from hf_progressive.training.stage_args import batch_sizes


STEPS = 3


class _Seen(TrainerCallback):
    """What each stage's Trainer was given."""

    def __init__(self):
        self.stages = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.stages.append(
            {
                "micro": args.per_device_train_batch_size,
                "accumulation": args.gradient_accumulation_steps,
                "eval": args.per_device_eval_batch_size,
                "checkpointing": args.gradient_checkpointing and model.is_gradient_checkpointing,
                "optim": args.optim,
            }
        )


def _build(tmp_path, name, **changes):
    seen = _Seen()
    ledger = build_family(tiny_recipe(tmp_path, **changes), tmp_path / name, max_steps=STEPS, callbacks=[seen])
    weights = {n: load_file(tmp_path / name / "members" / n / "model.safetensors") for n in ledger.members}
    return ledger, weights, seen.stages


@pytest.mark.parametrize(
    "batch, micro, processes, expected",
    [(16, None, 1, (16, 1)), (16, 4, 1, (4, 4)), (16, 2, 2, (2, 4)), (16, None, 2, (8, 1)), (512, 8, 8, (8, 8))],
)
def test_micro_batch_derives_accumulation(batch, micro, processes, expected):
    sizes = batch_sizes(batch, micro, processes)
    assert (sizes["per_device_train_batch_size"], sizes["gradient_accumulation_steps"]) == expected
    assert sizes["per_device_eval_batch_size"] == expected[0]  # evaluation uses the micro-batch


@pytest.mark.parametrize("batch, micro, processes", [(16, 3, 1), (16, 4, 3), (10, None, 4)])
def test_a_global_batch_that_does_not_split_is_one_line(batch, micro, processes):
    with pytest.raises(RecipeError, match=f"batch_size={batch} is not a multiple of micro_batch_size") as raised:
        batch_sizes(batch, micro, processes)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "optim, lr, atol",
    [("sgd", 1e-2, 1e-5), ("adamw_torch", 1e-3, 1e-4)],
    ids=["sgd: the update is linear in the gradient", "adamw: near-zero gradients meet eps, noise is amplified"],
)
def test_accumulated_micro_batches_give_the_members_of_the_full_batch(tmp_path, optim, lr, atol):
    """Accumulating 4 micro-batches of 2 gives the gradient of the batch of 8 (up to fp32 summation order). With SGD
    the members agree within 1e-5 after 3 steps; AdamW divides by sqrt(v) + eps, so coordinates whose gradient is
    near eps turn rounding noise into weight differences of the order of the LR (measured at lr 1e-3: up to 2.2e-5),
    hence 1e-4 there."""
    common = {"batch_size": 8, "lr": {"fixed": lr, "warmup_ratio": 0.0}, "training": {"optim": optim}}
    full, full_weights, full_seen = _build(tmp_path, "full", **common)
    micro, micro_weights, micro_seen = _build(
        tmp_path, "micro", **common, micro_batch_size=2, members=[SMALL, {**BIG, "micro_batch_size": 4}]
    )
    assert [(s["micro"], s["accumulation"]) for s in full_seen] == [(8, 1), (8, 1)]
    assert [(s["micro"], s["accumulation"]) for s in micro_seen] == [(2, 4), (4, 2)]  # the member's own wins
    for name in full.members:
        assert micro.members[name].tokens == full.members[name].tokens == STEPS * 8 * 32
        for key, tensor in full_weights[name].items():
            torch.testing.assert_close(micro_weights[name][key], tensor, atol=atol, rtol=0)
        assert abs(micro.members[name].val_loss - full.members[name].val_loss) < atol


def test_training_mapping_reaches_the_trainer_and_keeps_the_loss(tmp_path):
    off, off_weights, off_seen = _build(tmp_path, "off")
    on, on_weights, on_seen = _build(
        tmp_path,
        "on",
        training={"gradient_checkpointing": True},
        members=[SMALL, {**BIG, "training": {"optim": "sgd"}}],
    )
    assert [s["checkpointing"] for s in off_seen] == [False, False]
    assert [s["checkpointing"] for s in on_seen] == [True, True]  # recipe-wide
    assert [s["optim"] for s in on_seen] == [off_seen[0]["optim"], "sgd"]  # per member, over the recipe's
    first = next(iter(off.members))
    assert abs(on.members[first].val_loss - off.members[first].val_loss) <= 1e-6  # recomputation, same math
    for key, tensor in off_weights[first].items():
        torch.testing.assert_close(on_weights[first][key], tensor, atol=1e-6, rtol=0)


def test_cli_training_overrides_reach_every_stage(tmp_path):
    seen = _Seen()
    recipe = tiny_recipe(tmp_path)
    build_family(recipe, tmp_path / "o", max_steps=2, callbacks=[seen], training={"optim": "adafactor"})
    assert [s["optim"] for s in seen.stages] == ["adafactor", "adafactor"]


BAD_TRAINING = [
    ({"training": {"gradient_checkpoint": True}}, "training.gradient_checkpoint: not a TrainingArguments field"),
    ({"training": {"learning_rate": 1e-3}}, "training.learning_rate: set by hf_progressive; use lr"),
    ({"training": {"per_device_train_batch_size": 2}}, "use batch_size / micro_batch_size instead"),
    ({"members": [SMALL, {**BIG, "training": {"seed": 3}}]}, "members[1].training.seed: set by hf_progressive"),
    ({"training": ["bf16"]}, "training: expected a mapping"),
    ({"micro_batch_size": 3}, "micro_batch_size=3: it must divide batch_size=4"),
]


@pytest.mark.parametrize("changes, fragment", BAD_TRAINING, ids=[f for _, f in BAD_TRAINING])
def test_bad_training_options_are_one_line(tmp_path, changes, fragment):
    with pytest.raises(RecipeError) as raised:
        tiny_recipe(tmp_path, **changes)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--training", "optim=no_such_optimizer"], "training: "),
        (["--training", "no_equals_sign"], "write KEY=VALUE"),
        (["--training", "max_steps=3"], "--training.max_steps: set by hf_progressive"),
    ],
)
def test_bad_cli_training_is_one_line_and_writes_nothing(tmp_path, capsys, argv, fragment):
    recipe = tiny_recipe(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["build-family", recipe.source, "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_until_stops_after_a_member_and_the_next_launch_finishes_the_family(tiny_family, tmp_path, capsys):
    from testing_utils import STEPS as FAMILY_STEPS

    reference_out, reference = tiny_family
    recipe = str(next(reference_out.parent.glob("recipe-*.yaml")))  # the fixture family's own recipe file
    argv = ["build-family", recipe, "--out", str(tmp_path / "o"), "--max-steps-per-stage", str(FAMILY_STEPS)]
    first = next(iter(reference.members))
    assert main([*argv, "--until", first]) == 0  # one launch: stage 0 only
    assert [p.name for p in (tmp_path / "o" / "members").iterdir()] == [first]
    assert main(argv) == 0  # the next launch resumes after it
    for name in reference.members:
        ours = load_file(tmp_path / "o" / "members" / name / "model.safetensors")
        theirs = load_file(reference_out / "members" / name / "model.safetensors")
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert main([*argv, "--until", "m9-nope"]) == 2
    assert "--until 'm9-nope': not a member of this family (m0-L1-H32, m1-L2-H48)" in capsys.readouterr().err


def test_carry_under_a_sharded_backend_is_refused_not_dropped(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, optimizer={"at_growth": "carry"})
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with an FSDP config sets
    with pytest.raises(RecipeError, match="carry .* not supported under FSDP yet .* use optimizer.at_growth: reset"):
        build_family(recipe, tmp_path / "o", max_steps=2)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    with pytest.raises(RecipeError, match="not supported under DeepSpeed"):
        build_family(recipe, tmp_path / "o", max_steps=2, training={"deepspeed": "ds_config.json"})
    assert not (tmp_path / "o").exists()
