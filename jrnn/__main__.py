"""``python -m jrnn``: the ``jrnn`` command line (see :mod:`jrnn.cli`)."""

from __future__ import annotations

import sys

from jrnn.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
