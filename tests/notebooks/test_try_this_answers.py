"""The lessons' "Try this" answers say what the reader will see: each is checked here.

Every lesson listed in ``ANSWERS`` closes with a collapsed ``<details>`` block holding one
answer per Try-this item (same bold names, same order). An answer is either checked by a test
below, which runs the Try-this setting (the notebook's own cell, with the knob changed, or the
same ``lab`` call at a tiny budget) and asserts the direction the answer states, or it says
"Not checked by a test" and why. ``UNCHECKED`` is that list; the report of the notebooks
issue repeats it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"

ANSWERS = {
    "00_one_step": ["Group size.", "Bias.", "Temperature."],
    "01_kernel_smoothing": ["Window.", "Reuse.", "Drift."],
    "02_kalman_baselines": ["Noise constants.", "No gradient clip.", "A larger group."],
    "04_kl3_clipping": ["A bigger budget.", "Clip-higher.", "Move further."],
}
UNCHECKED = {
    ("01_kernel_smoothing", "Window."): "two more live runs of section 5 (about a minute of CPU more than the lesson itself)",
}


def _nb(name):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def _cell(name: str, start: str) -> str:
    found = [c.source for c in _nb(name).cells if c.cell_type == "code" and c.source.startswith(start)]
    assert len(found) == 1, f"{name}: expected one code cell starting with {start!r}"
    return found[0]


def _run(name: str, *cells: str, **replace: str) -> dict:
    """Execute the notebook's first code cell (imports; no display setup) and the cells that
    start with ``cells``, after replacing each ``old`` by ``new`` (``replace={"old": "new"}``
    given as ``_run(..., **{old: new})``); returns the namespace."""
    first = next(c.source for c in _nb(name).cells if c.cell_type == "code")
    ns: dict = {}
    exec(first.replace("notebook.static_images()", "pass"), ns)
    for start in cells:
        src = _cell(name, start)
        for old, new in replace.items():
            src = src.replace(old, new)
        exec(src, ns)
    return ns


def _tiny_runs(tmp_path, runs_: dict, **common):
    """Metrics and samples of short CPU runs (no probes, evals or checkpoints): name -> Run."""
    from lab import runs
    from lab.config import TrainConfig
    from lab.train import train

    base = TrainConfig(shadow_estimators=(), probe_every=0, eval_every=0, checkpoint_every=0, device="cpu",
                       output_dir=str(tmp_path), quiet=True, **common)
    return {n: runs.load_run(train(base.replace(run_name=str(n), **kw)), probes=False) for n, kw in runs_.items()}


def _answers(name: str) -> list[str]:
    text = _nb(name).cells[-1].source
    assert text.startswith("## Try this") and "<details><summary>Answers</summary>" in text, f"{name}: no collapsed answers"
    asked, answered = text.split("<details>", 1)
    questions = re.findall(r"^\* \*\*(.+?)\*\*", asked, re.M)
    answers = re.findall(r"^\* \*\*(.+?)\*\*", answered, re.M)
    assert questions == answers, f"{name}: one answer per Try-this item, same order ({questions} vs {answers})"
    return answers


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_every_try_this_has_an_answer_and_every_unchecked_answer_says_why(name):
    assert _answers(name) == ANSWERS[name]
    answered = _nb(name).cells[-1].source.split("<details>", 1)[1]
    for item in ANSWERS[name]:
        body = answered.split(f"**{item}**", 1)[1].split("\n* **", 1)[0]
        assert ("Not checked by a test" in body) == ((name, item) in UNCHECKED), f"{name} {item}: checked or say why not"


# ---- 00: one step opened ---------------------------------------------------------------------
SECTION1 = ("cfg = TrainConfig(", "scored = score(")


def _one_step(args: str):
    """Section 1 of lesson 00 with ``TrainConfig(prompts_per_step=4, <args>)``: (its table, no-contrast share)."""
    old = "TrainConfig(prompts_per_step=4, rollouts_per_prompt=4)"
    ns = _run("00_one_step", *SECTION1, **{old: f"TrainConfig(prompts_per_step=4, {args})"})
    from lab import estimators

    return ns["step"], estimators.zero_std_frac(ns["rewards"], estimators.group_by(ns["prompt_ids"]))


@pytest.mark.slow
def test_00_group_size_more_rollouts_leave_fewer_groups_without_contrast():
    _, at4 = _one_step("rollouts_per_prompt=4")
    _, at8 = _one_step("rollouts_per_prompt=8")
    assert at8 < at4


def test_00_bias_at_g2_the_group_mean_halves_the_gradient_and_rloo_stays_unbiased():
    ns = _run("00_one_step", "theta = torch.tensor(")
    exact = ns["exact"]
    for name, target in (("dr_grpo", 0.5 * exact), ("rloo", exact)):
        m, se = ns["mc_gradient"](name, G=2)
        assert float(((m - target) / se).abs().max()) < 4, name
    m, se = ns["mc_gradient"]("dr_grpo", G=2)
    assert float(((m - exact) / se).abs().max()) > 4


@pytest.mark.slow
def test_00_temperature_a_sharper_sampler_gives_fewer_distinct_completions():
    hot, _ = _one_step("rollouts_per_prompt=4")
    cold, _ = _one_step("rollouts_per_prompt=4, temperature=0.5")
    assert cold["completion"].nunique() < hot["completion"].nunique()


# ---- 01: kernel smoothing --------------------------------------------------------------------
@pytest.mark.slow
def test_01_reuse_without_history_kae_is_rloo(tmp_path):
    s = _tiny_runs(tmp_path, {"kae": dict(estimator="kae", shadow_estimators=("rloo",))},
                   prompt_reuse=1, rollouts_per_prompt=2, prompts_per_step=4, steps=3)["kae"].samples
    assert s["prompt_id"].nunique() == 12, "no prompt came back, so KAE had no history"
    assert (s["baseline"] - s["baseline__rloo"]).abs().max() < 1e-12
    assert (s["advantage"] - s["advantage__rloo"]).abs().max() < 1e-12


def test_01_drift_the_best_window_shrinks_as_the_drift_grows():
    ns = _run("01_kernel_smoothing", "def bandit_mse", "widths = ")
    best = {}
    for drift in (0.1, 0.3, 0.6):
        mse = [ns["bandit_mse"](lambda w=w: ns["estimators"].get("kae", width=w), 2, drift=drift) for w in ns["widths"]]
        best[drift] = ns["widths"][min(range(len(mse)), key=mse.__getitem__)]
    assert best[0.1] > best[0.3] > best[0.6], best
    assert best[0.1] == max(ns["widths"])


# ---- 02: Kalman baselines --------------------------------------------------------------------
def test_02_noise_constants_a_large_r_pushes_an_all_success_group_up():
    from lab import estimators
    from lab.estimators import RewardBatch

    ones = RewardBatch([1.0, 1.0, 1.0, 1.0], [0, 0, 0, 0])
    big, default = estimators.get("krpo", r=1.0)(ones).advantages, estimators.get("krpo")(ones).advantages
    assert torch.allclose(big, torch.tensor([0.71, 0.58, 0.50, 0.45], dtype=big.dtype), atol=0.01)
    assert bool((big[1:] < big[:-1]).all()) and bool((big > default).all()) and bool((default > 0).all())
    assert torch.allclose(default[[0, -1]], torch.tensor([0.10, 0.05], dtype=big.dtype), atol=0.005)


@pytest.mark.slow
def test_02_no_gradient_clip_krpo_gradients_are_larger_and_approx_kl_stays_zero(tmp_path):
    m = {n: r.metrics for n, r in _tiny_runs(tmp_path, {n: dict(estimator=n) for n in ("grpo", "krpo")},
                                             max_grad_norm=0.0, rollouts_per_prompt=4, prompts_per_step=8, steps=2).items()}
    assert bool((m["krpo"]["actor/grad_norm"] > 3 * m["grpo"]["actor/grad_norm"]).all())
    assert all(float(x["actor/approx_kl"].abs().max()) == 0.0 for x in m.values())


def test_02_a_larger_group_widens_the_order_spread():
    ns = _run("02_kalman_baselines", "gen = torch.Generator()")
    ns8 = _run("02_kalman_baselines", "gen = torch.Generator()",
               **{"[1.0, 0.0, 0.0, 1.0]": "[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]", "randperm(4,": "randperm(8,", "[0, 0, 0, 0]": "[0] * 8"})
    assert ns8["hi_"] > ns["hi_"] and ns8["hi_"] / ns8["lo_"] > ns["hi_"] / ns["lo_"]
    assert abs(ns8["hi_"] - 22.5) < 1.0


# ---- 04: KL3 clipping ------------------------------------------------------------------------
def test_04_a_bigger_budget_kl3_clips_more_below_and_less_above_than_ratio_at_0_3():
    from lab import losses

    low, high = losses.clip_bounds("kl3", 0.05)
    assert (round(low, 3), round(high, 3)) == (0.716, 1.350)
    m_low, m_high = losses.clip_bounds("kl3", losses.matched_delta("kl3"))
    assert round((high - 1) - (1 - low), 3) == 0.067 and round((m_high - 1) - (1 - m_low), 3) == 0.027
    ns = _run("04_kl3_clipping", "gen = torch.Generator()", **{"delta=losses.matched_delta(measure)": "delta={'ratio': 0.3, 'kl3': 0.05}[measure]"})
    fixed = ns["fixed"]
    assert fixed["kl3"]["clip_frac_low"] > fixed["ratio"]["clip_frac_low"]
    assert fixed["kl3"]["clip_frac_high"] < fixed["ratio"]["clip_frac_high"]


def test_04_clip_higher_is_asymmetric_like_kl3_but_by_more():
    from lab import losses

    low, high = losses.clip_bounds("ratio", delta_low=0.2, delta_high=0.28)
    k_low, k_high = losses.clip_bounds("kl3", losses.matched_delta("kl3"))
    assert (low, high) == (0.8, 1.28)
    assert (high - 1) - (1 - low) > (k_high - 1) - (1 - k_low) > 0


@pytest.mark.slow
def test_04_move_further_more_epochs_clip_more_tokens(tmp_path):
    m = {e: r.metrics for e, r in _tiny_runs(tmp_path, {e: dict(ppo_epochs=e) for e in (4, 8)},
                                             rollouts_per_prompt=4, prompts_per_step=4, steps=1, minibatches=2).items()}
    clipped = {e: float((x["actor/clip_frac_low"] + x["actor/clip_frac_high"]).mean()) for e, x in m.items()}
    kl = {e: float(x["actor/approx_kl"].mean()) for e, x in m.items()}
    assert clipped[8] > clipped[4] and kl[8] > kl[4], (clipped, kl)
