"""Command-line flags generated from a frozen config dataclass (one source of truth).

Each field becomes ``--field-name``; its help is the docstring written under the field
(CleanRL style). Booleans get ``--flag/--no-flag``; ``dict`` fields take JSON
(``--estimator-params '{"h": 0.3}'``); ``X | None`` fields accept ``none``. A config file
(``--config file.json|yaml``) sets defaults that explicit flags override.

With ``lenient=True`` (``lab train``) a flag value that does not parse is handed to the
dataclass as the raw text, so the dataclass's own validation reports it with exactly the
message a config file or Python would get (``steps: must be an integer, got 'x' (str)``).
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


def _parser_for(tp: Any, optional: bool, name: str, lenient: bool = False):
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
            if lenient:
                return text
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')}: cannot read {text!r} as {getattr(tp, '__name__', tp)}") from None

    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, lenient: bool = False) -> None:
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
        helptext = helptext.replace("%", "%%")  # argparse formats help with %
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        else:
            parser.add_argument(flag, type=_parser_for(tp, optional, f.name, lenient), default=argparse.SUPPRESS, help=helptext, metavar=f.name.upper())


def _yaml_loader():
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.2; PyYAML's 1.1 rules
    want ``1.0e-4`` and would hand the field a string). Safe: no python tags, no code."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: set = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *defaults` then overriding a key is YAML's own idiom
                    key = self.construct_object(key_node, deep=True)
                    try:
                        if key in seen:
                            raise DuplicateKey(key, key_node.start_mark.line + 1)
                        seen.add(key)
                    except TypeError:  # an unhashable key: SafeLoader reports it below
                        pass
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


class DuplicateKey(ValueError):
    """A key given twice in one mapping of a config file (``key``, 1-based ``line`` or None)."""

    def __init__(self, key, line: int | None = None):
        super().__init__(key, line)
        self.key, self.line = key, line


def _unique_pairs(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


def _json_line_of_key(text: str, key: str) -> int | None:
    """The line of the second ``"key":`` in JSON text (for the error message), or None."""
    import re

    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return text.count("\n", 0, hits[1]) + 1 if len(hits) > 1 else None


def load_config_file(path: str | Path) -> dict:
    """Read a JSON or YAML config file into a dict (keys may use - or _).

    Raises ``lab.errors.UsageError`` naming the file (and the line) for a missing file, text
    that is not UTF-8, malformed JSON/YAML, YAML python tags (never executed), a key given
    twice in one mapping (JSON and YAML would silently keep the last; also ``max-new-tokens``
    beside ``max_new_tokens``), or a file that is not a mapping.
    """
    import yaml

    from lab.errors import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config: {path} {'is a folder' if path.is_dir() else 'does not exist'}; give a JSON or YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"--config: {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"--config: cannot read {path} ({e.strerror or e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except DuplicateKey as e:
            raise UsageError(f"--config: {path} line {e.line}: key {e.key!r} is given twice; keep one") from None
        except RecursionError:
            raise UsageError(f"--config: {path}: YAML nested too deeply to read") from None
        except yaml.constructor.ConstructorError as e:
            where = f" line {e.problem_mark.line + 1}" if e.problem_mark else ""
            raise UsageError(f"--config: {path}{where}: tag {e.problem.split()[-1] if e.problem else ''} is not allowed; "
                             "a config file holds plain values only (python tags are never run)") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise UsageError(f"--config: {path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except DuplicateKey as e:
            line = _json_line_of_key(text, e.key)
            where = f" line {line}" if line else ""
            raise UsageError(f"--config: {path}{where}: key {e.key!r} is given twice; keep one") from None
        except RecursionError:
            raise UsageError(f"--config: {path}: JSON nested too deeply to read") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"--config: {path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path} must hold a mapping of field names to values, got {type(data).__name__}")
    out: dict = {}
    for k, v in data.items():
        name = str(k).replace("-", "_")
        if name in out:
            raise UsageError(f"--config: {path}: field {name!r} is given twice (as {k!r} and another spelling); keep one")
        out[name] = v
    return out


def build_config(cls: type, args: argparse.Namespace, file_values: dict | None = None):
    """Config = dataclass defaults < config file < explicit flags. Unknown file keys are errors."""
    from lab.errors import UsageError

    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for k, v in (file_values or {}).items():
        if k in getattr(cls, "META_KEYS", ()) or k == "format_version":
            continue  # a saved run's config.json may be used as a --config file
        if k not in names:
            raise UsageError(f"config file: unknown field {k!r}; valid fields: {', '.join(sorted(names))}")
        tuple_field = typing.get_origin(_base_type(hints[k])[0]) is tuple
        values[k] = tuple(v) if isinstance(v, list) and tuple_field else v
    for k, v in vars(args).items():
        if k in names:
            values[k] = v
    return cls(**values)
