"""The ``chainrule`` command."""
from __future__ import annotations

import sys


def main(argv=None):
    print("chainrule: the command line is being built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
