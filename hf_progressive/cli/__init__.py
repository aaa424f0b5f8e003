"""The `hf-progressive` command: argument dataclasses (`arguments`), their argparse parser (`parser`), the
parse-call-print shell (`commands`, whose `main` is the console entry point) and the demo (`demo`). No library logic
lives here, and nothing here imports torch or transformers before a command's arguments are parsed."""

from .commands import main


__all__ = ["main"]
