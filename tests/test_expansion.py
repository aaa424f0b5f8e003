"""The function-preservation table: every growth case x every operator. For function-preserving plans the grown
model must give the same logits (1e-4 in float32, 1e-9 in float64), the same loss and the same greedy generation;
for every plan the state dict must match LlamaForCausalLM(big_cfg) exactly and training must reach every new entry."""

import pytest
import torch
from testing_utils import (
    assert_logits_close,
    expected_preserving,
    float64_rms_norm,
    require_gpu,
    tiny_config,
    tiny_model,
)
from transformers import LlamaForCausalLM

from hf_progressive import ExpansionError, GrowthPlan, ProgressiveLlamaConfig, ProgressiveLlamaForCausalLM
from hf_progressive.expansion.keys import expected_keys
from hf_progressive.expansion.methods import parse_method
from hf_progressive.expansion.operators import (
    carry_state_dict,
    carry_tensor,
    expand_state_dict,
    expand_tensor,
    fresh_entries,
    new_entries,
    new_entry_count,
)


ALL = dict(hidden_size=64, intermediate_size=80, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)
EXPANSION_CASES = [
    # (id, source overrides, target sizes)
    ("depth 2->4", {}, {"num_hidden_layers": 4}),
    ("depth 2->3", {}, {"num_hidden_layers": 3}),
    ("width 32->64", {}, {"hidden_size": 64}),
    ("width 32->48 (1.5x)", {}, {"hidden_size": 48}),
    ("ffn 37->80", {}, {"intermediate_size": 80}),
    ("ffn 37->74", {}, {"intermediate_size": 74}),
    ("heads 4->8, gqa 2->4", {}, {"num_attention_heads": 8, "num_key_value_heads": 4}),
    ("heads 4->8, gqa 2->2 (bigger groups)", {}, {"num_attention_heads": 8, "num_key_value_heads": 2}),
    (
        "heads 4->8, kv 1->4 (smaller groups)",
        {"num_key_value_heads": 1},
        {"num_attention_heads": 8, "num_key_value_heads": 4},
    ),
    ("heads 4->8, mha (gqa off)", {"num_key_value_heads": 4}, {"num_attention_heads": 8, "num_key_value_heads": 8}),
    ("all at once", {}, ALL),
    ("all at once, tied", {"tie_word_embeddings": True}, ALL),
    ("all at once, biases", {"attention_bias": True, "mlp_bias": True}, ALL),
    ("width+depth 1.5x, tied", {"tie_word_embeddings": True}, {"hidden_size": 48, "num_hidden_layers": 3}),
]
METHODS = [
    "function_preserving",
    "fpi",
    "aki",
    "hypercloning",
    "hypercloning (noise)",
    "fpi (noise)",
    "function_preserving+interpolate",
    "function_preserving+stack",
    "aki+stack",
]
NOISE = 0.05


def _grow_sizes(src_cfg, sizes):
    return {**{k: getattr(src_cfg, k) for k in ALL}, **sizes}


def _integer_ratios(src_cfg, sizes) -> bool:
    full = _grow_sizes(src_cfg, sizes)
    return all(full[k] % getattr(src_cfg, k) == 0 for k in ALL if k != "num_hidden_layers")


def _grow(small, sizes, method: str, **kwargs):
    name, noise = method.split(" ")[0], NOISE if method.endswith("(noise)") else 0.0
    config = ProgressiveLlamaConfig.from_smaller(small.config, **sizes)
    return ProgressiveLlamaForCausalLM.from_smaller(small, config, method=name, seed=0, noise_std=noise, **kwargs)


def _cases(preserving_only: bool = False):
    """Every (case, method) row; hypercloning only where ratios are integers (its refusal of 1.5x is tested below)."""
    for case_id, overrides, sizes in EXPANSION_CASES:
        src_cfg = tiny_config(**overrides)
        for method in METHODS:
            if method.startswith("hypercloning") and not _integer_ratios(src_cfg, sizes):
                continue
            if preserving_only and not expected_preserving(method, src_cfg, sizes):
                continue
            yield pytest.param(overrides, sizes, method, id=f"{case_id} | {method}")


@pytest.mark.parametrize("overrides, sizes, method", list(_cases()))
def test_expansion_preserves_function_float32(overrides, sizes, method):
    small = tiny_model(**overrides)
    big = _grow(small, sizes, method)
    expected = expected_preserving(method, small.config, sizes)
    assert big.growth["plan"]["function_preserving"] is expected
    ids = torch.randint(0, small.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_small, out_big = small(ids, labels=ids), big(ids, labels=ids)
    if not expected:  # non-vacuity: operators that change the function must really change it
        assert (out_small.logits - out_big.logits).abs().max() > 1e-3
        return
    assert_logits_close(out_big.logits, out_small.logits, atol=1e-4, label=method)
    assert abs(out_big.loss.item() - out_small.loss.item()) <= 1e-5
    gen_small = small.generate(ids[:, :4], max_new_tokens=8, min_new_tokens=8, do_sample=False)
    gen_big = big.generate(ids[:, :4], max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(gen_small, gen_big)


@pytest.mark.parametrize("overrides, sizes, method", list(_cases(preserving_only=True)))
def test_expansion_preserves_function_float64(overrides, sizes, method):
    small = tiny_model(dtype=torch.float64, **overrides)
    with float64_rms_norm():
        big = _grow(small, sizes, method)
        ids = torch.randint(0, small.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert_logits_close(big(ids).logits, small(ids).logits, atol=1e-9, label=method)
    assert big.dtype == torch.float64


@pytest.mark.parametrize("overrides, sizes, method", list(_cases()))
def test_state_dict_has_exact_keys_and_shapes(overrides, sizes, method):
    small = tiny_model(**overrides)
    big = _grow(small, sizes, method, verify=False)
    reference = LlamaForCausalLM(big.config).state_dict()
    grown = big.state_dict()
    assert list(grown) == list(reference) or sorted(grown) == sorted(reference)
    assert {k: tuple(v.shape) for k, v in grown.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert big.config.head_dim == small.config.head_dim
    assert all(torch.isfinite(v).all() for v in grown.values())


@pytest.mark.parametrize("overrides, sizes, method", list(_cases()))
def test_new_entry_count_equals_the_mask_it_replaces(overrides, sizes, method):
    """growth.json's count of new entries, in closed form, against the mask itself (the oracle), on every tensor of
    every growth case (tied and untied, inserted and copied layers, fresh and copied units)."""
    src = tiny_config(**overrides)
    width, depth = parse_method(method.split(" ")[0])
    plan = GrowthPlan.from_configs(src, ProgressiveLlamaConfig.from_smaller(src, **sizes), f"{width}+{depth}", seed=0)
    counts = {key: new_entry_count(key, plan) for key in expected_keys(plan.dst)}
    assert counts == {key: int(new_entries(key, plan).sum()) for key in expected_keys(plan.dst)}
    assert any(counts.values()) or sizes == {}


def _train_steps(model, steps: int = 2, lr: float = 1e-2):
    """AdamW steps (no weight decay, so only gradients move weights) on a batch in which every token id appears at
    a position that predicts something (the last position of a row gets no gradient)."""
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(2)
    stream = torch.cat(
        [torch.randperm(vocab, generator=generator), torch.randint(0, vocab, (29,), generator=generator)]
    )
    rows = stream.view(-1, 32)
    ids = torch.cat([rows, torch.zeros(len(rows), 1, dtype=rows.dtype)], dim=1)  # (4, 33)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(ids, labels=ids).loss.backward()
        optimizer.step()
    return model


def stuck_new_entries(big, plan, before: dict, steps: int = 2) -> dict[str, int]:
    """Train `big` a few steps; {key: number of new entries that did not move} for tensors with stuck entries."""
    _train_steps(big, steps)
    after = big.state_dict()
    stuck = {}
    for key in expected_keys(plan.dst):
        mask = new_entries(key, plan)
        frozen = int(((after[key] == before[key]) & mask).sum())
        if frozen:
            stuck[key] = frozen
    return stuck


@pytest.mark.parametrize("overrides, sizes, method", list(_cases()))
def test_training_moves_every_new_entry(overrides, sizes, method):
    """No dead blocks: every new entry moves within two optimizer steps. Two, not one: in an exactly preserving
    growth the factor facing a zero-initialised one has zero gradient at step 1 (e.g. q_proj of a block whose o_proj
    is zero, gains over all-zero residual dims), and starts moving at step 2 once its partner has moved."""
    small = tiny_model(**overrides)
    big = _grow(small, sizes, method, verify=False)
    plan = _plan_for(small, sizes, method)
    assert sum(int(new_entries(k, plan).sum()) for k in expected_keys(plan.dst)) > 0
    before = {k: v.clone() for k, v in big.state_dict().items()}
    assert stuck_new_entries(big, plan, before) == {}


def _plan_for(small, sizes, method):
    config = ProgressiveLlamaConfig.from_smaller(small.config, **sizes)
    noise = NOISE if method.endswith("(noise)") else 0.0
    return GrowthPlan.from_configs(small.config, config, method.split(" ")[0], 0, noise)


def test_dead_block_is_detected():
    """Negative control for the test above: zero both the new FFN rows and their down_proj columns -> flagged."""
    small = tiny_model()
    sizes = {"intermediate_size": 80}
    big = _grow(small, sizes, "function_preserving", verify=False)
    plan = _plan_for(small, sizes, "function_preserving")
    with torch.no_grad():
        for layer in big.model.layers:
            layer.mlp.gate_proj.weight[37:] = 0
            layer.mlp.up_proj.weight[37:] = 0
    before = {k: v.clone() for k, v in big.state_dict().items()}
    stuck = stuck_new_entries(big, plan, before)
    assert "model.layers.0.mlp.up_proj.weight" in stuck and "model.layers.0.mlp.down_proj.weight" in stuck


def test_operators_do_not_mutate_input_and_are_deterministic():
    small = tiny_model(tie_word_embeddings=True)
    state = small.state_dict()
    snapshot = {k: v.clone() for k, v in state.items()}
    config = ProgressiveLlamaConfig.from_smaller(small.config, **ALL)
    for method in ("function_preserving", "fpi", "aki+stack", "hypercloning"):
        sizes = ALL if method != "hypercloning" else {**ALL, "intermediate_size": 74}
        cfg = ProgressiveLlamaConfig.from_smaller(small.config, **sizes) if method == "hypercloning" else config
        plan = GrowthPlan.from_configs(small.config, cfg, method, seed=3, noise_std=0.0)
        first, second = expand_state_dict(state, plan), expand_state_dict(state, plan)
        assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(torch.equal(state[k], snapshot[k]) for k in state)


def test_tensors_are_independent_of_order():
    """A tensor expanded alone (as streaming will) equals the same tensor from the whole state dict."""
    small = tiny_model()
    config = ProgressiveLlamaConfig.from_smaller(small.config, **ALL)
    plan = GrowthPlan.from_configs(small.config, config, "function_preserving", seed=5)
    state = small.state_dict()
    whole = expand_state_dict(state, plan)
    for key in reversed(expected_keys(plan.dst)):
        assert torch.equal(expand_tensor(key, state.__getitem__, plan), whole[key])


def test_seed_changes_new_weights_only():
    small = tiny_model()
    config = ProgressiveLlamaConfig.from_smaller(small.config, hidden_size=64)
    a = _grow(small, {"hidden_size": 64}, "function_preserving", verify=False).state_dict()
    b = ProgressiveLlamaForCausalLM.from_smaller(small, config, seed=1, verify=False).state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a[key][:, :32], b[key][:, :32]) and not torch.equal(a[key][:, 32:], b[key][:, 32:])


def test_hypercloning_rejects_1_5x():
    small = tiny_model()
    config = ProgressiveLlamaConfig.from_smaller(small.config, hidden_size=48)
    with pytest.raises(ExpansionError, match="hidden_size: hypercloning .* 1.5x"):
        ProgressiveLlamaForCausalLM.from_smaller(small, config, method="hypercloning")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_dtype_and_stays_close(dtype):
    small = tiny_model(dtype=dtype)
    big = _grow(small, ALL, "function_preserving", strict=True)
    assert big.dtype == dtype and all(p.dtype == dtype for p in big.parameters())
    assert big.growth["preservation"]["max_abs_logit_diff"] < 0.1


@require_gpu
@pytest.mark.parametrize("method", ["function_preserving", "fpi (noise)", "aki+stack", "hypercloning (noise)"])
def test_expansion_on_gpu_matches_cpu(method):
    small = tiny_model()
    sizes = {**ALL, "intermediate_size": 74}
    on_cpu = _grow(small, sizes, method).state_dict()
    on_gpu = _grow(small.cuda(), sizes, method).state_dict()
    for key, value in on_cpu.items():
        torch.testing.assert_close(on_gpu[key].cpu(), value, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sizes", [{"num_hidden_layers": 4}, {"intermediate_size": 80}, ALL], ids=str)
def test_grown_model_shares_no_storage_with_parent_or_itself(sizes):
    small = tiny_model()
    big = _grow(small, sizes, "function_preserving", verify=False)
    parent = {p.untyped_storage().data_ptr() for p in small.parameters()}
    grown = [p.untyped_storage().data_ptr() for p in big.parameters()]  # tied weights appear once in parameters()
    assert not parent & set(grown) and len(set(grown)) == len(grown)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    _train_steps(big, steps=1)
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())


def test_carry_tensor_scales_copied_moments_and_zeroes_fresh_entries():
    small = tiny_model()
    plan = _plan_for(small, ALL, "function_preserving")
    generator = torch.Generator().manual_seed(4)
    moments = {k: torch.rand(v.shape, generator=generator) + 0.5 for k, v in small.state_dict().items()}
    for key in expected_keys(plan.dst):
        carried, fresh = carry_tensor(key, moments.__getitem__, plan), fresh_entries(key, plan)
        assert carried.shape == fresh.shape and torch.all(carried[fresh] == 0) and torch.all(carried[~fresh] > 0)
    q = carry_tensor("model.layers.2.self_attn.q_proj.weight", moments.__getitem__, plan)
    source = moments["model.layers.1.self_attn.q_proj.weight"]  # layer 2 of the grown model is old layer 1
    assert torch.equal(q[:16, :32], source[:16, :32])  # old heads 0-1 keep their rows (group 0, slots 0-1), unsplit


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_carry_state_dict_covers_every_grown_parameter_through_the_models_plan(tied):
    small = tiny_model(tie_word_embeddings=tied)
    big = _grow(small, ALL, "fpi+identity")
    generator = torch.Generator().manual_seed(5)
    state = {
        name: {"step": torch.tensor(7.0), "exp_avg": torch.randn(p.shape, generator=generator), "exp_avg_sq": p.abs()}
        for name, p in small.named_parameters()
    }
    carried = carry_state_dict(state, big.growth_plan)  # the plan the model was grown with, not a rebuilt one
    inserted = {f".layers.{i}." for i, layer in enumerate(big.growth_plan.layers) if layer.inserted}
    kept = [name for name, _ in big.named_parameters() if not any(part in name for part in inserted)]
    assert sorted(carried) == sorted(kept)  # a tied lm_head: once, as the table; identity blocks start fresh
    for name in kept:
        assert carried[name]["exp_avg"].shape == big.get_parameter(name).shape and carried[name]["step"] == 7
        expected = carry_tensor(name, lambda k: state[k]["exp_avg"], big.growth_plan)
        assert torch.equal(carried[name]["exp_avg"], expected)
    frozen = {k: v for k, v in state.items() if "layers.0." not in k}  # layer 0 was frozen in the parent's stage
    assert not [name for name in carry_state_dict(frozen, big.growth_plan) if ".layers.0." in name]
