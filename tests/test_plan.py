"""Index maps and layer maps: what each operator copies from where (no tensors)."""

from collections import Counter

import pytest
from testing_utils import tiny_config

from hf_progressive import GrowthPlan, ProgressiveLlamaConfig
from hf_progressive.expansion.plan import FRESH, default_inserted_layers


def _plan(method="function_preserving", overrides=None, **sizes):
    small = tiny_config(**(overrides or {}))
    return GrowthPlan.from_configs(small, ProgressiveLlamaConfig.from_smaller(small, **sizes), method, seed=0)


def test_function_preserving_maps_are_identity_then_fresh():
    plan = _plan(hidden_size=48, intermediate_size=40)
    assert plan.maps["hidden"].sources == tuple(range(32)) + (FRESH,) * 16
    assert plan.maps["ffn"].sources == tuple(range(37)) + (FRESH,) * 3


@pytest.mark.parametrize("n_new", [40, 64, 80, 111])
def test_fpi_copies_are_balanced(n_new):
    counts = _plan("fpi", intermediate_size=n_new).maps["ffn"].counts
    assert max(counts) - min(counts) <= 1 and sum(counts) == n_new


def test_hypercloning_block_repeats():
    assert _plan("hypercloning", hidden_size=96).maps["hidden"].sources == tuple(range(32)) * 3


@pytest.mark.parametrize(
    "method, overrides, sizes",
    [
        ("function_preserving", {}, {"num_attention_heads": 8, "num_key_value_heads": 2}),
        ("function_preserving", {"num_key_value_heads": 1}, {"num_attention_heads": 8, "num_key_value_heads": 4}),
        ("fpi", {}, {"num_attention_heads": 8, "num_key_value_heads": 4}),
        ("fpi", {"num_key_value_heads": 1}, {"num_attention_heads": 12, "num_key_value_heads": 6, "hidden_size": 48}),
        ("hypercloning", {}, {"num_attention_heads": 8, "num_key_value_heads": 2}),
    ],
)
def test_head_maps_keep_every_query_head_with_its_kv_head(method, overrides, sizes):
    plan = _plan(method, overrides, **sizes)
    src, dst = plan.src, plan.dst
    group, new_group = (
        src.num_attention_heads // src.num_key_value_heads,
        dst.num_attention_heads // dst.num_key_value_heads,
    )
    q, kv = plan.maps["q"].sources, plan.maps["kv"].sources
    assert set(range(src.num_attention_heads)) <= set(q)  # every old head is seated
    for head, source in enumerate(q):
        if source != FRESH:
            assert kv[head // new_group] == source // group  # ... with a copy of its own kv head


def test_hypercloning_head_copies_are_uniform():
    counts = _plan("hypercloning", {"num_key_value_heads": 1}, num_attention_heads=8, num_key_value_heads=4).maps["q"]
    assert set(counts.counts) == {2}


@pytest.mark.parametrize(
    "n_old, n_new, expected", [(2, 4, [1, 3]), (4, 6, [2, 5]), (3, 4, [3]), (2, 7, [1, 2, 4, 5, 6])]
)
def test_default_inserted_layers_are_spread_evenly(n_old, n_new, expected):
    assert default_inserted_layers(n_old, n_new) == expected


def test_identity_depth_copies_the_layer_below():
    layers = _plan(num_hidden_layers=4).layers
    assert [(layer.source, layer.inserted) for layer in layers] == [(0, False), (0, True), (1, False), (1, True)]


def test_inserted_layer_at_the_bottom_copies_layer_zero():
    small = tiny_config()
    big = ProgressiveLlamaConfig.from_smaller(small, num_hidden_layers=3)
    layers = GrowthPlan.from_configs(small, big, inserted_layers=[0]).layers
    assert [(layer.source, layer.inserted) for layer in layers] == [(0, True), (0, False), (1, False)]


@pytest.mark.parametrize(
    "method, expected",
    [("interpolate", [0, 0, 0, 1, 1, 1]), ("stack", [0, 1, 0, 1, 0, 1])],
)
def test_interpolate_and_stack_layer_sources(method, expected):
    layers = _plan(method, num_hidden_layers=6).layers
    assert [layer.source for layer in layers] == expected
    assert Counter(layer.inserted for layer in layers) == Counter({True: 4, False: 2})


def test_aki_donor_is_next_layer_or_self_at_top():
    assert [layer.donor for layer in _plan("aki", num_hidden_layers=2, intermediate_size=40).layers] == [1, 1]
