"""`python -m hf_progressive ...` is `hf-progressive ...` (also what `accelerate launch -m hf_progressive` runs)."""

import sys


if __name__ == "__main__":
    from .cli import main

    sys.exit(main())
