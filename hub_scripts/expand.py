"""Grow a Llama checkpoint directory into a larger one (the script form of `hf-progressive expand`).

    python hub_scripts/expand.py ./small ./big --hidden-size 64 --num-hidden-layers 4 --method fpi+identity

Every option of `hf-progressive expand --help` applies; bad input exits 2 with one line and writes nothing."""

import sys

from hf_progressive.cli import main


if __name__ == "__main__":
    sys.exit(main(["expand", *sys.argv[1:]]))
