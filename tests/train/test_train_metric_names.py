"""docs/metrics.md lists exactly the names a metrics line can hold (both ways), read from the code that
builds them (lab/train/records.py, the policy loss's diagnostics, the probes' summary)."""

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from lab import estimators, losses
from lab.estimators import RewardBatch
from lab.train import Scored, StepRecord, records

ROOT = Path(__file__).resolve().parents[2]


def documented_names() -> set[str]:
    """Every backticked name in the first column of docs/metrics.md's table."""
    names = set()
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def a_full_metrics_line() -> dict:
    """records.metrics of a step with everything: a KL penalty, probes, an eval, estimator info."""
    n, t = 4, 3
    out = SimpleNamespace(completion_mask=torch.ones(n, t, dtype=torch.bool), finish_reasons=["stop", "length"] * 2)
    r = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    adv = estimators.get("grpo")(RewardBatch(r, torch.tensor([0, 0, 1, 1])))
    adv = estimators.Advantages(adv.advantages, adv.baselines, {"<key>": 1.0})
    logp = torch.zeros(n, t)
    _, diag = losses.policy_loss(logp, logp, adv.advantages.float(), out.completion_mask, "ppo", "token-mean",
                                 measure="ratio", delta=0.2)
    loss = {**diag, **records.update_metrics(total=0.0, grad_norm=0.0, entropy=0.0, kl_ref=0.0)}
    probes = pd.DataFrame({"estimator": ["<name>"], "sq_err": [0.0], "truth_se": [0.0], "truth": [0.0]})
    rec = StepRecord(step=0, examples=[], rollout=out, scored=Scored(r, 0, []), prompt_ids=torch.tensor([0, 0, 1, 1]),
                     advantages=adv, shadows={}, zero_std_frac=0.0, probes=probes,
                     evals=records.eval_metrics(r, 0), loss=loss, rollout_time_s=1.0, step_time_s=1.0)
    return records.metrics(rec, elapsed_s=1.0, warmup_s=0.0, ref_rollouts=0, ref_time_s=0.0)


def test_docs_metrics_lists_every_name_a_metrics_line_holds_and_no_other():
    line = a_full_metrics_line()
    logged = set(line)
    assert set(records.STEP_METRICS) | set(records.EVAL_METRICS) <= logged
    docs = documented_names()
    assert logged - docs == set(), "logged but not in docs/metrics.md"
    assert docs - logged == set(), "in docs/metrics.md but never logged"


def test_the_estimator_diagnostics_docs_metrics_names_are_real_info_keys():
    text = (ROOT / "docs" / "metrics.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `est/<key>`"))
    named = set(re.findall(r"`est/(\w+)`", row))
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    info = set()
    for name in estimators.available():
        est = estimators.get(name)
        for step in range(3):
            info |= set(est(RewardBatch(r, torch.tensor([0, 0, 1, 1, 2, 2]), step=step)).info)
    assert named and named <= info, named - info
