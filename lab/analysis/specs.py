"""Row labels as specs: ``"kae(h=0.2)"`` <-> ``("kae", {"h": 0.2})``, written and parsed in one place.

A benchmark row is named by its parameters and built from its label, so a changed default can
never relabel a row. Values are Python literals where they parse (numbers, True/False,
tuples such as ``betas=(1000.0,)``), else strings; commas inside brackets do not split.

>>> parse("basis(fallback=zero, betas=(0.5, 1000.0))")
('basis', {'fallback': 'zero', 'betas': (0.5, 1000.0)})
>>> format("kae", {"h": 0.5, "kernel": "triangular"})
'kae(h=0.5, kernel=triangular)'
>>> parse(format("basis", {"betas": (1000.0,)}))
('basis', {'betas': (1000.0,)})
"""

from __future__ import annotations

import ast

from lab.errors import LabError


class BadSpec(LabError, ValueError):
    """A row label that is not ``name`` or ``name(param=value, ...)``."""


def _split(body: str, label: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in body:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise BadSpec(f"label {label!r}: unbalanced brackets; write name(param=value, ...)")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise BadSpec(f"label {label!r}: unbalanced brackets; write name(param=value, ...)")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse(label: str) -> tuple[str, dict]:
    """``"name(param=value, ...)"`` -> (name, {param: value}); a bare name has no params.

    >>> parse("grpo")
    ('grpo', {})
    >>> parse("kae(h=1)")
    ('kae', {'h': 1})
    """
    name, _, rest = label.strip().partition("(")
    params: dict = {}
    if rest:
        if not rest.endswith(")"):
            raise BadSpec(f"label {label!r}: expected name(param=value, ...)")
        for item in _split(rest[:-1], label):
            key, eq, raw = item.partition("=")
            if not eq:
                raise BadSpec(f"label {label!r}: {item!r} is not param=value")
            try:
                value = ast.literal_eval(raw.strip())
            except (ValueError, SyntaxError):
                value = raw.strip()
            params[key.strip()] = tuple(value) if isinstance(value, list) else value
    return name.strip(), params


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_fmt(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return str(v)


def format(name: str, params: dict | None = None) -> str:  # noqa: A001 (the inverse of parse)
    """(name, params) -> the label; ``format(*parse(x)) == x`` for labels written this way."""
    if not params:
        return name
    return f"{name}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + ")"


def base(label: str) -> str:
    """The registry name of a label.

    >>> base("kae(h=0.2)")
    'kae'
    """
    return parse(label)[0]


__all__ = ["BadSpec", "parse", "format", "base"]
