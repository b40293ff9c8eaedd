"""The zoo table of MODEL_CARD.md, and ``repfusion-zoo models`` that prints it
(or ``python -c "from repfusion_zoo.zoo import model_table; print(model_table(), end='')"``)."""
from __future__ import annotations

import argparse

import timm

from .registry import ZOO, list_models

__all__ = ["model_table", "add_parser"]

def _count_parameters(name: str) -> int:
    model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def model_table() -> str:
    """The zoo table of MODEL_CARD.md (markdown), parameters counted by building each model."""
    header = (
        "| name | architecture | parameters (backbone) | input | teacher | dataset | license | "
        "recipe | measured metrics | weight exists |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name in list_models():
        entry = ZOO[name]
        size = "x".join(str(s) for s in entry.input_size[1:])
        rows.append(
            f"| `{name}` | `{entry.architecture}` | {_count_parameters(name) / 1e6:.2f} M | {size} | "
            f"`{entry.teacher}` | {entry.dataset} | {entry.license} | `{entry.recipe}` | "
            f"{'see the model card on the Hub' if entry.hf_hub_id else 'not trained yet'} | "
            f"{'yes: `' + entry.hf_hub_id + '`' if entry.hf_hub_id else 'no'} |"
        )
    return header + "\n".join(rows) + "\n"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``repfusion-zoo models``: print the zoo table (the one in MODEL_CARD.md)."""
    parser = subparsers.add_parser("models", help="print the zoo table of MODEL_CARD.md")
    parser.set_defaults(func=lambda args: print(model_table(), end="") or 0)
