"""Recipe configuration: a dataclass filled from a YAML file and command-line flags.

Precedence: dataclass defaults < task defaults < YAML file (and its `base:` chain) < flags. A later
key replaces an earlier one, except a field declared with ``opt(..., merge=True)`` (a mapping of
another recipe's keys, e.g. an experiment's `finetune:`): a child file's or a flag's mapping updates
the base's key by key, so a child names only the keys it changes.
Every key is a flat field; `--key value`, `--key=value` and a bare `--flag` (booleans) all work.
An unknown key, in a file or on the command line, is a `ConfigError` that lists the valid keys.
Keys are the names of diffusers' and accelerate's example scripts (`learning_rate`,
`train_batch_size`, `resume_from_checkpoint`, ...), one name per key (a near miss gets a "did you
mean").
Two YAML keys are not settings: `base:` (file(s) to inherit from, relative to this file) and
`recipe:` (which recipe reads the file: distill / finetune / train_teacher; documentation only).
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from ..errors import ConfigError

T = TypeVar("T")

#: the config key that names a YAML file; it is not a field of any schema
CONFIG_KEY = "config"
#: the YAML key naming the file(s) a config inherits from, relative to the file itself
BASE_KEY = "base"
#: a documentation key: which recipe reads the file (distill / finetune / train_teacher); not a setting
RECIPE_KEY = "recipe"

def opt(default: Any, help: str = "", choices: Sequence[Any] | None = None, merge: bool = False) -> Any:
    """A dataclass field with a help line (and optional allowed values) for `--help`; ``merge``: a
    mapping that a child file or a flag updates key by key instead of replacing (`override`)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "merge": merge}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def redefault(schema: type, name: str, default: Any, help: str | None = None) -> Any:
    """The field ``name`` of the settings ``schema`` with another default (its help, unless given, and
    its choices kept): how a recipe's config gives an inherited key its own default without
    declaring the key again."""
    base = schema_fields(schema)[name]
    return opt(default, base.metadata.get("help", "") if help is None else help, base.metadata.get("choices"),
               base.metadata.get("merge", False))


def merged_fields(schema: type) -> frozenset[str]:
    """The fields of `schema` declared ``opt(..., merge=True)``: updated key by key (`override`)."""
    return frozenset(name for name, f in schema_fields(schema).items() if f.metadata.get("merge"))


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """`["--a", "1", "--b=x", "--flag"]` -> `{"a": "1", "b": "x", "flag": True}` (values still strings).

    A hyphen in a key reads as an underscore (``--train-batch-size`` = ``--train_batch_size``); a key
    given twice keeps the last.
    """
    flags: dict[str, Any] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}: every setting is given as --key value or --key=value")
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            flags = override(flags, {key: value})
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags = override(flags, {key: argv[i + 1]})
            i += 1
        else:
            flags = override(flags, {key: True})
        i += 1
    return flags


def read_yaml(path: str | Path, merge: frozenset[str] = frozenset(), _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping with its `base:` chain merged underneath (bases resolved relative to the file;
    the keys in ``merge`` key by key, `override`)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass --config with an existing YAML file")
    if path in _seen:
        raise ConfigError(f"config {str(path)!r} inherits from itself via `base:` ({' -> '.join(map(str, _seen))})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a YAML mapping of key: value, not {type(data).__name__}")
    bases = data.pop(BASE_KEY, None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = override(merged, read_yaml(path.parent / base, merge, _seen + (path,)), merge)
    return override(merged, data, merge)


def override(values: Mapping[str, Any], updates: Mapping[str, Any], merge: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`values` updated by `updates`: a child file's or a flag's key replaces a base's, except that a
    mapping under a key in ``merge`` updates the base's mapping key by key (a flag's text is read as
    YAML first: ``--finetune '{num_train_epochs: 5}'`` changes that key alone)."""
    out = dict(values)
    for key, value in updates.items():
        if key in merge and isinstance(value, str):
            value = _yaml_or_text(value)
        base = out.get(key)
        out[key] = {**base, **value} if key in merge and isinstance(base, Mapping) and isinstance(value, Mapping) else value
    return out


def _yaml_or_text(text: str) -> Any:
    """`text` read as YAML, or `text` itself where it is not YAML (its key's coercion then says why)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def schema_fields(schema: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of `schema`, by name."""
    return {f.name: f for f in dataclasses.fields(schema)}


def extend_schema(schema: type[T], extra_defaults: Mapping[str, Any]) -> type[T]:
    """`schema` with extra keys (e.g. a task's `default_config()`), existing keys getting new defaults."""
    if not extra_defaults:
        return schema
    known = schema_fields(schema)
    hints = typing.get_type_hints(schema)
    new_fields = []
    for key, value in extra_defaults.items():
        meta = known[key].metadata if key in known else {"help": "task setting"}
        kind = hints.get(key, Any if value is None else type(value))
        new_fields.append((key, kind, opt(value, meta.get("help", ""), meta.get("choices"))))
    return dataclasses.make_dataclass(schema.__name__, new_fields, bases=(schema,))


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """`value` (a flag string or a YAML value) converted to the field type `kind`."""
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(key, value, args[0]) if len(args) == 1 else (yaml.safe_load(value) if isinstance(value, str) else value)
    if kind is Any:
        return yaml.safe_load(value) if isinstance(value, str) else value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{key} expects true/false, got {value!r}")
    if kind in (int, float):
        try:
            parsed = _number(value) if isinstance(value, str) else value
            if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
                raise ValueError
            if kind is int and float(parsed) != int(parsed):
                raise ValueError
            return kind(parsed)
        except (ValueError, yaml.YAMLError):
            raise ConfigError(f"--{key} expects a number ({kind.__name__}), got {value!r}") from None
    if kind is str:
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item = args[0] if args else Any
        return [_coerce(key, v, item) for v in value]
    if origin is dict or kind is dict:
        parsed = _yaml_or_text(value) if isinstance(value, str) else value
        if not isinstance(parsed, dict):
            raise ConfigError(f"--{key} expects a mapping like '{{a: 1}}', got {value!r}")
        return parsed
    return value


def _number(text: str) -> int | float:
    """"7" -> 7, "1e-3" -> 0.001 (YAML 1.1 would read "1e-3" as a string)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def build_config(schema: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """An instance of `schema` from `values` (aliases allowed); unknown keys and bad values are `ConfigError`s."""
    fields = schema_fields(schema)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = {key: difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6) for key in unknown}
        hint = "; ".join(f"did you mean {match[0]!r} for {key!r}?" for key, match in close.items() if match)
        raise ConfigError(
            f"unknown config key(s) {unknown} in {source}; {hint + ' ' if hint else ''}valid keys are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for key, value in values.items():
        kind = hints.get(key, Any)
        kwargs[key] = _coerce(key, value, kind)
        choices = fields[key].metadata.get("choices") if fields[key].metadata else None
        if choices and kwargs[key] not in choices:
            raise ConfigError(f"{key}={kwargs[key]!r} is not one of {list(choices)} ({source})")
    return schema(**kwargs)


def load_config(
    schema: type[T],
    argv: Sequence[str] | None = None,
    *,
    default_file: str | Path | None = None,
    extra_defaults: Mapping[str, Any] | None = None,
) -> T:
    """Parse `argv` (default `sys.argv[1:]`): `--config FILE` plus `--key value` overrides."""
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    config_file = flags.pop(CONFIG_KEY, None) or default_file
    full_schema = extend_schema(schema, extra_defaults or {})
    merge = merged_fields(full_schema)
    values: dict[str, Any] = {}
    source = "command line"
    if config_file:
        values.update(read_yaml(config_file, merge))
        values.pop(RECIPE_KEY, None)
        source = f"{config_file} or the command line"
    values = override(values, flags, merge)
    return build_config(full_schema, values, source)


def peek(argv: Sequence[str] | None, key: str, default_file: str | Path | None = None, default: Any = None) -> Any:
    """The raw value of `key` from the flags, else the config file, else `default` (e.g. `task`)."""
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    if key in flags:
        return flags[key]
    config_file = flags.get(CONFIG_KEY) or default_file
    values = read_yaml(config_file) if config_file else {}
    return values.get(key, default)


def format_help(schema: type, prog: str, description: str = "") -> str:
    """A `--help` text listing every key with its default, choices and help line."""
    lines = [f"usage: {prog} [--config FILE.yaml] [--key value | --key=value ...]", ""]
    if description:
        lines += [description.strip(), ""]
    lines.append("keys (a YAML file's keys and the flags are the same names; --a-key reads as --a_key):")
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        choices = f.metadata.get("choices") if f.metadata else None
        extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        help_text = f.metadata.get("help", "") if f.metadata else ""
        lines.append(f"  --{f.name:<28} default {default!r}{extra}\n      {help_text}")
    return "\n".join(lines)


def wants_help(argv: Sequence[str] | None) -> bool:
    """True when `argv` (default `sys.argv[1:]`) asks for `-h` / `--help`."""
    args = sys.argv[1:] if argv is None else argv
    return "-h" in args or "--help" in args


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict (for trackers, tasks and the saved `config.yaml`)."""
    return dataclasses.asdict(cfg)


def settings_of(schema: type[T], cfg: Any, **changes: Any) -> T:
    """The ``schema`` settings (a dataclass) that ``cfg`` holds under the same names, plus ``changes``:
    e.g. a recipe config's `StrategySettings`."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(schema) if hasattr(cfg, f.name)}
    return schema(**{**values, **changes})
