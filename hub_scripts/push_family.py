"""Publish a built family to the Hub (the script form of `hf-progressive push`): one model repo per member (one
commit each: weights, config, tokenizer, generation config, card, growth.json, metrics), a family repo (card + plots),
and a Collection listing the members in size order. Idempotent: rerun after a partial failure and it finishes the job
without duplicating anything.

    python hub_scripts/push_family.py out/tiny --namespace my-org --dry-run      # stages the folders, no network
    python hub_scripts/push_family.py out/tiny --namespace my-org --private

The token comes from `huggingface-cli login` or HF_TOKEN, and is never printed."""

import sys

from hf_progressive.cli import main as cli


def main(argv=None) -> int:
    return cli(["push", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
