"""The command line run in-process, for the CLI tests: ``run_cli(capsys, *args)``."""

from __future__ import annotations

from chainrule import cli


def run_cli(capsys, *args):
    """cli.main(args) -> (exit status, stdout, stderr); argparse's SystemExit becomes its status."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
