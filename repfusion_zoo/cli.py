"""The `repfusion-zoo` console command. Each sub-command lives in the module that does the work.

Flags are spelled as in the recipes (``--output_dir``, ``--num_samples``); the hyphenated form
(``--num-samples``) is read as the same flag, as the recipes read it. An input error is one line,
``repfusion-zoo: error: ...``, and exit code 2 (`repfusion_zoo.errors.run_program`; ``--debug``
shows its traceback).
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Sequence

from . import atomic
from .method import probe
from .errors import DEBUG_FLAG, run_program
from .version import __version__
from .zoo import prefetch, table

# sub-command -> the module exposing `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.
COMMANDS: dict[str, ModuleType] = {
    "probe": probe,
    "prefetch": prefetch,
    "models": table,
    "recover": atomic,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repfusion-zoo", description=__doc__.split("\n\n")[0],
                                     epilog=f"{DEBUG_FLAG}: show the traceback of an input error")
    parser.add_argument("--version", action="version", version=f"repfusion-zoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def underscored(argv: Sequence[str]) -> list[str]:
    """``--num-samples 5`` -> ``--num_samples 5`` (a flag's name only; values and positionals stay)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = f"--{name.replace('-', '_')}{eq}{value}"
        out.append(arg)
    return out


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(underscored(argv))
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_program("repfusion-zoo", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
