"""Weight naming rules shared by every architecture of `architectures.py`: the key templates (`model.layers.{i}.`),
which keys are tied, which tensors a config's model has (`expected_keys`) and their shapes (`expected_shape`). With
`architectures.py`, this is the only place that spells Hugging Face weight names; operators read these facts instead
of testing names."""

from .architectures import GLOBAL_TENSORS, TensorSpec, architecture


LAYER_PREFIX = "model.layers.{}."

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


def tensor_spec(key: str, config) -> TensorSpec:
    """The layout facts of `key` in a model of `config`; raises `KeyError` naming the key for a tensor that model does
    not have."""
    layer, suffix = split_layer_key(key)
    arch = architecture(config)
    table = arch.global_tensors if layer is None else arch.layer_tensors
    if suffix not in table:
        raise KeyError(f"{key!r} is not a {arch.model_type} tensor hf_progressive knows how to grow")
    return table[suffix]


def expected_keys(config) -> list[str]:
    """Every key of `{Arch}ForCausalLM(config).state_dict()`, in model order (tied `lm_head.weight` included)."""
    keys = ["model.embed_tokens.weight"]
    for layer in range(config.num_hidden_layers):
        keys += layer_keys(config, layer)
    return keys + ["model.norm.weight", "lm_head.weight"]


def layer_keys(config, layer: int) -> list[str]:
    """The keys of decoder layer `layer` in a model of `config` (optional tensors only where the config has them)."""
    return [
        layer_key(layer, suffix)
        for suffix, spec in architecture(config).layer_tensors.items()
        if spec.optional is None or bool(getattr(config, spec.optional, False))
    ]


def expected_shape(key: str, config) -> tuple[int, ...]:
    """The shape `key` has in a model of `config` (from its axes: units x rows per unit, the vocabulary fixed)."""
    sizes, head_dim = axis_sizes(config), config.head_dim
    return tuple(
        config.vocab_size if axis == "vocab" else sizes[axis] * rows_per_unit(axis, head_dim)
        for axis, _ in tensor_spec(key, config).axes
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
        "head_dim": config.head_dim,
    }


# rows per unit along each axis: a head is `head_dim` rows, everything else one
def rows_per_unit(axis: str, head_dim: int) -> int:
    return head_dim if axis in ("q", "kv") else 1


__all__ = [
    "GLOBAL_TENSORS",
    "TIED_KEYS",
    "TOKENIZER_FILES",
    "TensorSpec",
    "axis_sizes",
    "IGNORED_TENSORS",
    "expected_keys",
    "expected_shape",
    "layer_key",
    "layer_keys",
    "rows_per_unit",
    "split_layer_key",
    "storage_key",
    "tensor_spec",
    "tied_keys",
]
