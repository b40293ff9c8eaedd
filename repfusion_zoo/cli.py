"""The `repfusion-zoo` console command. Each sub-command lives in the module that does the work."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# sub-command -> module exposing `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.
COMMANDS: dict[str, str] = {
    "probe": "repfusion_zoo.probe",
    "prefetch": "repfusion_zoo.zoo.prefetch",
    "models": "repfusion_zoo.zoo.table",
    "recover": "repfusion_zoo.atomic",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repfusion-zoo", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
