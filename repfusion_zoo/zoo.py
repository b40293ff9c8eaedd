"""PLACEHOLDER until the zoo lands: plain timm pass-through."""
from __future__ import annotations

import fnmatch

import timm


def create_model(name: str, pretrained: bool = False, **kwargs):
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return [n for n in timm.list_models("*repfusion*") if fnmatch.fnmatch(n, pattern)]
