"""The `hf-progressive` command: argument dataclasses (`arguments`), the parse-call-print shell (`commands`, whose
`main` is the console entry point) and the demo (`demo`). No library logic lives here."""

from .commands import main


__all__ = ["main"]
