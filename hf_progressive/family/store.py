"""The token store a family trains on: the one given (`--data`, `data.prepared`), checked against the recipe, or
OUT/data prepared here with just the blocks the plan reads."""

from transformers.utils import logging

from ..data.token_store import TokenStore, plural, prepare_store
from ..data.tokenizer import check_tokenizer
from .recipe_text import written_fields


logger = logging.get_logger(__name__)


def family_store(recipe, plan, paths, prepared: str | None = None):
    """`(tokenizer, store)` a family trains on: `prepared` (or the recipe's `data.prepared`) as given, else OUT/data,
    prepared here through `prepare_store` with just the blocks the plan reads (rebuilt if it was made for another
    request). The main process prepares, then every process memory-maps; a store smaller than the plan is said in
    one line before training."""
    from transformers import AutoTokenizer

    from ..training.trainer import process_state

    state, needed = process_state(), blocks_needed(plan)
    source = prepared or recipe.data.prepared
    with state.main_process_first():
        if source is None and state.is_main_process:
            prepare_store(recipe, paths.data, max_tokens=needed * recipe.seq_len, overwrite=True)
        store = TokenStore.open(source or paths.data)
    store.check(recipe, written_fields(recipe, "data"))
    if len(store.train) < needed and state.is_main_process:
        logger.warning(
            f"{store.path}: holds {plural(len(store.train), 'block')} of {recipe.seq_len} tokens but the plan reads "
            f"{needed:,}: stages wrap around and read the data {needed / len(store.train):.2f} times"
        )
    tokenizer = AutoTokenizer.from_pretrained(store.tokenizer_dir)
    check_tokenizer(tokenizer, recipe.vocab_size)
    return tokenizer, store


def blocks_needed(plan) -> int:
    """The furthest block any stage of `plan` (a `family.FamilyPlan`) reads."""
    return max(max(end for _, end in member.window.spans()) for member in plan.members)


__all__ = ["blocks_needed", "family_store"]
