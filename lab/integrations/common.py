"""What the verl and TRL adapters share: stable prompt ids, reference samples, building an estimator.

* :func:`hash_prompt`: a prompt id that is the same in every process and on every machine,
  for datasets that carry no id of their own.
* :func:`load_reference`: reference-policy samples (one row per sample, a ``reward`` and a
  ``prompt_id`` or ``prompt``), from a ``lab train`` run folder (its ``reference.parquet``)
  or a ``.parquet`` / ``.csv`` / ``.jsonl`` file.
* :func:`build_estimator`: a lab estimator with its parameters, fed its reference samples when
  its class says it wants them (``wants_reference``, never by name).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from lab import estimators
from lab.errors import UsageError

REFERENCE_SPLIT = "train"
"""The rows of a file with a ``split`` column that are the training prompts' reference samples."""


def hash_prompt(prompt: Any) -> int:
    """A stable non-negative 62-bit id for a prompt (text or chat messages): BLAKE2b of its JSON.

    Stable across processes, machines and Python versions (no ``hash()`` salt).

    >>> hash_prompt("2+2=") == hash_prompt("2+2="), hash_prompt("2+2=") == hash_prompt("2+3=")
    (True, False)
    >>> hash_prompt([{"role": "user", "content": "2+2="}]) < 2**62
    True
    """
    if isinstance(prompt, np.ndarray):
        prompt = prompt.tolist()
    text = json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2  # < 2**62: fits int64, stays >= 0


def _read_table(p: Path, field: str):
    import pandas as pd

    if p.is_dir():
        from lab.runs import read_reference  # a lab train run folder: its reference.parquet, checked

        return read_reference(p)
    if not p.is_file():
        raise UsageError(f"{field}={p}: no such file or run folder (give a run folder with reference.parquet, "
                         "or a .parquet, .csv or .jsonl of reference rewards)")
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix == ".csv":
        return pd.read_csv(p)
    if p.suffix in (".jsonl", ".json"):
        return pd.read_json(p, lines=True)
    raise UsageError(f"{field}={p}: unsupported file type {p.suffix!r}; use a run folder, .parquet, .csv or .jsonl")


def load_reference(path: str | Path, *, field: str = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-policy rewards: ``(prompt_ids (M,) long, rewards (M,) float64)``.

    ``path`` is a ``lab train`` run folder (its ``reference.parquet``: ``prompt_id`` int64,
    ``split``, ``sample``, ``prompt``, ``completion``, ``reward`` float64) or a ``.parquet``,
    ``.csv`` or ``.jsonl`` file with a ``reward`` column and either ``prompt_id`` (the
    dataset's id: verl's ``extra_info.index``, the TRL dataset's ``prompt_id`` column) or
    ``prompt`` (hashed with :func:`hash_prompt`). With a ``split`` column only the
    ``"train"`` rows count (probe prompts may reuse ids). Several rows per prompt are the m
    samples an estimator averages over. ``field`` names the setting in error messages.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "ref.jsonl")
    >>> _ = open(f, "w").write('{"prompt_id": 3, "reward": 1.0}\\n{"prompt_id": 3, "reward": 0.0}\\n')
    >>> ids, rewards = load_reference(f)
    >>> ids.tolist(), rewards.tolist()
    ([3, 3], [1.0, 0.0])
    """
    p = Path(path)
    df = _read_table(p, field)
    if "reward" not in df.columns or not ({"prompt_id", "prompt"} & set(df.columns)):
        raise UsageError(f"{field}={p}: needs a 'reward' column and a 'prompt_id' or 'prompt' column; has {list(df.columns)}")
    if "split" in df.columns:
        df = df[df["split"] == REFERENCE_SPLIT]
    if "prompt_id" in df.columns:
        ids = [int(i) for i in df["prompt_id"]]
    else:
        ids = [hash_prompt(x) for x in df["prompt"]]
    rewards = torch.tensor(df["reward"].to_numpy(dtype=np.float64))
    if not bool(torch.isfinite(rewards).all()):
        raise UsageError(f"{field}={p}: the reward column has non-finite values")
    return torch.tensor(ids, dtype=torch.long), rewards


def build_estimator(name: str, params: Mapping[str, Any] | None = None, reference: str | Path | None = None, *,
                    field: str = "reference") -> estimators.Estimator:
    """``lab.estimators.get(name, **params)``, then ``set_reference(prompt_ids, rewards)`` from
    :func:`load_reference` when the estimator's class has ``wants_reference`` and ``reference``
    is given. An estimator configured to use *only* reference samples (``online_prior`` off)
    without any is refused, naming ``field``. A reference for an estimator that does not want
    one is ignored.

    >>> build_estimator("grpo", {}, reference=None).name
    'grpo'
    """
    est = estimators.get(name, **dict(params or {}))
    if getattr(est, "wants_reference", False):
        if reference:
            est.set_reference(*load_reference(reference, field=field))
        elif getattr(est, "online_prior", None) in (False, "never"):
            raise UsageError(f"{field}: {name} with online_prior off needs reference samples: set {field} to a run "
                             "folder (reference.parquet) or a .parquet/.csv/.jsonl with prompt_id and reward columns")
    return est
