"""The `repfusion-zoo` console command. Each sub-command lives in the module that does the work."""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Sequence

from . import atomic, probe
from .zoo import prefetch, table

# sub-command -> the module exposing `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.
COMMANDS: dict[str, ModuleType] = {
    "probe": probe,
    "prefetch": prefetch,
    "models": table,
    "recover": atomic,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repfusion-zoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
