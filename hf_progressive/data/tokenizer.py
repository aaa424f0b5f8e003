"""The family's tokenizer: any Hugging Face tokenizer, or a byte-level BPE trained on the first characters of the
corpus, checked against the model's vocabulary (every id it produces needs an embedding row, and EOS separates
packed documents)."""

from collections.abc import Iterator

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ..errors import RecipeError
from .documents import split_document, training_documents


EOS = "<|endoftext|>"


def train_bpe(texts: Iterator[str], vocab_size: int, max_chars: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style: no unknown tokens) of `vocab_size` trained on the first `max_chars` chars."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_take_chars(texts, max_chars), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def _take_chars(texts: Iterator[str], max_chars: int) -> Iterator[str]:
    total = 0
    for text in texts:
        for piece in split_document(text):
            if total >= max_chars:
                return
            total += len(piece)
            yield piece


def get_tokenizer(recipe):
    """The recipe's tokenizer, checked against its vocab_size."""
    spec = recipe.tokenizer
    if spec.train_bpe:
        tokenizer = train_bpe(training_documents(recipe.data), recipe.vocab_size, spec.bpe_training_chars)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.path)
        except Exception as error:
            raise RecipeError(f"tokenizer.path={spec.path!r}: cannot load it ({type(error).__name__}).") from None
    check_tokenizer(tokenizer, recipe.vocab_size)
    return tokenizer


def check_tokenizer(tokenizer, vocab_size: int) -> None:
    """The model's embedding must cover every token id the tokenizer can produce, and EOS must exist (it separates
    packed documents)."""
    if len(tokenizer) > vocab_size:
        raise RecipeError(
            f"tokenizer: it has {len(tokenizer)} tokens but vocab_size={vocab_size}; mismatched "
            f"tokenizer: set vocab_size >= {len(tokenizer)} or use a smaller tokenizer."
        )
    if tokenizer.eos_token_id is None:
        raise RecipeError("tokenizer: it has no eos_token; set one (it separates packed documents).")


__all__ = ["EOS", "check_tokenizer", "get_tokenizer", "train_bpe"]
