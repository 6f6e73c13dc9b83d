"""The ``chainrule`` command: ``chainrule demo`` walks through the lessons."""
from __future__ import annotations

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Neural networks trained by backpropagation, with every derivative shown.",
        epilog="Example: chainrule demo")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="reproduce the three lessons with the true numbers",
                          description="Walk through the lessons: SSR against b3, gradient descent on b3, "
                                      "on w3, w4, b3 together, and on all seven parameters.")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the random start for the all-parameter fit (default 0)")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run
        run(seed=args.seed)
        return 0
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
