"""ProgressiveLlamaConfig.from_smaller: size arithmetic and the errors for growth that cannot work (no forward
passes here)."""

import pytest
from testing_utils import tiny_config
from transformers import AutoConfig, GPT2Config, LlamaConfig

from hf_progressive import ExpansionError, GrowthPlan, ProgressiveLlamaConfig


def test_from_smaller_sets_sizes_and_keeps_head_dim():
    small = tiny_config()
    big = ProgressiveLlamaConfig.from_smaller(small, hidden_size=64, num_hidden_layers=4, intermediate_size=80)
    assert (big.hidden_size, big.num_hidden_layers, big.intermediate_size) == (64, 4, 80)
    assert big.head_dim == small.head_dim == 8  # 64 // 4 would be 16: RoPE must not change silently
    assert big.num_attention_heads == 4 and big.num_key_value_heads == 2
    assert big.model_type == "llama" and isinstance(big, LlamaConfig)
    assert big.rope_parameters == small.rope_parameters and big.vocab_size == small.vocab_size


def test_saved_config_is_vanilla(tmp_path):
    big = ProgressiveLlamaConfig.from_smaller(tiny_config(), hidden_size=64)
    big.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is LlamaConfig and loaded.hidden_size == 64 and loaded.head_dim == 8


BAD_SIZES = [
    # (id, source overrides, sizes, message fragment)
    ("shrink hidden", {}, {"hidden_size": 16}, "hidden_size=16 is smaller than the source's 32"),
    ("shrink ffn", {}, {"intermediate_size": 30}, "intermediate_size=30 is smaller"),
    ("shrink layers", {}, {"num_hidden_layers": 1}, "num_hidden_layers=1 is smaller"),
    ("shrink heads", {}, {"num_attention_heads": 2, "num_key_value_heads": 2}, "num_attention_heads=2 is smaller"),
    ("shrink kv heads", {}, {"num_key_value_heads": 1}, "num_key_value_heads=1 is smaller"),
    (
        "heads % kv",
        {},
        {"num_attention_heads": 6, "num_key_value_heads": 4, "hidden_size": 48},
        "num_attention_heads=6 is not a multiple of num_key_value_heads=4",
    ),
    (
        "hidden % heads",
        {},
        {"hidden_size": 36, "num_attention_heads": 8, "num_key_value_heads": 4},
        "hidden_size=36 is not a multiple of num_attention_heads=8",
    ),
    (
        "kv groups cannot be seated",
        {"num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 36},
        {"num_attention_heads": 10, "num_key_value_heads": 5, "hidden_size": 40},
        "need 6 groups of 2",
    ),
    ("not an int", {}, {"hidden_size": 64.0}, "hidden_size=64.0: must be a positive integer"),
]


@pytest.mark.parametrize("overrides, sizes, fragment", [pytest.param(*row[1:], id=row[0]) for row in BAD_SIZES])
def test_bad_sizes_raise_clear_errors(overrides, sizes, fragment):
    with pytest.raises(ExpansionError, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        ProgressiveLlamaConfig.from_smaller(tiny_config(**overrides), **sizes)


def test_non_llama_config_is_rejected():
    with pytest.raises(ExpansionError, match="model_type=.gpt2.: hf_progressive grows llama, mistral, qwen2, qwen3"):
        ProgressiveLlamaConfig.from_smaller(GPT2Config(n_embd=32, n_layer=2, n_head=4), hidden_size=64)


BAD_PLANS = [
    ("unknown method", {"method": "magic"}, "unknown operator 'magic'"),
    ("three parts", {"method": "fpi+identity+stack"}, "expected 'WIDTH', 'DEPTH' or 'WIDTH\\+DEPTH'"),
    ("noise on function_preserving", {"noise_std": 0.1}, "only copy-based width operators"),
    ("negative noise", {"method": "fpi", "noise_std": -1.0}, "noise_std=-1.0: use a finite number >= 0"),
    ("infinite noise", {"method": "fpi", "noise_std": float("inf")}, "noise_std=inf: use a finite number >= 0"),
    ("nan noise", {"method": "fpi", "noise_std": float("nan")}, "noise_std=nan: use a finite number >= 0"),
    ("inserted_layers count", {"inserted_layers": [1]}, "give 2 distinct positions in \\[0, 4\\)"),
    ("inserted_layers range", {"inserted_layers": [1, 4]}, "give 2 distinct positions"),
    ("inserted_layers with stack", {"method": "stack", "inserted_layers": [1, 3]}, "only the 'identity' depth"),
]


@pytest.mark.parametrize("options, fragment", [pytest.param(*row[1:], id=row[0]) for row in BAD_PLANS])
def test_bad_plans_raise_clear_errors(options, fragment):
    small = tiny_config()
    big = ProgressiveLlamaConfig.from_smaller(small, num_hidden_layers=4, hidden_size=64)
    with pytest.raises(ExpansionError, match=fragment):
        GrowthPlan.from_configs(small, big, **options)


def test_target_with_changed_fixed_field_is_rejected():
    small = tiny_config()
    big = ProgressiveLlamaConfig.from_smaller(small, hidden_size=64)
    big.vocab_size = 128
    with pytest.raises(ExpansionError, match="vocab_size: the target has 128 but the source has 99"):
        GrowthPlan.from_configs(small, big)


def test_function_preserving_width_scales_rms_norm_eps():
    small = tiny_config(rms_norm_eps=1e-5)
    plan = GrowthPlan.from_configs(small, ProgressiveLlamaConfig.from_smaller(small, hidden_size=80))
    assert plan.norm_ratio == pytest.approx(32 / 80) and plan.dst.rms_norm_eps == pytest.approx(1e-5 * 32 / 80)
    copied = GrowthPlan.from_configs(small, ProgressiveLlamaConfig.from_smaller(small, hidden_size=64), "hypercloning")
    assert copied.dst.rms_norm_eps == pytest.approx(1e-5)
