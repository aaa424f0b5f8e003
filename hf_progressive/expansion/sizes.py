"""The size arithmetic of a growth, on configs alone: which sizes grow (`SIZE_FIELDS`), whether a config can grow into
given sizes (`validate_growth`: never shrink, whole kv groups, head_dim fixed), the grown config itself
(`grown_config`), and a Llama's parameter counts. No tensors."""

from ..errors import ExpansionError


SIZE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def _check_llama(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type != "llama":
        raise ExpansionError(
            f"model_type={model_type!r}: hf_progressive grows Llama models only (model_type 'llama', "
            "LlamaForCausalLM); convert the checkpoint to the Llama layout first."
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
    _check_llama(config)
    sizes = _sizes(sizes)
    for name, value in sizes.items():
        old = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExpansionError(f"{name}={value!r}: must be a positive integer (the source has {old}).")
        if value < old:
            raise ExpansionError(
                f"{name}={value} is smaller than the source's {old}: growth cannot shrink a model; "
                f"pass {name} >= {old}."
            )
    heads, kv_heads, hidden = sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes["hidden_size"]
    if heads % kv_heads:
        raise ExpansionError(
            f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}: every key/value head "
            f"serves a whole group of query heads. Pick num_key_value_heads among {_divisors(heads)}."
        )
    if hidden % heads:
        raise ExpansionError(
            f"hidden_size={hidden} is not a multiple of num_attention_heads={heads} (LlamaConfig requires it; "
            f"head_dim stays {config.head_dim}). Use a hidden_size that is a multiple of {heads}, e.g. "
            f"{-(-hidden // heads) * heads}."
        )
    _check_group_seating(config, heads, kv_heads)


def _check_group_seating(config, heads: int, kv_heads: int) -> None:
    """Every old kv group must fit in whole new kv groups, or its query heads would attend with other keys."""
    group, new_group = config.num_attention_heads // config.num_key_value_heads, heads // kv_heads
    needed = config.num_key_value_heads * -(-group // new_group)
    if needed > kv_heads:
        raise ExpansionError(
            f"num_key_value_heads={kv_heads}: the source's {config.num_key_value_heads} kv groups of {group} query "
            f"heads need {needed} groups of {new_group} to keep every query head with its keys and values. Use "
            f"num_key_value_heads >= {needed}, or keep query heads per group >= {group}."
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def grown_config(config, cls=None, **sizes):
    """`config` grown to `sizes` (config field names; `None` keeps a size), as `cls` (default: the config's own class).
    `head_dim` is written explicitly and never changes, so widening cannot silently change RoPE."""
    _check_llama(config)
    sizes = {name: getattr(config, name) if sizes.get(name) is None else sizes[name] for name in SIZE_FIELDS}
    validate_growth(config, sizes)
    values = {k: v for k, v in config.to_dict().items() if k not in ("architectures", "transformers_version")}
    return (cls or type(config)).from_dict({**values, **sizes, "head_dim": config.head_dim})


def parameter_counts(config) -> dict[str, int]:
    """`total` (as `model.num_parameters()`), `non_embedding` (minus the embedding table(s)) and `matmul`."""
    d, ffn, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    attn = d * q * 2 + d * kv * 2 + (q + 2 * kv + d if config.attention_bias else 0)
    mlp = 3 * d * ffn + (2 * ffn + d if config.mlp_bias else 0)
    per_layer = attn + mlp + 2 * d
    embeddings = vocab * d * (1 if config.tie_word_embeddings else 2)
    non_embedding = layers * per_layer + d
    return {
        "total": non_embedding + embeddings,
        "non_embedding": non_embedding,
        "matmul": non_embedding + vocab * d,  # the output head is a matmul; the input lookup is not
    }


__all__ = ["SIZE_FIELDS", "grown_config", "parameter_counts", "validate_growth"]
