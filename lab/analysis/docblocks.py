"""The one splicer of generated blocks into Markdown files (README.md, docs/*.md).

One marker style, each on its own line::

    <!-- NAME:start -->
    ...generated text...
    <!-- NAME:end -->

A generator owns the text between the two markers; :func:`write` replaces it atomically and
:func:`stale` says whether a file is out of date (the docs-sync tests use it).

>>> splice("a\\n<!-- x:start -->\\nold\\n<!-- x:end -->\\nb", "x", "new")
'a\\n<!-- x:start -->\\nnew\\n<!-- x:end -->\\nb'
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError


class MissingMarkers(LabError, ValueError):
    """A file has no (or a broken) pair of block markers."""


def markers(name: str) -> tuple[str, str]:
    """The start and end marker lines of block ``name``.

    >>> markers("results")
    ('<!-- results:start -->', '<!-- results:end -->')
    """
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _span(text: str, name: str, where: str) -> tuple[int, int]:
    start, end = markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise MissingMarkers(f"{where}: no {start} ... {end} markers; put both lines where the generated block should go")
    return i + len(start), j


def block(text: str, name: str, where: str = "text") -> str:
    """The generated text between the markers of ``name`` (without the newlines next to them).

    >>> block("<!-- x:start -->\\nhi\\n<!-- x:end -->", "x")
    'hi'
    """
    i, j = _span(text, name, where)
    return text[i:j].strip("\n")


def splice(text: str, name: str, body: str, where: str = "text") -> str:
    """``text`` with the block ``name`` replaced by ``body`` (markers kept, one newline each side)."""
    i, j = _span(text, name, where)
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]


def stale(path: str | Path, name: str, body: str) -> bool:
    """Whether the block ``name`` of the file at ``path`` differs from ``body``."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    return splice(text, name, body, str(p)) != text


def write(path: str | Path, name: str, body: str) -> bool:
    """Replace block ``name`` of the file at ``path`` with ``body``, atomically; True when it changed."""
    from lab.analysis.results import write_text

    p = Path(path)
    text = p.read_text(encoding="utf-8")
    new = splice(text, name, body, str(p))
    if new == text:
        return False
    write_text(p, new)
    return True
