"""`python -m hf_progressive ...` is `hf-progressive ...` (also what `accelerate launch -m hf_progressive` runs)."""

import sys

from .cli import main


sys.exit(main())
