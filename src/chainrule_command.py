"""The ``chainrule`` command's entry point, kept outside the package on purpose.

Importing ``chainrule`` loads NumPy and the rest, which takes a moment; a Ctrl-C
in that moment would otherwise end in a traceback, before ``chainrule.cli.main``
(which turns every later Ctrl-C into one line) exists. This module imports
nothing heavy itself, so the guard is in place first.

NOTE: a KeyboardInterrupt raised inside a C extension's import can come out as
another error (NumPy's says ``ImportError: PyCapsule_Import could not import
module "datetime"``), so the guard's handler notes that Ctrl-C came: any error
of the import after it is the interrupt. And once the command has returned,
everything it writes is written: a Ctrl-C while Python shuts down (its threads,
its buffers) has nothing left to stop, and is ignored rather than printed as a
traceback from ``threading._shutdown``.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    """Load the command line and run it; Ctrl-C while loading is one line and exit 130."""
    pressed = []

    def press(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    guarded = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # (not where SIGINT is ignored)
    if guarded:
        signal.signal(signal.SIGINT, press)
    try:
        from chainrule.cli import main as run
    except BaseException:
        if not pressed:  # an error of its own, not the interrupt
            raise
    finally:
        if guarded:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:  # (also when the handler's KeyboardInterrupt was swallowed on the way and the import went on)
        print("\nchainrule: interrupted while starting; nothing written", file=sys.stderr)
        return 130
    try:
        return run()
    finally:
        if guarded:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
