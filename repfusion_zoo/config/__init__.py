"""Settings: typed dataclasses filled from a YAML file and command-line flags (`parse`).

Each group of settings is declared once, beside what it builds (e.g. `timesteps.StrategySettings`
beside `build_strategy`); a recipe's config composes the groups it needs by inheritance, so every
key stays a flat ``--key value`` flag.
"""
from __future__ import annotations

from .parse import (
    BASE_KEY,
    CONFIG_KEY,
    RECIPE_KEY,
    build_config,
    extend_schema,
    format_help,
    load_config,
    opt,
    override,
    parse_flags,
    peek,
    read_yaml,
    redefault,
    schema_fields,
    settings_of,
    to_dict,
    wants_help,
)

__all__ = ["BASE_KEY", "CONFIG_KEY", "RECIPE_KEY", "build_config", "extend_schema", "format_help", "load_config", "opt",
           "override", "parse_flags", "peek", "read_yaml", "redefault", "schema_fields", "settings_of", "to_dict", "wants_help"]
