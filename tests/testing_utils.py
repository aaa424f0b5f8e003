"""Shared test helpers: tiny configs and models, randomize_, float64-exact RMSNorm, assert_logits_close, markers."""

import contextlib
import importlib

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama


TINY = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,  # odd on purpose, to catch shape bugs
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    attn_implementation="sdpa",  # computes softmax in the input dtype, so float64 runs are float64 throughout
)

require_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_config(**overrides) -> LlamaConfig:
    return LlamaConfig(**{**TINY, **overrides})


def randomize_(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Perturb every parameter (norm gains included) so that ones and zeros cannot hide a bug."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            param.add_((noise * scale).to(param.dtype))
    return model


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return randomize_(LlamaForCausalLM(tiny_config(**overrides)), seed).to(dtype).eval()


def _exact_rms_norm(self, hidden_states):
    """LlamaRMSNorm without the float32 round trip (only for float64 inputs)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@contextlib.contextmanager
def float64_rms_norm():
    """Every supported architecture's RMSNorm upcasts to float32, which caps any float64 comparison at ~1e-7. Inside
    this context, float64 inputs are normalised in float64 (other dtypes are untouched), so exactness can be tested
    to 1e-9."""
    classes = [modeling_llama.LlamaRMSNorm]
    for model_type, prefix in (("mistral", "Mistral"), ("qwen2", "Qwen2"), ("qwen3", "Qwen3")):
        module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
        classes.append(getattr(module, f"{prefix}RMSNorm"))
    originals = {cls: cls.forward for cls in classes}

    def patched(original):
        def forward(self, hidden_states):
            if hidden_states.dtype == torch.float64:
                return _exact_rms_norm(self, hidden_states)
            return original(self, hidden_states)

        return forward

    for cls, original in originals.items():
        cls.forward = patched(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.forward = original


SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
BIG = {
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "num_key_value_heads": 3,
}
STEPS = 4


def tiny_recipe(tmp_path, method="function_preserving+identity", **changes):
    """A 2-member recipe small enough for a few CPU steps (BPE of 512 trained on 200k characters), written to
    `tmp_path` and loaded."""
    import json

    import yaml

    from hf_progressive.family.recipe import load_recipe

    data = tiny_recipe_data(method, **changes)
    path = tmp_path / f"recipe-{abs(hash(json.dumps(data, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


def tiny_recipe_data(method="function_preserving+identity", **changes) -> dict:
    data = {
        "name": "test",
        "vocab_size": 512,
        "seq_len": 32,
        "batch_size": 4,
        "head_dim": 16,
        "tokens_per_param": 1.0,
        "logging_steps": 1,
        "save_steps": 2,
        "eval_steps": 2,
        "tokenizer": {"train_bpe": True, "bpe_training_chars": 200_000},
        "data": {"validation_blocks": 4},
        "lr": {"warmup_ratio": 0.0},
        "members": [SMALL, {**BIG, "method": method}],
        **changes,
    }
    return data


def expected_preserving(method: str, src, sizes: dict) -> bool:
    """Independent of the operators: whether growing config `src` to `sizes` with `method` ("WIDTH+DEPTH", maybe with
    a " (noise)" suffix) must keep the function exactly. Depth copies other than identity blocks change it, AKI's
    units from the next layer change it, and copy-based widening needs an integer hidden ratio."""
    from hf_progressive.expansion.methods import parse_method

    width, depth = parse_method(method.split(" ")[0])

    def new(name: str) -> int:
        return sizes.get(name, getattr(src, name))

    if depth != "identity" and new("num_hidden_layers") != src.num_hidden_layers:
        return False
    per_layer = ("intermediate_size", "num_attention_heads", "num_key_value_heads")
    if width == "aki" and any(new(name) != getattr(src, name) for name in per_layer):
        return False
    return width not in ("fpi", "aki") or new("hidden_size") % src.hidden_size == 0


def gradients(model, ids) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of the next-token loss on `ids` (training mode, from zero)."""
    model.zero_grad()
    model.train()
    model(ids, labels=ids).loss.backward()
    return {name: param.grad.clone() for name, param in model.named_parameters()}


def carried_and_true(small, grow, ids):
    """The carry's oracle: AdamW moments made from `small`'s gradient on `ids` (exp_avg g, exp_avg_sq g², step 5),
    carried through the plan of `big = grow(small)`, and `big`'s own gradient on `ids`: (big, carried, true)."""
    from hf_progressive.expansion.operators import carry_state_dict

    grads = gradients(small, ids)
    state = {name: {"step": torch.tensor(5.0), "exp_avg": g, "exp_avg_sq": g * g} for name, g in grads.items()}
    big = grow(small)
    return big, carry_state_dict(state, big.growth_plan), gradients(big, ids)


def assert_logits_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, label: str = "") -> None:
    """Fail with the max and mean |difference| when logits differ by more than `atol`."""
    diff = (actual.double() - expected.double()).abs()
    assert diff.max().item() <= atol, (
        f"{label}: max |delta logits| {diff.max().item():.3g} > {atol:g} (mean {diff.mean().item():.3g})"
    )


def copy_checkpoint(src, dst):
    """A copy of checkpoint folder `src` at `dst` (flat: config, weights, tokenizer files)."""
    dst.mkdir(parents=True)
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    return dst


def missing_weights(tmp_path, src):
    """A copy of `src` without its model.safetensors."""
    path = copy_checkpoint(src, tmp_path / "missing")
    (path / "model.safetensors").unlink()
    return path


def truncated_weights(tmp_path, src):
    """A copy of `src` whose model.safetensors lost its second half."""
    path = copy_checkpoint(src, tmp_path / "truncated")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    return path


def gpt2_checkpoint(tmp_path, _src=None):
    """A tiny GPT-2 checkpoint folder: a real Hugging Face model that is not a Llama."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=99, n_positions=64)).save_pretrained(path)
    return path


def remote_code_checkpoint(tmp_path, src):
    """A copy of `src` whose config.json asks for remote code (auto_map)."""
    import json

    path = copy_checkpoint(src, tmp_path / "remote")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "evil.Model"}}))
    return path
