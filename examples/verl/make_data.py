"""Write a lab task as verl's RL parquet files (train.parquet, test.parquet).

Each row is what verl's ``RLHFDataset`` reads: ``data_source``, ``prompt`` (chat messages),
``ability``, ``reward_model`` ({"style": "rule", "ground_truth": answer}) and ``extra_info``
with ``index`` = the lab's stable ``prompt_id``, so the lab's stateful estimators in verl
(``lab_kae``, ``lab_blend``, ``lab_basis``) see the same prompt ids as ``lab train``.

    python examples/verl/make_data.py --task arithmetic --out data/verl/arithmetic
    python examples/verl/make_data.py --task gsm8k --task-params '{"path": "gsm8k.jsonl"}' --out data/verl/gsm8k

The reward verl calls is ``examples/verl/reward.py:compute_score`` (the lab task's own reward).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from lab import tasks


def rows(task_name: str, task_params: dict, split: str, n: int, seed: int) -> list[dict]:
    task = tasks.get(task_name, **task_params)
    out = []
    for ex in task.dataset(split, n=n, seed=seed):
        out.append({
            "data_source": f"lab/{task_name}",
            "prompt": [{"role": "user", "content": ex.prompt}],
            "ability": task_name,
            "reward_model": {"style": "rule", "ground_truth": ex.answer},
            "extra_info": {"index": int(ex.prompt_id), "split": split, "task": task_name,
                           "task_params": json.dumps(task_params), "meta": json.dumps(ex.meta)},
        })
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--task-params", default="{}", help="JSON object of task parameters")
    ap.add_argument("--train", type=int, default=2048, help="distinct training prompts")
    ap.add_argument("--test", type=int, default=256, help="distinct test prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/verl/arithmetic")
    a = ap.parse_args(argv)
    params = json.loads(a.task_params)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", a.train), ("test", a.test)):
        df = pd.DataFrame(rows(a.task, params, split, n, a.seed))
        df.to_parquet(out / f"{split}.parquet", index=False)
        print(f"{out / f'{split}.parquet'}: {len(df)} prompts")


if __name__ == "__main__":
    main()
