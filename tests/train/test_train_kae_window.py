"""KAE sees its previous probe in the launcher's default run (issue 22, item 2)."""

import pytest
import torch

from lab import estimators, runs, widgets
from lab.config import TrainConfig
from lab.estimators import RewardBatch
from lab.train import train


def test_kaes_probe_instance_gives_the_previous_probe_weight_at_least_a_tenth_in_the_launchers_defaults():
    c = TrainConfig(**widgets.LAUNCHER_DEFAULTS)
    kae = estimators.get("kae")
    ids = torch.arange(c.probe_prompts).repeat_interleave(c.rollouts_per_prompt)
    probe_steps = list(range(0, c.steps, c.probe_every))
    g = torch.Generator().manual_seed(0)
    for k, t in enumerate(probe_steps):
        if k:
            w = kae._weights(t, "cpu")[kae._hist.step == probe_steps[k - 1]]
            assert w.numel() and float(w.min()) >= 0.1, (t, kae.window(t))
        kae(RewardBatch((torch.rand(ids.shape[0], generator=g) < 0.5).double(), ids, step=t))


@pytest.mark.slow
def test_kae_and_rloo_probe_value_errors_differ_from_the_second_probe_on_in_the_launchers_default_run(tmp_path):
    """The launcher's defaults, with the sizes that only set how long a step takes made small
    (prompts and tokens per step, Monte-Carlo samples per probe prompt): which probes KAE sees
    depends on probe_every, prompt_reuse, G and the probe prompts, all kept."""
    d = widgets.LAUNCHER_DEFAULTS
    cost = dict(prompts_per_step=2, max_new_tokens=4, probe_samples=2)
    cfg = TrainConfig(**{**d, **cost, "steps": 2 * d["probe_every"] + 1, "eval_every": 0, "checkpoint_every": 0,
                         "shadow_estimators": ("rloo",), "estimator": "kae", "quiet": True, "device": "cpu",
                         "output_dir": str(tmp_path), "run_name": "r"})
    m = runs.load_run(train(cfg)).metrics.set_index("step")
    probes = [s for s in m.index if s % d["probe_every"] == 0]
    assert len(probes) == 3
    assert m.loc[probes[0], "probe/value_mse/kae"] == m.loc[probes[0], "probe/value_mse/rloo"]  # no history yet
    for s in probes[1:]:
        assert m.loc[s, "probe/value_mse/kae"] != m.loc[s, "probe/value_mse/rloo"], s
