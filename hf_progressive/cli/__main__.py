"""`python -m hf_progressive.cli`: the same command as `hf-progressive` and `python -m hf_progressive`."""

import sys

from .commands import main


sys.exit(main())
