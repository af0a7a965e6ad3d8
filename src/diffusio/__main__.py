"""``python -m diffusio``: the same command line as the ``diffusio`` script."""

import sys

from diffusio.cli import main

if __name__ == "__main__":
    sys.exit(main())
