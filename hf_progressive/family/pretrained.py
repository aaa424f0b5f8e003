"""A family whose first member is an existing checkpoint (`members[0].from: PATH_OR_HUB_ID`) of a supported
architecture: Llama (SmolLM2, TinyLlama, Llama-3.2), Mistral, Qwen2/2.5 or Qwen3. Its architecture, shape and every
fixed setting (vocabulary, head_dim, RoPE, norms, tying) come from its config, later members are growths of it, its
tokenizer is the family's, and it trains only on the budget the recipe gives it (`members[0].tokens_per_param`; none by
default), so the ledger counts no FLOPs it did not spend. A bf16 checkpoint is loaded in float32, so every member
trains with fp32 master weights and AdamW states; mixed precision is `training: {bf16: true}` (autocast), as for a
family trained from scratch."""

from functools import cache

from ..errors import RecipeError
from ..expansion.sizes import SIZE_FIELDS


@cache
def _checkpoint(source: str) -> tuple:
    """`(local folder, config)` of `source`; one-line errors for an unsupported architecture, remote code or a missing
    folder."""
    from ..expansion.checkpoint import read_config, resolve_source

    folder = resolve_source(source)
    return str(folder), read_config(folder)


def pretrained_sizes(recipe) -> dict:
    """The first member's sizes, read from its checkpoint's config."""
    _, config = _checkpoint(recipe.members[0].pretrained)
    return {key: getattr(config, key) for key in SIZE_FIELDS}


def pretrained_member_config(recipe, k: int, sizes: dict, previous):
    """Member k's config: the checkpoint's own for k = 0, a growth of the previous member's after."""
    from ..errors import ExpansionError
    from ..models.progressive import progressive_classes

    if k == 0:
        _, config = _checkpoint(recipe.members[0].pretrained)
        return progressive_classes(config)[0].from_dict(config.to_dict())
    try:
        return progressive_classes(previous)[0].from_smaller(previous, **sizes)
    except ExpansionError as error:
        raise RecipeError(f"members[{k}]: {error}") from None


def adopt_pretrained(recipe) -> None:
    """Check a `from:` recipe against its checkpoint and make the checkpoint's settings and tokenizer the family's
    (vocab_size, head_dim, tie_word_embeddings and tokenizer.path, in place). A setting the recipe gives itself must
    agree with the checkpoint: otherwise the ledger would keep a recipe the family does not follow."""
    from ..expansion.checkpoint import check_weights

    source = recipe.members[0].pretrained
    later = [k for k, member in enumerate(recipe.members) if k and member.pretrained is not None]
    if later:
        raise RecipeError(
            f"members[{later[0]}].from: only the first member can start from a checkpoint; grow the others."
        )
    if not source or not str(source).strip():
        raise RecipeError("members[0].from='': give a checkpoint folder (or Hub id), or remove from:.")
    folder, config = _checkpoint(source)
    _check_given(recipe, source, config)
    check_weights(folder, config)  # from the headers: a tensor the config does not have, a shape it does not give
    spec = recipe.tokenizer
    if spec.train_bpe or (spec.path and spec.path not in (source, folder)):
        raise RecipeError(
            f"members[0].from={source!r}: the family uses the checkpoint's tokenizer; remove the tokenizer: section."
        )
    if recipe.seq_len > config.max_position_embeddings:
        raise RecipeError(
            f"seq_len={recipe.seq_len}: members[0].from={source!r} has max_position_embeddings="
            f"{config.max_position_embeddings}; use seq_len <= {config.max_position_embeddings}."
        )
    _check_tokenizer(folder, source, config)
    spec.path = folder
    recipe.vocab_size, recipe.head_dim, recipe.architecture = config.vocab_size, config.head_dim, config.model_type
    recipe.tie_word_embeddings = bool(config.tie_word_embeddings)


def _check_given(recipe, source: str, config) -> None:
    """Settings and first-member sizes the recipe writes itself must be the checkpoint's (they cannot change it)."""
    from .recipe_text import written_fields

    top, first = written_fields(recipe), written_fields(recipe, "members[0]")
    if "vocab_size" in top and recipe.vocab_size != config.vocab_size:
        relation = "exceeds" if config.vocab_size > recipe.vocab_size else "differs from"
        raise RecipeError(
            f"members[0].from={source!r}: its vocab_size={config.vocab_size} {relation} vocab_size="
            f"{recipe.vocab_size}; set vocab_size: {config.vocab_size} (or leave it out)."
        )
    for name in ("head_dim", "tie_word_embeddings", "architecture"):
        theirs = config.model_type if name == "architecture" else getattr(config, name)
        if name in top and getattr(recipe, name) != theirs:
            raise RecipeError(
                f"{name}={getattr(recipe, name)!r}: members[0].from={source!r} has {name}="
                f"{theirs!r}; remove {name} (the checkpoint fixes it)."
            )
    if recipe.model:
        raise RecipeError(
            f"model={recipe.model!r}: members[0].from={source!r} fixes the model settings from its config.json; "
            "remove model:."
        )
    for name in sorted(first & {*SIZE_FIELDS, "params"}):
        value = getattr(recipe.members[0], name)
        if name == "params" or value != getattr(config, name):
            raise RecipeError(
                f"members[0].{name}={value!r}: the first member is the checkpoint {source!r} as it is "
                f"({name}={getattr(config, name, 'its own size')!r}); remove it, and give sizes from members[1] on."
            )


def _check_tokenizer(folder: str, source: str, config) -> None:
    """The checkpoint's tokenizer must load, and every id it produces must have an embedding row."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as error:
        raise RecipeError(
            f"members[0].from={source!r}: its tokenizer cannot be loaded ({type(error).__name__}); the family "
            "uses the checkpoint's tokenizer, so save one beside it."
        ) from None
    if len(tokenizer) > config.vocab_size:
        raise RecipeError(
            f"members[0].from={source!r}: its tokenizer has {len(tokenizer)} tokens but its vocab_size="
            f"{config.vocab_size}; ids past the embedding cannot train: pair it with its own tokenizer."
        )


def load_pretrained(recipe):
    """The first member as loaded from its checkpoint (its architecture's `Progressive*ForCausalLM`), with its
    provenance."""
    import torch

    from ..expansion.checkpoint import load_model
    from ..models.progressive import progressive_classes

    source = recipe.members[0].pretrained
    folder, config = _checkpoint(source)
    model = load_model(folder, progressive_classes(config)[1])
    if model.dtype != torch.float32:  # e.g. SmolLM2, Llama-3.2 ship bf16: train fp32 master weights (bf16: autocast)
        model = model.to(torch.float32)
        model.config.dtype = torch.float32
    model.growth = {"parent": None, "operator": "pretrained", "source": source}
    return model


__all__ = ["adopt_pretrained", "load_pretrained", "pretrained_member_config", "pretrained_sizes"]
