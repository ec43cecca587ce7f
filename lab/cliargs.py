"""Command-line flags generated from a frozen config dataclass (one source of truth).

Each field becomes ``--field-name``; its help is the docstring written under the field
(CleanRL style). Booleans get ``--flag/--no-flag``; ``dict`` fields take JSON
(``--estimator-params '{"h": 0.3}'``); ``X | None`` fields accept ``none``. A config file
(``--config file.json|yaml``) sets defaults that explicit flags override.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from pathlib import Path
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source.

    >>> from dataclasses import dataclass
    >>> field_docs(_Example)
    {'lr': 'Learning rate of the optimizer.'}
    """
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(src).body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name):
            if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class _Example:
    lr: float = 1e-3
    """Learning rate of the optimizer."""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X``, ``Optional[X]`` and ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parser_for(tp: Any, optional: bool, name: str):
    def parse(text: str):
        if optional and text.lower() in ("none", "null", ""):
            return None
        origin = typing.get_origin(tp) or tp
        try:
            if origin is dict:
                val = json.loads(text)
                if not isinstance(val, dict):
                    raise ValueError
                return val
            if origin in (tuple, list):
                val = json.loads(text) if text.strip().startswith("[") else [s for s in text.split(",") if s]
                inner = (typing.get_args(tp) or (str,))[0]
                return tuple(inner(v) for v in val)
            if tp is int:
                return int(text)
            if tp is float:
                return float(text)
            return text
        except (ValueError, json.JSONDecodeError):
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}: cannot read {text!r} as {getattr(tp, '__name__', tp)}") from None

    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of ``cls`` (defaults left as SUPPRESS so files can set them)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        helptext = f"{docs.get(f.name, '')} (default: {json.dumps(default) if isinstance(default, (dict, list, tuple)) else default})"
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        else:
            parser.add_argument(flag, type=_parser_for(tp, optional, f.name), default=argparse.SUPPRESS, help=helptext, metavar=f.name.upper())


def load_config_file(path: str | Path) -> dict:
    """Read a JSON or YAML config file into a dict (keys may use - or _)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--config: file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a mapping of field names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type, args: argparse.Namespace, file_values: dict | None = None):
    """Config = dataclass defaults < config file < explicit flags. Unknown file keys are errors."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for k, v in (file_values or {}).items():
        if k not in names:
            raise ValueError(f"config file: unknown field {k!r}; valid fields: {', '.join(sorted(names))}")
        values[k] = tuple(v) if isinstance(v, list) else v
    for k, v in vars(args).items():
        if k in names:
            values[k] = v
    return cls(**values)
