"""A family whose first member is an existing Llama checkpoint (`members[0].from: PATH_OR_HUB_ID`): SmolLM2, TinyLlama
or Llama-3.2-1B are Llamas. Its shape and every fixed setting (vocabulary, head_dim, RoPE, norms, tying) come from its
config, later members are growths of it, its tokenizer is the family's, and it trains only on the budget the recipe
gives it (`members[0].tokens_per_param`; none by default), so the ledger counts no FLOPs it did not spend."""

from functools import cache

from .errors import RecipeError
from .shapes import SIZE_KEYS


@cache
def _checkpoint(source: str) -> tuple:
    """`(local folder, LlamaConfig)` of `source`; one-line errors for a non-Llama, remote code or a missing folder."""
    from .checkpoint import read_config, resolve_source

    folder = resolve_source(source)
    return str(folder), read_config(folder)


def pretrained_sizes(recipe) -> dict:
    """The first member's sizes, read from its checkpoint's config."""
    _, config = _checkpoint(recipe.members[0].pretrained)
    return {key: getattr(config, key) for key in SIZE_KEYS}


def pretrained_member_config(recipe, k: int, sizes: dict, previous):
    """Member k's config: the checkpoint's own for k = 0, a growth of the previous member's after."""
    from .configuration_llama import ProgressiveLlamaConfig
    from .errors import ExpansionError

    if k == 0:
        _, config = _checkpoint(recipe.members[0].pretrained)
        return ProgressiveLlamaConfig.from_dict(config.to_dict())
    try:
        return ProgressiveLlamaConfig.from_smaller(previous, **sizes)
    except ExpansionError as error:
        raise RecipeError(f"members[{k}]: {error}") from None


def adopt_pretrained(recipe) -> None:
    """Check a `from:` recipe and make the checkpoint's tokenizer the family's (tokenizer.path), in place."""
    source = recipe.members[0].pretrained
    if any(member.pretrained for member in recipe.members[1:]):
        raise RecipeError("members[k].from: only the first member can start from a checkpoint; grow the others.")
    folder, config = _checkpoint(source)
    if config.vocab_size > recipe.vocab_size:
        raise RecipeError(
            f"members[0].from={source!r}: its vocab_size={config.vocab_size} exceeds vocab_size={recipe.vocab_size}; "
            f"set vocab_size: {config.vocab_size}."
        )
    spec = recipe.tokenizer
    if spec.train_bpe or (spec.path and spec.path not in (source, folder)):
        raise RecipeError(
            f"members[0].from={source!r}: the family uses the checkpoint's tokenizer; remove the tokenizer: section."
        )
    spec.path = folder


def load_pretrained(recipe):
    """The first member as loaded from its checkpoint (a `ProgressiveLlamaForCausalLM`), with its provenance."""
    from .checkpoint import load_model
    from .modeling_llama import ProgressiveLlamaForCausalLM

    source = recipe.members[0].pretrained
    model = load_model(_checkpoint(source)[0], ProgressiveLlamaForCausalLM)
    model.growth = {"parent": None, "operator": "pretrained", "source": source}
    return model


__all__ = ["adopt_pretrained", "load_pretrained", "pretrained_member_config", "pretrained_sizes"]
