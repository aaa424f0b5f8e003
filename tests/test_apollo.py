"""Apollo (training/apollo.py): the depth distribution, weight sharing at a virtual depth against the child grown by
interpolation (an independent code path: the expansion operators), the true gradient, and the FLOPs of the depths
each step ran against torch's FlopCounterMode."""

import collections

import pytest
import torch
import transformers
from testing_utils import BIG, SMALL, TINY, randomize_, tiny_recipe

from hf_progressive.errors import RecipeError
from hf_progressive.models.progressive import progressive_classes
from hf_progressive.training.apollo import DepthSampler, virtual_depth
from hf_progressive.training.trainer import ProgressiveTrainer, ProgressiveTrainingArguments


PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
DRAWS = 20_000


@pytest.mark.parametrize(
    "layers, max_layers, distribution, start, end",
    [
        (1, 2, "lvps", 0.4, 0.6),
        (3, 6, "lvps", 0.4, 0.6),
        (2, 5, "lvps", 0.4, 0.6),
        (4, 16, "lvps", 0.4, 0.6),
        (2, 6, "lvps", 1.0, 0.9),
        (3, 7, "uniform", 0.4, 0.6),
    ],
)
def test_sampled_depths_follow_the_distribution(layers, max_layers, distribution, start, end):
    sampler = DepthSampler(
        layers, max_layers, seed=0, until_step=DRAWS, distribution=distribution, start=start, end=end
    )
    mass = sampler.mass()
    assert set(mass) == set(range(layers, max_layers + 1)) and sum(mass.values()) == pytest.approx(1.0)
    seen = collections.Counter(sampler.depth(step) for step in range(DRAWS))
    assert set(seen) <= set(mass)
    for depth, probability in mass.items():  # within 5 standard errors of a binomial count
        tolerance = 5 * (probability * (1 - probability) / DRAWS) ** 0.5 + 1e-9
        assert abs(seen[depth] / DRAWS - probability) <= tolerance, (depth, seen[depth] / DRAWS, probability)
    if distribution == "lvps":  # low values first: the own depth is the likeliest, and the deepest is reachable
        assert max(mass, key=mass.get) == layers and mass[max_layers] > 0


def test_lvps_matches_the_papers_curve_by_hand():
    """R = 2, start 0.4, end 0.6: y = m / (x + n) through (1e-6, 2.4) and (1, 0.6) is y = 0.8 / (x + 1/3) (to 1e-6);
    with one layer, D = 2 exactly when y >= 2, i.e. x <= 0.4 - 1/3."""
    mass = DepthSampler(1, 2, seed=0, until_step=1).mass()
    assert mass[2] == pytest.approx(0.4 - 1 / 3, abs=1e-5) and mass[1] == pytest.approx(1 - (0.4 - 1 / 3), abs=1e-5)


def test_draws_are_keyed_by_seed_and_step_and_stop_at_the_branch():
    a, b = DepthSampler(2, 8, seed=0, until_step=50), DepthSampler(2, 8, seed=0, until_step=50)
    assert [a.depth(s) for s in range(200)] == [b.depth(s) for s in range(200)]  # a resumed stage draws the same
    assert [a.depth(s) for s in range(50)] != [DepthSampler(2, 8, seed=1, until_step=50).depth(s) for s in range(50)]
    assert {a.depth(s) for s in range(50, 200)} == {2}  # the decay branch runs at the member's own depth
    assert a.added_layers(0, 200) == sum(a.depth(s) - 2 for s in range(50))
    assert a.added_layers(0, 20) + a.added_layers(20, 200) == a.added_layers(0, 200)


def make_model(model_type: str, seed: int = 0, **more):
    config = getattr(transformers, f"{PREFIX[model_type]}Config")(**{**TINY, "head_dim": 8, **more})
    torch.manual_seed(seed)
    return randomize_(getattr(transformers, f"{PREFIX[model_type]}ForCausalLM")(config), seed).double().eval()


def grown(small, depth: int):
    """The child grown by the apollo depth operator (interpolation), through the expansion code."""
    config_class, model_class = progressive_classes(small.config)
    target = config_class.from_smaller(small.config, num_hidden_layers=depth)
    return model_class.from_smaller(small, target, method="function_preserving+apollo", verify=False).double().eval()


CASES = [  # (architecture, own depth, virtual depth, extra config)
    ("llama", 2, 3, {}),
    ("llama", 2, 4, {"tie_word_embeddings": True}),
    ("mistral", 2, 5, {}),
    ("qwen2", 3, 5, {}),
    ("qwen2", 2, 4, {"use_sliding_window": True, "max_window_layers": 0, "sliding_window": 4}),
    ("qwen3", 2, 4, {}),
]


@pytest.mark.parametrize("model_type, layers, depth, more", CASES)
def test_virtual_depth_is_the_interpolated_child_with_shared_weights(model_type, layers, depth, more):
    small = make_model(model_type, num_hidden_layers=layers, **more)
    child = grown(small, depth)
    ids = torch.randint(0, TINY["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    params_before = [id(p) for p in small.parameters()]
    keys_before = list(small.state_dict())
    with torch.no_grad(), virtual_depth(small, depth):
        virtual = small(ids).logits
        assert len(small.model.layers) == depth and small.config.num_hidden_layers == depth
        assert [id(p) for p in small.parameters()] == params_before  # one set of parameters, shared
    with torch.no_grad():
        expected, own = child(ids).logits, small(ids).logits
    torch.testing.assert_close(virtual, expected, rtol=0, atol=1e-10)
    assert (virtual - own).abs().max() > 1e-3  # the virtual depth changes the function
    assert list(small.state_dict()) == keys_before and small.config.num_hidden_layers == layers
    assert len(small.model.layers) == layers and small.config.use_cache is True


@pytest.mark.parametrize("model_type, layers, depth, more", CASES[:1] + CASES[-2:])
def test_a_shared_layer_gets_the_sum_of_its_copies_gradients(model_type, layers, depth, more):
    """The true gradient: the interpolated child's gradient, summed over the copies of each shared layer."""
    small = make_model(model_type, num_hidden_layers=layers, **more)
    child = grown(small, depth)
    ids = torch.randint(0, TINY["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(2))
    with virtual_depth(small, depth):
        small(ids, labels=ids).loss.backward()
    child(ids, labels=ids).loss.backward()
    copies = collections.defaultdict(list)
    for layer in range(depth):
        copies[(layer * layers) // depth].append(layer)
    for name, param in small.named_parameters():
        if name.startswith("model.layers."):
            index, rest = name.split(".", 3)[2:]
            oracle = sum(child.get_parameter(f"model.layers.{c}.{rest}").grad for c in copies[int(index)])
        else:
            oracle = child.get_parameter(name).grad
        torch.testing.assert_close(param.grad, oracle, rtol=1e-9, atol=1e-12, msg=name)


def test_trainer_flops_count_the_depth_each_step_ran(tmp_path):
    """FlopCounterMode over a whole training run (eager attention, every matmul counted) against the ledger's
    FLOPs of the sampled depths; the depths really vary, so a run at the own depth would miss by far."""
    from torch.utils.flop_counter import FlopCounterMode

    from hf_progressive.family.budget import flops_per_added_layer, flops_per_token

    model = make_model("llama", num_hidden_layers=2, attn_implementation="eager").float().train()
    sampler = DepthSampler(2, 6, seed=3, until_step=5, distribution="uniform")
    assert len({sampler.depth(s) for s in range(5)}) > 1
    blocks = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, TINY["vocab_size"], (24, 32))]
    fpt, added = flops_per_token(model.config, 32), flops_per_added_layer(model.config, 32)
    args = ProgressiveTrainingArguments(
        str(tmp_path), max_steps=6, per_device_train_batch_size=4, tokens_per_step=128, flops_per_token=fpt,
        flops_per_added_layer=added, apollo_sampler=vars(sampler), use_cpu=True, logging_steps=1, save_strategy="no",
        report_to="none", eval_strategy="no",
    )  # fmt: skip
    trainer = ProgressiveTrainer(model=model, args=args, train_dataset=blocks)
    with FlopCounterMode(display=False) as counter:
        trainer.train()
    logged = [e["cumulative_flops"] for e in trainer.state.log_history if "cumulative_flops" in e][-1]
    assert logged == 128 * (6 * fpt + added * sampler.added_layers(0, 6))
    assert logged == pytest.approx(counter.get_total_flops(), rel=0.02)
    assert logged > 1.2 * 6 * 128 * fpt
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2


APOLLO = "function_preserving+apollo"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"members": [SMALL, {**BIG, "num_hidden_layers": 1, "method": APOLLO}]},
         r"members\[1\].method='function_preserving\+apollo': apollo grows depth, but 1 -> 1 layers does not"),
        ({"members": [SMALL, {**BIG, "train_inherited": "lora"}, {**BIG, "num_hidden_layers": 4, "method": APOLLO}]},
         r"members\[1\].train_inherited='lora': its stage prepares member 2's depth \(apollo\)"),
        ({"apollo": {"distribution": "zipf"}}, r"apollo.distribution='zipf': choose lvps or uniform"),
        ({"apollo": {"lvps_end": 1.5}}, r"apollo.lvps_end=1.5: use a value in \(0, 1\]"),
        ({"apollo": {"lvps_start": -1}}, r"apollo.lvps_start=-1: use 0 or more"),
    ],
)  # fmt: skip
def test_recipe_refusals(tmp_path, change, match):
    with pytest.raises(RecipeError, match=match):
        tiny_recipe(tmp_path, **change)
