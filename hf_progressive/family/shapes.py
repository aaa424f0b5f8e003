"""Member shapes: the config (of the recipe's architecture) of every member of a recipe (explicit sizes, sizes carried
from the previous member, or a target parameter count solved into a shape that keeps the previous member's
proportions), each validated as a growth of the previous one; in a family started from a checkpoint (`from:`), that
checkpoint's config and growths of it."""

from ..errors import ExpansionError, RecipeError
from ..expansion.sizes import SIZE_FIELDS


def base_config(recipe, sizes: dict):
    """The config of a member with `sizes` under the recipe's shared settings, as its architecture's config class."""
    from ..expansion.architectures import ARCHITECTURES

    fields = {
        "vocab_size": recipe.vocab_size,
        "head_dim": recipe.head_dim,
        "tie_word_embeddings": recipe.tie_word_embeddings,
        "max_position_embeddings": recipe.seq_len,
        **recipe.model,
        **sizes,
    }
    try:
        return ARCHITECTURES[recipe.architecture].config_class()(**fields)
    except Exception as error:  # the config class's own validation
        raise RecipeError(f"model settings {sizes}: {str(error).splitlines()[-1].strip()}") from None


def member_config(recipe, k: int, sizes: dict, previous):
    """Member k's config: the recipe's shared settings, or, in a family started from a checkpoint (`from:`), that
    checkpoint's own config and growths of it (so RoPE, norms and vocabulary follow the pretrained member)."""
    if recipe.members[0].pretrained:
        from .pretrained import pretrained_member_config

        return pretrained_member_config(recipe, k, sizes, previous)
    return base_config(recipe, sizes)


def member_configs(recipe) -> list:
    """One config per member (explicit sizes, missing ones taken from the previous member, or `params` solved
    into a shape), each validated as a growth of the previous one."""
    from ..expansion.sizes import parameter_counts, validate_growth

    configs = []
    for k, member in enumerate(recipe.members):
        previous = configs[-1] if configs else None
        sizes = {key: getattr(member, key) for key in SIZE_FIELDS if getattr(member, key) is not None}
        if member.params is not None:
            sizes = {**solve_shape(recipe, member.params, previous), **sizes}
        elif previous is not None:
            sizes = {**{key: getattr(previous, key) for key in SIZE_FIELDS}, **sizes}
        if k == 0 and member.pretrained:
            from .pretrained import pretrained_sizes

            sizes = pretrained_sizes(recipe)
        sizes.setdefault("head_dim", previous.head_dim if previous is not None else recipe.head_dim)
        missing = [key for key in SIZE_FIELDS if key not in sizes]
        if missing:
            raise RecipeError(f"members[{k}]: missing {', '.join(missing)}; give every size or `params`.")
        config = member_config(recipe, k, sizes, previous)
        if previous is not None:
            try:
                validate_growth(previous, sizes)
            except ExpansionError as error:
                raise RecipeError(f"members[{k}]: {error}") from None
            if parameter_counts(config)["total"] <= parameter_counts(previous)["total"]:
                raise RecipeError(f"members[{k}]: same sizes as members[{k - 1}]; every member must be larger.")
        configs.append(config)
    return configs


def solve_shape(recipe, target: float, previous=None) -> dict:
    """Sizes whose parameter count is closest to `target`, keeping the previous member's proportions (hidden per
    layer, FFN ratio, query heads per kv head) and never shrinking it; one dial, as nanochat's depth."""
    from ..expansion.sizes import parameter_counts

    aspect = previous.hidden_size / previous.num_hidden_layers if previous else 64.0
    ffn_ratio = previous.intermediate_size / previous.hidden_size if previous else 8 / 3
    group = previous.num_attention_heads // previous.num_key_value_heads if previous else 1
    floor = {key: getattr(previous, key) if previous else 1 for key in SIZE_FIELDS}
    best, best_gap = None, float("inf")
    for layers in range(floor["num_hidden_layers"], 512):
        heads = max(floor["num_attention_heads"], round(aspect * layers / recipe.head_dim))
        heads = -(-heads // group) * group
        hidden = max(floor["hidden_size"], heads * recipe.head_dim)
        sizes = {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(floor["num_key_value_heads"], heads // group),
            "intermediate_size": max(floor["intermediate_size"], round(ffn_ratio * hidden / 8) * 8),
        }
        count = parameter_counts(base_config(recipe, sizes))["total"]
        gap = abs(count - target)
        if gap < best_gap:
            best, best_gap = sizes, gap
        if count > 2 * target:
            break
    return best


__all__ = ["base_config", "member_config", "member_configs", "solve_shape"]
