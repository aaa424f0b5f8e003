"""Every supported architecture (Llama, Mistral, Qwen2, Qwen3) through the same growth table: function preservation
(float32 within 1e-4 and float64 within 1e-10 relative logits error, every weight perturbed first, norms and biases
included), head_dim growth under every rope type, first-step gradients of the new dimensions, the exact state dict of
the vanilla class, streaming = in memory, a vanilla reload without hf_progressive, and one-line refusals."""

import copy
import functools
import json
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from testing_utils import TINY, carried_and_true, expected_preserving, float64_rms_norm, randomize_

from hf_progressive import ExpansionError
from hf_progressive.expansion.operators import fresh_entries
from hf_progressive.expansion.streaming import expand_checkpoint
from hf_progressive.models.progressive import progressive_classes


PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
BASE = {**TINY, "head_dim": 8}  # the shared tiny shape, with heads of 8 dimensions
BIASES = {"llama": {"attention_bias": True, "mlp_bias": True}, "qwen3": {"attention_bias": True}}
ALL = dict(hidden_size=64, intermediate_size=80, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4)
CASES = [  # (id, source overrides, target sizes)
    ("head_dim x2", {}, {"head_dim": 16}),
    ("gqa regroup + head_dim x2", {}, {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 16}),
    ("all + head_dim x2, tied", {"tie_word_embeddings": True}, {**ALL, "head_dim": 16}),
    ("all, biases", "biases", ALL),
    ("width 1.5x + depth", {}, {"hidden_size": 48, "num_hidden_layers": 3}),
]
METHODS = ["function_preserving", "fpi", "hypercloning", "aki", "function_preserving+stack", "fpi+interpolate"]
SLOW_FLOAT32 = ("hypercloning", "fpi+interpolate")  # their float32 rows run in `make test-slow`; float64 always runs
ROPES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
        "rope_theta": 10000.0,
    },
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "rope_theta": 500000.0},
}


def make_config(model_type: str, overrides="none", **more):
    overrides = BIASES.get(model_type, {}) if overrides == "biases" else ({} if overrides == "none" else overrides)
    return getattr(transformers, f"{PREFIX[model_type]}Config")(**{**BASE, **overrides, **more})


def make_model(config, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    model = getattr(transformers, f"{PREFIX[config.model_type]}ForCausalLM")(config)
    return randomize_(model, seed).to(dtype).eval()


@functools.cache
def source(model_type: str, case: str, dtype=torch.float32):
    """The perturbed source model of a table row, built once (growth never changes its source)."""
    overrides = next(overrides for case_id, overrides, _ in CASES if case_id == case)
    return make_model(make_config(model_type, overrides), dtype)


def grow(small, sizes: dict, method: str, **kwargs):
    config_class, model_class = progressive_classes(small.config)
    target = config_class.from_smaller(small.config, **sizes)
    return model_class.from_smaller(small, target, method=method, seed=0, noise_std=0.0, verify=False, **kwargs)


def integer_ratios(src, sizes: dict) -> bool:
    return all(value % getattr(src, name) == 0 for name, value in sizes.items() if name != "num_hidden_layers")


def relative_error(small, big, ids) -> float:
    with torch.no_grad():
        a, b = small(ids).logits, big(ids).logits
    return ((a - b).abs().max() / a.abs().max()).item()


def table(preserving_only: bool = False):
    for model_type in PREFIX:
        for case_id, overrides, sizes in CASES:
            src = make_config(model_type, overrides)
            for method in METHODS:
                if method == "hypercloning" and not integer_ratios(src, sizes):
                    continue
                if preserving_only and not expected_preserving(method, src, sizes):
                    continue
                slow = [pytest.mark.slow] if method in SLOW_FLOAT32 and not preserving_only else []
                yield pytest.param(
                    model_type, case_id, sizes, method, id=f"{model_type} | {case_id} | {method}", marks=slow
                )


IDS = torch.randint(0, 99, (2, 24), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("model_type, case, sizes, method", list(table()))
def test_growth_table_float32(model_type, case, sizes, method):
    small = source(model_type, case)
    big = grow(small, sizes, method)
    with torch.device("meta"):
        reference = getattr(transformers, f"{PREFIX[model_type]}ForCausalLM")(big.config).state_dict()
    assert {k: tuple(v.shape) for k, v in big.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.items()
    }
    expected = expected_preserving(method, small.config, sizes)
    assert big.growth_plan.function_preserving is expected
    error = relative_error(small, big, IDS)
    assert error <= 1e-4 if expected else error > 1e-3, error  # a non-preserving operator really changes the function


@pytest.mark.parametrize("model_type, case, sizes, method", list(table(preserving_only=True)))
def test_growth_table_float64(model_type, case, sizes, method):
    small = source(model_type, case, torch.float64)
    with float64_rms_norm():
        assert relative_error(small, grow(small, sizes, method), IDS) <= 1e-10


@pytest.mark.parametrize("rope", list(ROPES))
@pytest.mark.parametrize("model_type", list(PREFIX))
def test_head_dim_growth_is_exact_under_every_rope_type(model_type, rope):
    """Each rope type transforms every frequency on its own, so old pair i at new pair k*i keeps its rotation."""
    small = make_model(make_config(model_type, rope_parameters=ROPES[rope]), torch.float64)
    ids = torch.randint(0, 99, (2, 60), generator=torch.Generator().manual_seed(2))  # past the original context
    with float64_rms_norm():
        assert (
            relative_error(small, grow(small, {"head_dim": 16, "hidden_size": 64}, "function_preserving"), ids)
            <= 1e-10
        )
        assert relative_error(small, grow(small, {"head_dim": 32}, "hypercloning"), ids) <= 1e-10


@pytest.mark.parametrize("model_type", list(PREFIX))
def test_new_head_dimensions_all_learn(model_type):
    """No dead saddle: every zero-initialised new entry gets a gradient at the first step, and every new entry (the
    tiled copies too, whose partners start at zero) after one optimizer step."""
    small = make_model(make_config(model_type))
    big = grow(small, {"head_dim": 16}, "function_preserving").train()
    fresh = {name: fresh_entries(name, big.growth_plan) for name, _ in big.named_parameters()}
    assert sum(int(mask.sum()) for mask in fresh.values()) > 0
    loss = big(IDS, labels=IDS).loss
    loss.backward()
    for name, param in big.named_parameters():
        zero = fresh[name] & (param.detach() == 0)
        assert bool((param.grad[zero] != 0).all()), name
    torch.optim.SGD(big.parameters(), lr=0.1).step()
    big.zero_grad()
    big(IDS, labels=IDS).loss.backward()
    for name, param in big.named_parameters():
        assert bool((param.grad[fresh[name]] != 0).all()), name


RELOAD = (
    "import sys, json, torch; sys.modules['hf_progressive'] = None\n"
    "from transformers import AutoModelForCausalLM\n"
    "ids, seen = torch.load(sys.argv[1]), []\n"
    "for folder in sys.argv[2:]:\n"
    "    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation='sdpa').eval()\n"
    "    torch.save(model(ids).logits.detach(), folder + '/logits.pt')\n"
    "    seen.append([model.config.model_type, type(model).__name__])\n"
    "print(json.dumps(seen))\n"
)


def test_streaming_matches_in_memory_and_reloads_as_vanilla_without_hf_progressive(tmp_path):
    """For every architecture: streamed expand = in-memory from_smaller, and the output reloads as its own type, with
    identical logits, in one subprocess that cannot import hf_progressive."""
    grown = {}
    for model_type in PREFIX:
        small = make_model(make_config(model_type, tie_word_embeddings=model_type == "qwen2"))
        small.save_pretrained(tmp_path / model_type)
        target = progressive_classes(small.config)[0].from_smaller(small.config, **ALL, head_dim=16)
        dst = expand_checkpoint(tmp_path / model_type, tmp_path / f"{model_type}-big", target, progress=False)
        big = grow(small, {**ALL, "head_dim": 16}, "function_preserving")
        streamed = load_file(dst / "model.safetensors")
        assert all(torch.equal(tensor, big.state_dict()[key]) for key, tensor in streamed.items()), model_type
        saved = json.loads((dst / "config.json").read_text())
        assert saved["architectures"] == [f"{PREFIX[model_type]}ForCausalLM"] and saved["head_dim"] == 16
        grown[model_type] = (dst, big)
    torch.save(IDS, tmp_path / "ids.pt")
    argv = [sys.executable, "-c", RELOAD, str(tmp_path / "ids.pt"), *(str(dst) for dst, _ in grown.values())]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [[t, f"{PREFIX[t]}ForCausalLM"] for t in PREFIX]
    with torch.no_grad():
        for model_type, (dst, big) in grown.items():
            assert torch.equal(torch.load(dst / "logits.pt"), big(IDS).logits), model_type


REFUSALS = [
    ("non-integer head_dim", {"head_dim": 12}, "function_preserving",
     r"head_dim=12: 8 -> 12 is a 1.5x ratio, but RoPE"),
    ("fewer, wider heads", {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16}, "fpi",
     r"num_attention_heads=2 is smaller than the source's 4: growth keeps every head \(head_dim 8\)"),
    ("odd head_dim", {"head_dim": 9}, "function_preserving", r"head_dim=9 is odd"),
    ("shrinking head_dim", {"head_dim": 4}, "function_preserving", r"head_dim=4 is smaller than the source's 8"),
    ("hypercloning 1.5x heads", {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 3},
     "hypercloning",
     r"num_attention_heads: hypercloning clones every unit an integer number of times, but 4 -> 6 \(heads of"),
]  # fmt: skip


@pytest.mark.parametrize("model_type", list(PREFIX))
@pytest.mark.parametrize("case, sizes, method, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_head_layout_refusals_name_head_dim_and_the_rule(model_type, case, sizes, method, message):
    small = make_model(make_config(model_type))
    with pytest.raises(ExpansionError, match=message) as refused:
        grow(small, sizes, method)
    assert "\n" not in str(refused.value) and "head_dim" in str(refused.value)


def test_a_non_integer_head_dim_ratio_is_allowed_for_an_operator_that_does_not_preserve_anyway():
    small = make_model(make_config("qwen3"))
    big = grow(small, {"head_dim": 12}, "aki")
    assert big.config.head_dim == 12 and big.state_dict()["model.layers.0.self_attn.q_norm.weight"].shape == (12,)


@pytest.mark.parametrize("model_type", ["gemma", "olmo2", "mixtral"])
def test_unsupported_architectures_are_refused_in_one_line(model_type):
    config = transformers.AutoConfig.for_model(model_type)
    config_class, _ = progressive_classes(make_config("llama"))
    with pytest.raises(ExpansionError, match=rf"model_type='{model_type}': hf_progressive grows llama, mistral"):
        config_class.from_smaller(config, hidden_size=4096)


def test_an_unknown_tensor_in_a_source_checkpoint_is_refused_not_dropped(tmp_path):
    small = make_model(make_config("qwen2"))
    small.save_pretrained(tmp_path / "small")
    tensors = load_file(tmp_path / "small" / "model.safetensors")
    tensors["model.layers.0.self_attn.o_proj.bias"] = torch.zeros(32)  # Qwen2 has no o_proj bias
    save_file(tensors, tmp_path / "small" / "model.safetensors", metadata={"format": "pt"})
    target = progressive_classes(small.config)[0].from_smaller(small.config, num_hidden_layers=3)
    with pytest.raises(Exception, match=r"1 tensors a Qwen2 of this config does not have \(model.layers.0.self_attn"):
        expand_checkpoint(tmp_path / "small", tmp_path / "big", target, progress=False)
    assert not (tmp_path / "big").exists()


def test_layer_types_grow_with_depth_and_mixed_ones_are_refused():
    config = make_config("qwen2")
    grown = progressive_classes(config)[0].from_smaller(config, num_hidden_layers=5)
    assert grown.layer_types == ["full_attention"] * 5
    mixed = make_config("qwen2", layer_types=["full_attention", "sliding_attention"], use_sliding_window=True)
    with pytest.raises(ExpansionError, match=r"num_hidden_layers=5: the source mixes attention types per layer"):
        progressive_classes(mixed)[0].from_smaller(mixed, num_hidden_layers=5)


# Published head structures at a scaled-down width (head_dim 64 -> 8; heads, kv groups, rope and tying as published):
# (id, model_type, source config overrides, target sizes)
PUBLISHED = [
    ("SmolLM2-135M -> 360M-class", "llama",
     dict(hidden_size=72, intermediate_size=192, num_hidden_layers=3, num_attention_heads=9, num_key_value_heads=3,
          tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
     dict(hidden_size=120, intermediate_size=320, num_hidden_layers=4, num_attention_heads=15, num_key_value_heads=5)),
    ("Qwen2.5-0.5B -> head_dim x2", "qwen2",
     dict(hidden_size=112, intermediate_size=608, num_hidden_layers=3, num_attention_heads=14, num_key_value_heads=2,
          tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
     dict(hidden_size=224, intermediate_size=1120, num_hidden_layers=4, head_dim=16)),
    ("Llama-3.2-1B -> head_dim x2", "llama",
     dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
          tie_word_embeddings=True, rope_parameters=ROPES["llama3"]),
     dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=3, head_dim=16)),
]  # fmt: skip


@pytest.mark.parametrize("case, model_type, overrides, sizes", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_head_structures_grow_exactly(case, model_type, overrides, sizes):
    small = make_model(make_config(model_type, overrides), torch.float64)
    with float64_rms_norm():
        assert relative_error(small, grow(small, sizes, "function_preserving"), IDS) <= 1e-10


def test_llama_3_2_1b_to_3b_is_refused_because_heads_would_merge():
    """Llama-3.2-1B has 32 heads of 64; 3B has 24 heads of 128: its 32 heads cannot fit into 24."""
    small = make_config("llama", dict(hidden_size=256, num_attention_heads=32, num_key_value_heads=8))
    target = dict(hidden_size=384, num_attention_heads=24, num_key_value_heads=8, head_dim=16)
    with pytest.raises(ExpansionError, match=r"num_attention_heads=24 is smaller than the source's 32: growth keeps"):
        progressive_classes(small)[0].from_smaller(small, **target)


@pytest.mark.parametrize("method", ["function_preserving", "hypercloning"])
@pytest.mark.parametrize("model_type", list(PREFIX))
def test_carried_moments_are_the_grown_models_true_gradient(model_type, method):
    """`optimizer.at_growth: carry` on every architecture, head_dim growth included: with the parent's moments set from
    its gradient on a batch, the carried exp_avg of every copied entry is the grown model's own autograd gradient on
    that batch (float64), and exp_avg_sq its square. Entries the carry restarts (fresh ones, and Qwen3's q/k
    projections under head_dim growth, whose gradient is no rescaling of the parent's) hold zero moments."""
    sizes = {"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 16}
    with float64_rms_norm():
        small = source(model_type, "head_dim x2", torch.float64)
        big, carried, true = carried_and_true(small, lambda model: grow(model, sizes, method), IDS)
    checked = 0
    for name, grad in true.items():
        copied = ~carried[name].get("fresh", fresh_entries(name, big.growth_plan))  # restarted entries: zero moments
        assert not bool(carried[name]["exp_avg"][~copied].any()), name
        if grad[copied].norm() == 0:
            continue
        error = ((carried[name]["exp_avg"][copied] - grad[copied]).norm() / grad[copied].norm()).item()
        assert error <= 1e-6, (name, error)
        assert torch.allclose(carried[name]["exp_avg_sq"][copied], grad[copied] ** 2, rtol=1e-5, atol=0), name
        checked += 1
    assert checked >= len(true) // 2


@pytest.mark.parametrize(
    "model_type, fields",
    [
        ("mistral", {"sliding_window": 4096}),
        ("qwen2", {"use_sliding_window": False, "sliding_window": 2048, "max_window_layers": 21}),
        ("qwen3", {"use_sliding_window": False, "sliding_window": 2048, "max_window_layers": 21}),
    ],
)
def test_sliding_window_settings_carry_over_unchanged(model_type, fields):
    config = make_config(model_type, fields)
    grown = progressive_classes(config)[0].from_smaller(config, **ALL, head_dim=16)
    assert {name: getattr(grown, name) for name in fields} == {name: getattr(config, name) for name in fields}
    first = next(iter(fields))
    changed = copy.deepcopy(grown)
    setattr(changed, first, 8 if first != "use_sliding_window" else True)
    from hf_progressive import GrowthPlan

    with pytest.raises(ExpansionError, match=rf"{first}: the target has .* growth keeps {first} fixed"):
        GrowthPlan.from_configs(config, changed)


@pytest.mark.parametrize("model_type", list(PREFIX))
def test_flops_and_parameter_counts_match_what_torch_counts_on_every_architecture(model_type):
    """Oracles: `num_parameters()` and torch's FlopCounterMode over one forward + backward (eager attention), on a
    head layout where heads x head_dim != hidden_size (as in Qwen3), with the architecture's biases and norms."""
    from torch.utils.flop_counter import FlopCounterMode

    from hf_progressive.expansion.sizes import parameter_counts
    from hf_progressive.family.budget import flops_per_token

    config = make_config(model_type, "biases", head_dim=16, attn_implementation="eager")
    model = getattr(transformers, f"{PREFIX[model_type]}ForCausalLM")(config)
    assert parameter_counts(config)["total"] == model.num_parameters()
    ids = torch.randint(0, config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(ids, labels=ids).loss.backward()
    assert flops_per_token(config, 32) == pytest.approx(counter.get_total_flops() / ids.numel(), rel=0.02)
