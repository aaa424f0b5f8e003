"""Offline lm-eval tasks over the embedded held-out corpus (no network): `custom_dataset` loaders for the
perplexity and cloze tasks. Registered by passing this directory as lm-eval's `--include_path`."""

import gzip
import json
import random
import re

import datasets

from hf_progressive.data.documents import EMBEDDED  # lm-eval loads this file by path: an absolute import


VALIDATION = EMBEDDED["validation"]


def _documents() -> list[str]:
    with gzip.open(VALIDATION, "rt") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def load_perplexity(**kwargs) -> datasets.DatasetDict:
    """Every held-out document, whole (rolling log-likelihood gives word/byte perplexity and bits per byte)."""
    return datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": _documents()})})


ENDING_WORDS = 6  # short endings, so the task fits models with short contexts


def _halves(sentence: str) -> tuple[str, str] | None:
    """(first half, the next ENDING_WORDS words) of a sentence of 12 words or more."""
    words = sentence.split()
    if len(words) < 12:
        return None
    cut = len(words) // 2
    return " ".join(words[:cut]), " ".join(words[cut : cut + ENDING_WORDS])


def load_cloze(**kwargs) -> datasets.DatasetDict:
    """Four-way sentence completion from held-out text: the context is the text before a long sentence plus its
    first half; the choices are the next six words of it and six words from the middle of a sentence of each of
    three other documents (fixed seed, so the task never changes)."""
    rng = random.Random(0)
    items = []
    for doc_id, text in enumerate(_documents()):
        sentences = [s.strip() for s in re.split(r"\n+", text) if s.strip()]
        for position, sentence in enumerate(sentences[1:], start=1):
            halves = _halves(sentence)
            if halves:
                before = " ".join(sentences[max(0, position - 2) : position])
                items.append({"doc": doc_id, "context": f"{before} {halves[0]}".strip(), "ending": halves[1]})
                break
    rows = {"context": [], "choices": [], "label": []}
    for item in items:
        others = rng.sample([other for other in items if other["doc"] != item["doc"]], 3)
        choices = [item["ending"], *(other["ending"] for other in others)]
        rng.shuffle(choices)
        rows["context"].append(item["context"])
        rows["choices"].append(choices)
        rows["label"].append(choices.index(item["ending"]))
    return datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows)})
