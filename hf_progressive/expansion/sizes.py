"""The size arithmetic of a growth, on configs alone: which sizes grow (`SIZE_FIELDS`), whether a config can grow into
given sizes (`validate_growth`: never shrink, whole kv groups, an even head_dim), the grown config itself
(`grown_config`), and parameter counts read off the architecture's tensor shapes. No tensors."""

import math

from ..errors import ExpansionError
from .architectures import GLOBAL_TENSORS, architecture
from .keys import expected_shape, layer_keys, storage_key, tensor_spec


SIZE_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)


def _sizes(values: dict) -> dict:
    """Accept both config field names and the axis names of `keys.axis_sizes`."""
    aliases = {
        "hidden": "hidden_size",
        "ffn": "intermediate_size",
        "q": "num_attention_heads",
        "kv": "num_key_value_heads",
    }
    return {aliases.get(name, name): value for name, value in values.items()}


def validate_growth(config, sizes: dict) -> None:
    """Raise `ExpansionError` unless `config` can grow into `sizes` (config field names -> values)."""
    architecture(config)
    sizes = _sizes(sizes)
    sizes.setdefault("head_dim", config.head_dim)  # checked last: a size the caller named is reported first
    for name, value in sizes.items():
        old = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExpansionError(f"{name}={value!r}: must be a positive integer (the source has {old}).")
        if value < old:
            raise ExpansionError(f"{name}={value} is smaller than the source's {old}: {_shrink_rule(name, config)}.")
    if sizes["head_dim"] % 2:
        raise ExpansionError(
            f"head_dim={sizes['head_dim']} is odd: RoPE rotates dimensions in pairs, so head_dim must be even."
        )
    heads, kv_heads, hidden = sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes["hidden_size"]
    if heads % kv_heads:
        raise ExpansionError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads} (head_dim "
            f"{sizes['head_dim']}): every key/value head serves a whole group of query heads. Pick "
            f"num_key_value_heads among {_divisors(heads)}."
        )
    if hidden % heads:
        raise ExpansionError(
            f"hidden_size={hidden} is not a multiple of num_attention_heads={heads} (with head_dim "
            f"{sizes['head_dim']}; hf_progressive keeps the usual layout of whole heads per hidden block). Use a "
            f"hidden_size that is a multiple of {heads}, e.g. {-(-hidden // heads) * heads}."
        )
    _check_group_seating(config, heads, kv_heads)


def _shrink_rule(name: str, config) -> str:
    """Why a size cannot shrink, and the fix; head counts name head_dim, the other way a head layout grows."""
    old = getattr(config, name)
    if name in ("num_attention_heads", "num_key_value_heads"):
        return (
            f"growth keeps every head (head_dim {config.head_dim}); heads grow in number or in head_dim, and are "
            f"never merged, so pass {name} >= {old}, with head_dim >= {config.head_dim} if the heads should also widen"
        )
    if name == "head_dim":
        return f"growth keeps every dimension of a head; pass head_dim >= {old} (an even number)"
    return f"growth cannot shrink a model; pass {name} >= {old}"


def _check_group_seating(config, heads: int, kv_heads: int) -> None:
    """Every old kv group must fit in whole new kv groups, or its query heads would attend with other keys."""
    group, new_group = config.num_attention_heads // config.num_key_value_heads, heads // kv_heads
    needed = config.num_key_value_heads * -(-group // new_group)
    if needed > kv_heads:
        raise ExpansionError(
            f"num_key_value_heads={kv_heads}: the source's {config.num_key_value_heads} kv groups of {group} query "
            f"heads (head_dim {config.head_dim}) need {needed} groups of {new_group} to keep every query head with "
            f"its keys and values. Use num_key_value_heads >= {needed}, or keep query heads per group >= {group}."
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def grown_config(config, cls=None, **sizes):
    """`config` grown to `sizes` (config field names; `None` keeps a size), as `cls` (default: the config's own class).
    `head_dim` is written explicitly, so widening cannot silently change RoPE. Per-layer `layer_types` grow with the
    depth when every layer has the same type (otherwise a depth growth is refused: which type would a new layer
    take?)."""
    architecture(config)
    sizes = {name: getattr(config, name) if sizes.get(name) is None else sizes[name] for name in SIZE_FIELDS}
    validate_growth(config, sizes)
    values = {k: v for k, v in config.to_dict().items() if k not in ("architectures", "transformers_version")}
    if values.get("layer_types") is not None:
        values["layer_types"] = _grown_layer_types(list(values["layer_types"]), sizes["num_hidden_layers"])
    return (cls or type(config)).from_dict({**values, **sizes})


def _grown_layer_types(layer_types: list[str], layers: int) -> list[str]:
    if len(layer_types) == layers:
        return layer_types
    if len(set(layer_types)) > 1:
        raise ExpansionError(
            f"num_hidden_layers={layers}: the source mixes attention types per layer ({sorted(set(layer_types))}); "
            "a depth growth cannot tell which type a new layer takes. Grow the width only, or set one type for all."
        )
    return layer_types[:1] * layers


def parameter_counts(config) -> dict[str, int]:
    """`total` (as `model.num_parameters()`), `non_embedding` (minus the embedding table(s)) and `matmul`: the weights
    a token is multiplied by (every tensor that sums over an input axis, the output head included even when tied;
    not the input lookup, norm gains or biases), summed over the architecture's tensor shapes. Every layer has the
    same tensors, so one layer is counted and multiplied (shape solving calls this for hundreds of candidates)."""
    one_layer = layer_keys(config, 0)
    keys = [*one_layer, *GLOBAL_TENSORS]
    times = {key: config.num_hidden_layers if key in one_layer else 1 for key in keys}
    sizes = {key: math.prod(expected_shape(key, config)) * times[key] for key in keys}
    stored = [key for key in keys if storage_key(key, config) == key]  # a tied output head is not a parameter
    embeddings = sum(sizes[key] for key in stored if key in ("model.embed_tokens.weight", "lm_head.weight"))
    total = sum(sizes[key] for key in stored)
    matmul = sum(n for key, n in sizes.items() if any(role == "in" for _, role in tensor_spec(key, config).axes))
    return {"total": total, "non_embedding": total - embeddings, "matmul": matmul}


__all__ = ["SIZE_FIELDS", "grown_config", "parameter_counts", "validate_growth"]
