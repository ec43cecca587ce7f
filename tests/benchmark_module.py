"""Import a script of ``benchmarks/`` as a module (the folder is not a package), for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, *, register: bool = False):
    """``benchmarks/<name>.py`` freshly executed as module ``name``; ``register`` also puts it in
    ``sys.modules`` (needed when the script pickles its own classes or looks itself up)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod
