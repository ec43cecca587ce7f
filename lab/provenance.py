"""Where a run or a results file came from: code version, libraries, machine.

Every run directory (``provenance.json``) and every results file written by a benchmark
records :func:`collect`, so a number can always be traced to the code and machine that
made it.

>>> p = collect()
>>> sorted(p) == sorted(FIELDS)
True
>>> p["torch"].startswith("2.")
True
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

FIELDS = ("lab_version", "git_commit", "git_dirty", "python", "torch", "transformers", "cpu",
          "torch_threads", "device", "platform", "created")

_REPO = Path(__file__).resolve().parent.parent
OUTPUTS = ("data/results", "data/sample_runs")
"""Committed folders the benchmarks and scripts write into: changes there do not make ``git_dirty``
true (a sweep rewriting its own results file would otherwise mark every row it writes dirty);
``git_dirty`` says whether the *code and data that make* the numbers differ from ``git_commit``."""


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def _static() -> dict:
    import torch

    import lab

    try:
        import transformers

        tf = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        tf = None
    commit = _git("rev-parse", "HEAD") if (_REPO / ".git").exists() else None
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){d}" for d in OUTPUTS))
        dirty = bool(status) if status is not None else None
    else:  # a plain copy of a checkout (the GPU machine) or a wheel: the caller may name the commit
        commit = os.environ.get("LAB_COMMIT") or None
    return {
        "lab_version": lab.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": tf,
        "cpu": cpu_model(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def collect(device: str | None = None) -> dict:
    """Provenance of the current process: a flat dict of JSON-safe values (keys :data:`FIELDS`).

    ``git_commit``/``git_dirty`` are None outside a git checkout (an installed wheel, a plain
    copy), except that ``git_commit`` then takes the environment variable ``LAB_COMMIT`` if set;
    ``git_dirty`` ignores untracked files. ``device`` is what the caller ran on (default
    ``"cpu"``, or ``"cuda:<name>"`` style strings the caller passes).
    """
    import torch

    return {
        **_static(),
        "torch_threads": torch.get_num_threads(),
        "device": device or "cpu",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    json.dump(collect(), sys.stdout, indent=2)
    print(file=sys.stdout)
    os._exit(0)
