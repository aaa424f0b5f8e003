"""Facts about Llama weights, kept as data: the Hugging Face key templates, the axes every tensor grows along (and in
which role), which tensors write into the residual stream, and which keys are tied. This is the only file that spells
Hugging Face weight names; every operator reads these facts instead of testing names."""

from dataclasses import dataclass


# Axis names (units the model is made of): "hidden" (hidden_size), "ffn" (intermediate_size), "q" (query heads),
# "kv" (key/value heads), "vocab" (vocab_size, never grows).
# Roles: "out" = the tensor *produces* this axis (rows are units: copy them), "in" = the tensor *sums over* it
# (fan-in: copies share the weight), "gain" = an RMSNorm gain over the hidden axis, "fixed" = never grows.


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor is laid out: `axes` holds one `(axis, role)` pair per dimension."""

    axes: tuple[tuple[str, str], ...]
    writes_residual: bool = False  # zeroed in inserted identity blocks (LLaMA Pro) and residual rows start at zero
    optional: str | None = None  # config flag that must be true for the tensor to exist

    @property
    def is_bias(self) -> bool:
        return len(self.axes) == 1 and self.axes[0][1] == "out"


LAYER_PREFIX = "model.layers.{}."

LAYER_TENSORS: dict[str, TensorSpec] = {
    "input_layernorm.weight": TensorSpec((("hidden", "gain"),)),
    "self_attn.q_proj.weight": TensorSpec((("q", "out"), ("hidden", "in"))),
    "self_attn.q_proj.bias": TensorSpec((("q", "out"),), optional="attention_bias"),
    "self_attn.k_proj.weight": TensorSpec((("kv", "out"), ("hidden", "in"))),
    "self_attn.k_proj.bias": TensorSpec((("kv", "out"),), optional="attention_bias"),
    "self_attn.v_proj.weight": TensorSpec((("kv", "out"), ("hidden", "in"))),
    "self_attn.v_proj.bias": TensorSpec((("kv", "out"),), optional="attention_bias"),
    "self_attn.o_proj.weight": TensorSpec((("hidden", "out"), ("q", "in")), writes_residual=True),
    "self_attn.o_proj.bias": TensorSpec((("hidden", "out"),), writes_residual=True, optional="attention_bias"),
    "post_attention_layernorm.weight": TensorSpec((("hidden", "gain"),)),
    "mlp.gate_proj.weight": TensorSpec((("ffn", "out"), ("hidden", "in"))),
    "mlp.gate_proj.bias": TensorSpec((("ffn", "out"),), optional="mlp_bias"),
    "mlp.up_proj.weight": TensorSpec((("ffn", "out"), ("hidden", "in"))),
    "mlp.up_proj.bias": TensorSpec((("ffn", "out"),), optional="mlp_bias"),
    "mlp.down_proj.weight": TensorSpec((("hidden", "out"), ("ffn", "in")), writes_residual=True),
    "mlp.down_proj.bias": TensorSpec((("hidden", "out"),), writes_residual=True, optional="mlp_bias"),
}

GLOBAL_TENSORS: dict[str, TensorSpec] = {
    "model.embed_tokens.weight": TensorSpec((("vocab", "fixed"), ("hidden", "out")), writes_residual=True),
    "model.norm.weight": TensorSpec((("hidden", "gain"),)),
    "lm_head.weight": TensorSpec((("vocab", "fixed"), ("hidden", "in"))),
}

# key -> the key it shares storage with when `tie_word_embeddings` is true
TIED_KEYS: dict[str, str] = {"lm_head.weight": "model.embed_tokens.weight"}


def storage_key(key: str, config) -> str:
    """The key whose tensor holds `key`'s values in a model of `config`: with `tie_word_embeddings`, `lm_head.weight`
    is stored as (and grows as) the input embedding; every other key is its own storage."""
    return TIED_KEYS[key] if key in TIED_KEYS and getattr(config, "tie_word_embeddings", False) else key


def tied_keys(config) -> dict[str, str]:
    """`{alias: storage key}` for the keys a model of `config` ties (empty when nothing is tied)."""
    return {key: storage_key(key, config) for key in TIED_KEYS if storage_key(key, config) != key}


# files copied verbatim from a source checkpoint into an expanded one (tokenizer and friends)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)


def layer_key(layer: int, suffix: str) -> str:
    """`layer_key(3, "mlp.up_proj.weight")` -> `"model.layers.3.mlp.up_proj.weight"`."""
    return LAYER_PREFIX.format(layer) + suffix


def split_layer_key(key: str) -> tuple[int | None, str]:
    """Inverse of `layer_key`: `(layer index, suffix)`, or `(None, key)` for tensors outside the layers."""
    head = LAYER_PREFIX.split("{}")[0]
    if not key.startswith(head):
        return None, key
    index, _, suffix = key[len(head) :].partition(".")
    return int(index), suffix


def tensor_spec(key: str) -> TensorSpec:
    """The layout facts of `key`; raises `KeyError` naming the key for tensors a Llama does not have."""
    layer, suffix = split_layer_key(key)
    table = GLOBAL_TENSORS if layer is None else LAYER_TENSORS
    if suffix not in table:
        raise KeyError(f"{key!r} is not a Llama tensor hf_progressive knows how to grow")
    return table[suffix]


def expected_keys(config) -> list[str]:
    """Every key of `LlamaForCausalLM(config).state_dict()`, in model order (tied `lm_head.weight` included)."""

    def present(spec: TensorSpec) -> bool:
        return spec.optional is None or bool(getattr(config, spec.optional, False))

    keys = ["model.embed_tokens.weight"]
    for layer in range(config.num_hidden_layers):
        keys += [layer_key(layer, suffix) for suffix, spec in LAYER_TENSORS.items() if present(spec)]
    return keys + ["model.norm.weight", "lm_head.weight"]


def expected_shape(key: str, config) -> tuple[int, ...]:
    """The shape `key` has in a model of `config` (from its axes: units x rows per unit, the vocabulary fixed)."""
    sizes, head_dim = axis_sizes(config), config.head_dim
    return tuple(
        config.vocab_size if axis == "vocab" else sizes[axis] * rows_per_unit(axis, head_dim)
        for axis, _ in tensor_spec(key).axes
    )


# buffers older transformers versions saved with the weights; rebuilt from the config, so dropped on load
IGNORED_TENSORS = (".rotary_emb.inv_freq",)


def axis_sizes(config) -> dict[str, int]:
    """Number of units along each axis (heads count heads, not rows)."""
    return {
        "hidden": config.hidden_size,
        "ffn": config.intermediate_size,
        "q": config.num_attention_heads,
        "kv": config.num_key_value_heads,
    }


# rows per unit along each axis: a head is `head_dim` rows, everything else one
def rows_per_unit(axis: str, head_dim: int) -> int:
    return head_dim if axis in ("q", "kv") else 1


__all__ = [
    "GLOBAL_TENSORS",
    "LAYER_TENSORS",
    "TIED_KEYS",
    "TOKENIZER_FILES",
    "TensorSpec",
    "axis_sizes",
    "IGNORED_TENSORS",
    "expected_keys",
    "expected_shape",
    "layer_key",
    "rows_per_unit",
    "split_layer_key",
    "storage_key",
    "tensor_spec",
    "tied_keys",
]
