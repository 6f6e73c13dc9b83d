"""The ``chainrule`` command's entry point, kept outside the package on purpose.

Importing ``chainrule`` loads NumPy and the rest, which takes a moment; a Ctrl-C
in that moment would otherwise end in a KeyboardInterrupt traceback, before
``chainrule.cli.main`` (which turns every later Ctrl-C into one line) exists.
This module imports nothing heavy itself, so the guard is in place first.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Load the command line and run it; Ctrl-C while loading is one line and exit 130."""
    try:
        from chainrule.cli import main as run
    except KeyboardInterrupt:
        print("\nchainrule: interrupted while starting; nothing written", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
