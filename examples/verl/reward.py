"""verl reward function for data written by ``make_data.py``: the lab task's own reward.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per
response (``reward.custom_reward_function.path=examples/verl/reward.py``).
"""

from __future__ import annotations

import json
from functools import lru_cache

from lab import tasks
from lab.tasks.base import Example


@lru_cache(maxsize=None)
def _task(name: str, params_json: str):
    return tasks.get(name, **json.loads(params_json))


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    info = extra_info or {}
    name = info.get("task") or str(data_source).removeprefix("lab/")
    task = _task(name, info.get("task_params") or "{}")
    meta = json.loads(info["meta"]) if info.get("meta") else {}
    ex = Example(prompt_id=int(info.get("index", 0)), prompt="", answer=str(ground_truth), meta=meta)
    return float(task.reward(solution_str, ex))
