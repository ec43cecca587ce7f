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
    "03_basis": ["Fallback.", "No reference stage.", "The margin."],
    "04_kl3_clipping": ["A bigger budget.", "Clip-higher.", "Move further."],
    "05_beyond_the_seeds": ["Decay.", "G = 1.", "Your own source."],
    "06_launch_training": ["No reuse.", "A bad value.", "On a GPU."],
}
UNCHECKED = {
    ("05_beyond_the_seeds", "Your own source."): "a code-writing exercise: the reader's own fourth source",
    ("06_launch_training", "On a GPU."): "needs a GPU and a run ten times the size of the lesson's",
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
WINDOWS_01 = {"lesson": {"min_width": 4.0}, "default": {}, "width 8": {"width": 8.0}}  # section 5's, and Try this's two


def test_01_window_the_default_floor_shrinks_kaes_gain_over_rloo_and_a_width_of_8_grows_it_a_little():
    from lab import estimators
    from lab.analysis.bandit import value_mse_run
    from lab.estimators.kernel import kernel_weights

    def lags(params, t=3):  # a block's last step: the weights of its three earlier steps
        kae = estimators.get("kae", **params)
        return [round(float(kernel_weights(torch.tensor([lag / kae.window(t)]), kae.kernel)), 4) for lag in (1, 2, 3)]

    assert [estimators.get("kae").window(t) for t in range(10)] == [3.0] * 10  # h t < 3 over the lesson's 10 steps
    assert {k: lags(p) for k, p in WINDOWS_01.items()} == {
        "lesson": [0.75, 0.5, 0.25], "default": [0.6667, 0.3333, 0.0], "width 8": [0.875, 0.75, 0.625]}

    def share(params, g, seed):  # section 5's shape on the exact bandit: 8 per step, each for 4 steps, prompts not back
        kw = dict(steps=10, reuse=4, seed=seed, n_prompts=5000, prompts_per_step=8)
        kae = value_mse_run("kae", g, make=lambda _: estimators.get("kae", **params), **kw).mse[1:].sum()
        return float(kae / value_mse_run("rloo", g, **kw).mse[1:].sum())  # KAE's value MSE as a share of RLOO's

    seeds = range(10)
    for g in (2, 4):
        r = {k: [share(p, g, s) for s in seeds] for k, p in WINDOWS_01.items()}
        mean = {k: sum(v) / len(v) for k, v in r.items()}
        assert all(d > les for d, les in zip(r["default"], r["lesson"])), (g, r)  # every seed: the gain shrinks
        assert mean["width 8"] < mean["lesson"] and sum(w < les for w, les in zip(r["width 8"], r["lesson"])) >= 8, (g, r)
        assert mean["lesson"] - mean["width 8"] < mean["default"] - mean["lesson"], (g, mean)  # grows less than it shrinks


SECTION5_01 = ("OUT = notebook_runs_dir(", "probes = pd.concat(", "from lab.analysis import claims")


@pytest.mark.slow
def test_01_window_a_live_run_of_section_5_cannot_tell_the_three_windows_apart(tmp_path, monkeypatch, capsys):
    from lab import runs

    monkeypatch.setenv("LAB_NOTEBOOK_RUNS", str(tmp_path))
    lesson = 'estimator_params={"min_width": 4.0}'
    assert lesson in _cell("01_kernel_smoothing", SECTION5_01[0])
    effect = {}
    for k, p in WINDOWS_01.items():
        ns = _run("01_kernel_smoothing", *SECTION5_01, **{lesson: f"estimator_params={p!r}", 'run_name=f"kae-g{g}"': f'run_name=f"{k.replace(" ", "")}-g{{g}}"'})
        assert ns["base"].estimator_params == p and Path(ns["live"][2]).name == f"{k.replace(' ', '')}-g2"  # its own runs
        for g in (2, 4):
            effect[k, g] = e = ns["conclusions"][(g, "rloo")].effect
            assert e.n == 9 and e.value < 1, (k, g, e)  # nine probe steps; KAE below RLOO in each setting
            block = runs.load_run(ns["live"][g], probes=False).samples.assign(block=lambda s: s["step"] // 4)
            assert block.groupby("prompt_id")["block"].nunique().max() == 1, "a block's prompt came back"
    assert "KAE's value MSE ÷ rloo's, G = 2" in capsys.readouterr().out
    for g in (2, 4):
        for a in WINDOWS_01:
            for b in WINDOWS_01:
                assert effect[b, g].low < effect[a, g].value < effect[b, g].high, (g, a, b, effect)


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


# ---- 03: BASIS -------------------------------------------------------------------------------
def _basis(**kw):
    """BASIS on two always-solved prompts (reference samples 1, 1, 1, 1; rewards now 1 and 0), one 3-of-4
    prompt and three mixed ones: (its advantages, the batch rewards)."""
    from lab import estimators
    from lab.estimators import RewardBatch

    ref = {0: [1, 1, 1, 1], 1: [1, 1, 1, 1], 2: [1, 1, 1, 0], 3: [1, 0, 0, 0], 4: [0, 1, 1, 0], 5: [1, 1, 0, 0]}
    est = estimators.get("basis", **kw)
    est.set_reference(torch.tensor([p for p, s in ref.items() for _ in s]), torch.tensor([x for s in ref.values() for x in s], dtype=torch.float64))
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    return est(RewardBatch(r, torch.arange(6))).advantages, r


def test_03_fallback_zero_gives_an_always_solved_prompt_its_bare_reward_and_a_g1_warning():
    from lab.config import TrainConfig, config_warnings
    from lab.estimators.basis import soft_value

    zero, r = _basis(fallback="zero")
    prior, _ = _basis()
    assert zero[:2].tolist() == r[:2].tolist() == [1.0, 0.0]  # A = r: +1 for a success, 0 for a failure
    assert torch.allclose(prior[:2], torch.tensor([0.0, -1.0], dtype=prior.dtype))  # the prior fallback: baseline 1
    three = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    at = {b: float(soft_value(three, torch.ones_like(three, dtype=torch.bool), b)) for b in (0.05, 0.1, 0.2)}
    assert at[0.05] > at[0.1] > 1 - 0.03 > at[0.2], at  # a small beta lifts 3 of 4 out of the active set
    cfg = dict(estimator="basis", shadow_estimators=("reinforce_plus_plus",), reference_samples=4, rollouts_per_prompt=1,
               prompts_per_step=32, prompt_reuse=4, train_pool_size=64, probe_every=0, eval_every=0, device="cpu")
    zero_cfg = {**cfg, "estimator_params": {"fallback": "zero"}}
    warned = [w for w in config_warnings(TrainConfig(**{**zero_cfg, "reference_samples": 0})) if "have no baseline" in w]
    assert len(warned) == 1 and "rollout per prompt basis have no baseline" in warned[0]  # no reference stage: no baseline
    assert not any("have no baseline" in w for w in config_warnings(TrainConfig(**zero_cfg)))  # with it: baselines in S
    assert not any("have no baseline" in w for w in config_warnings(TrainConfig(**cfg)))


def test_03_no_reference_stage_second_visits_fall_back_to_the_last_reward_and_the_error_grows(tmp_path):
    from lab import runs
    from lab.analysis.bandit import value_mse_run
    from lab.runs import RunReadError

    r = _tiny_runs(tmp_path, {"b": dict(estimator="basis")}, reference_samples=0, rollouts_per_prompt=1,
                   prompts_per_step=8, train_pool_size=8, prompt_reuse=4, steps=2)["b"]
    s, m = r.samples.sort_values(["step", "prompt_id"]), r.metrics.set_index("step")
    first, second = s[s["step"] == 0], s[s["step"] == 1]
    assert m.loc[0, "est/active_frac"] == 1.0 and m.loc[1, "est/active_frac"] == 0.0
    loo = (first["reward"].sum() - first["reward"]) / (len(first) - 1)  # every prior 0.5: the leave-one-out batch mean
    assert (first["baseline"] - loo).abs().max() < 1e-9
    assert second["baseline"].tolist() == first["reward"].tolist()  # one own reward: prior 0 or 1, outside S
    with pytest.raises(RunReadError, match=r"without a reference stage \(reference_samples=0\); train with --reference-samples"):
        runs.read_reference(tmp_path / "b")

    def mse(name, seed, ref, steps):  # section 5's shape on the exact bandit: pool 64, 32 per step, each for 4 steps
        return float(value_mse_run(name, 1, steps=steps, reuse=4, seed=seed, n_prompts=64, prompts_per_step=32,
                                   reference_samples=ref).mse[1:].mean())

    seeds = range(3)
    short = {k: [mse(n, s, ref, 8) for s in seeds] for k, (n, ref) in {"ref": ("basis", 4), "none": ("basis", 0), "rpp": ("reinforce_plus_plus", 0)}.items()}
    assert all(a > b for a, b in zip(short["none"], short["ref"]))
    assert sum(short["none"]) > sum(short["rpp"]) > sum(short["ref"])
    long = {k: [mse("basis", s, ref, 40) for s in seeds] for k, ref in {"ref": 4, "none": 0}.items()}
    assert all(a < b for a, b in zip(long["none"], long["ref"]))  # a longer run, the pool coming back: the order flips


SECTION5_03 = ("OUT = notebook_runs_dir(", "from lab.analysis import claims", "figures.value_mse_figure(", "basis_run = runs.load_run(",
               "fig = px.scatter(", "prior_rows = ", "samples = runs.load_run(", 'print("open these runs')


@pytest.mark.slow
def test_03_no_reference_stage_the_training_cell_says_there_are_no_reference_samples_and_section_5_still_runs(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAB_NOTEBOOK_RUNS", str(tmp_path))
    ns = _run("03_basis", *SECTION5_03, **{"reference_samples=4": "reference_samples=0", "steps=8": "steps=4"})
    out = capsys.readouterr().out
    assert "there are no reference samples in this run (reference_samples=0; set reference_samples > 0" in out
    assert "ref" not in ns and not re.search(r"reference stage: \d+ samples", out)  # the reference line is skipped
    assert ns["basis_cfg"].reference_samples == 0 and not (ns["live"]["basis G=1"] / "reference.parquet").exists()
    assert len(ns["active"]) == 4 and len(ns["conclusions"]) == 2  # the rest of section 5 ran on the run
    assert "open these runs in the dashboard" in out


def test_03_the_margin_prompts_at_0_2_and_0_8_leave_s_together_at_eps_0_2():
    cell = "mu, r = torch.tensor("
    ns = _run("03_basis", cell, **{"online_prior=False)": "online_prior=False, eps=0.19)"})
    assert ns["out"].baselines.numpy().round(3).tolist() == [0.5, 0.517, 0.873] and ns["out"].info["active_frac"] == 1.0
    with pytest.raises(AssertionError):
        _run("03_basis", cell, **{"online_prior=False)": "online_prior=False, eps=0.2)"})
    ns = _run("03_basis", cell, **{"online_prior=False)": "online_prior=False, eps=0.2)", "assert np.allclose": "np.allclose"})
    assert ns["out"].baselines.tolist() == ns["mu"].tolist() and abs(ns["out"].info["active_frac"] - 1 / 3) < 1e-12
    with pytest.raises(ValueError, match="eps"):
        _run("03_basis", cell, **{"online_prior=False)": "online_prior=False, eps=0.5)"})


# ---- 05: beyond the seeds --------------------------------------------------------------------
def _replay(samples, est, *, weights: bool = False):
    """The run's rollouts, step by step, through ``est``: its baselines (or source shares), rows in the samples' order."""
    from lab.estimators import RewardBatch

    out = []
    for step, s in samples.groupby("step", sort=True):
        batch = RewardBatch(torch.tensor(s["reward"].to_numpy()), torch.tensor(s["prompt_id"].to_numpy()), step=int(step))
        shares = est.source_weights(batch) if weights else None  # before the estimator remembers the batch
        baselines = est(batch).baselines
        out.append(shares if weights else baselines)
    return torch.cat(out)


def test_05_decay_changes_only_later_visits_and_faster_forgetting_raises_the_exact_error(tmp_path):
    from lab import estimators
    from lab.analysis.bandit import value_mse_run

    s = _tiny_runs(tmp_path, {"b": dict(estimator="blend", estimator_params={"decay": 0.8})}, rollouts_per_prompt=2,
                   prompts_per_step=4, prompt_reuse=4, steps=5)["b"].samples.sort_values("step", kind="stable")
    assert s["prompt_id"].nunique() == 2 * 4, "a prompt came back after its block"
    logged = torch.tensor(s["baseline"].to_numpy())
    fast, default = _replay(s, estimators.get("blend", decay=0.8)), _replay(s, estimators.get("blend"))
    assert torch.allclose(fast, logged)  # the replay matches once it gets the run's parameters ...
    first = torch.tensor((s["step"] % 4 == 0).to_numpy())
    assert torch.equal(default[first], fast[first])  # ... and a block's first step has no history to decay
    assert not torch.allclose(default[~first], fast[~first])  # the defaults' replay differs: the notebook's uses the run's config
    w_fast, w_default = (_replay(s, estimators.get("blend", **kw), weights=True) for kw in ({"decay": 0.8}, {}))
    assert float(w_fast[~first, 1].mean()) < float(w_default[~first, 1].mean())  # less weight on history

    def mse(decay, seed, n_prompts):  # section 4's shape: G = 2, 8 prompts per step, each for 4 steps
        return float(value_mse_run("blend", 2, steps=20, reuse=4, seed=seed, n_prompts=n_prompts, prompts_per_step=8, reference_samples=0,
                                   make=lambda n: estimators.get("blend", decay=decay)).mse[4:].mean())

    ratio = {n: [mse(0.8, seed, n) / mse(0.95, seed, n) for seed in range(10)] for n in (5000, 64)}
    rare, back = sum(ratio[5000]) / 10, sum(ratio[64]) / 10  # prompts seldom back (as in section 4), or back after their block
    assert 1 < rare < 1.05 and back > 1.02 and back > rare, ratio
    assert sum(x > 1 for x in ratio[64]) >= 9, ratio


@pytest.mark.slow
def test_05_decay_the_replay_check_rebuilds_blend_with_the_runs_saved_estimator_params_and_matches_the_log(
        tmp_path, monkeypatch, capsys):
    from lab import estimators

    monkeypatch.setenv("LAB_NOTEBOOK_RUNS", str(tmp_path))
    ns = _run("05_beyond_the_seeds", "OUT = notebook_runs_dir(", "run = runs.load_run(",
              **{'TrainConfig(estimator="blend",': 'TrainConfig(estimator="blend", estimator_params={"decay": 0.8},', "steps=10": "steps=3"})
    from lab.config import TrainConfig

    saved = TrainConfig.from_dict(ns["run"].config)
    assert ns["replay_ok"] and saved.estimator_params == {"decay": 0.8}  # the cell's replay assertions passed
    assert "kae (min_width=4)" in capsys.readouterr().out  # and it went on to print the value table
    s = ns["run"].samples.sort_values("step", kind="stable")
    logged = torch.tensor(s["baseline"].to_numpy())
    assert torch.allclose(_replay(s, estimators.get("blend", **saved.estimator_params)), logged)
    assert not torch.allclose(_replay(s, estimators.get("blend")), logged)  # the defaults' replay would have stopped it


def test_05_g1_the_group_share_is_zero_the_batch_has_first_visits_and_history_a_share_after(tmp_path):
    from lab import estimators
    from lab.config import TrainConfig, config_warnings

    s = _tiny_runs(tmp_path, {"b": dict(estimator="blend", shadow_estimators=("rloo",))}, rollouts_per_prompt=1,
                   prompts_per_step=16, prompt_reuse=4, steps=4)["b"].samples.sort_values("step", kind="stable")
    assert bool((s["baseline__rloo"] == 0).all())
    w = _replay(s, estimators.get("blend"), weights=True)
    visit = torch.tensor(s["step"].to_numpy())  # one block of 4 steps: the step is the visit
    assert bool((w[:, 0] == 0).all())
    assert bool((w[visit == 0, 2] == 1).all())
    assert torch.allclose(w[:, 1] + w[:, 2], torch.ones(len(w), dtype=w.dtype))  # the group's share went to the other two
    assert bool((w[visit > 0, 1] > 0).all()) and bool((w[visit == 0, 1] == 0).all())
    warned = config_warnings(TrainConfig(estimator="blend", shadow_estimators=("kae", "basis", "rloo"), rollouts_per_prompt=1,
                                         prompts_per_step=16, prompt_reuse=4))
    assert any("rollout per prompt rloo have no baseline" in x for x in warned), warned


# ---- 06: launch training ---------------------------------------------------------------------
def _launcher(tmp_path, **fields):
    from lab.widgets import Launcher

    la = Launcher(estimator="kae", shadow_estimators=("grpo", "rloo"), output_dir=str(tmp_path))  # the lesson's form
    for name, value in fields.items():
        la.fields[name].value = value
    return la


def test_06_no_reuse_training_kae_is_rloo_but_its_fixed_probe_instance_keeps_a_history(tmp_path):
    from lab import estimators, runs
    from lab.train import train

    la = _launcher(tmp_path, prompt_reuse=1)
    cfg = la.config()
    assert (cfg.prompt_reuse, cfg.probe_set, cfg.probe_every) == (1, "fixed", 2)
    assert estimators.get("kae").window(cfg.probe_every) > cfg.probe_every  # the previous probe is inside the window
    small = dict(steps=3, prompts_per_step=4, probe_prompts=4, probe_samples=2, eval_every=0, checkpoint_every=0, device="cpu")
    diff = {}
    for probe_set in ("fixed", "batch"):
        r = runs.load_run(train(cfg.replace(run_name=probe_set, probe_set=probe_set, **small)))
        assert r.samples["prompt_id"].nunique() == 3 * 4, "no prompt came back"
        assert (r.samples["baseline"] - r.samples["baseline__rloo"]).abs().max() < 1e-12
        b = r.probes[r.probes["step"] > 0].pivot_table(index=["step", "prompt_id"], columns="estimator", values="baseline_mean")
        diff[probe_set] = float((b["kae"] - b["rloo"]).abs().max())
        if probe_set == "batch":
            m = r.metrics.dropna(subset=["probe/value_mse_corrected/kae"])
            assert (m["probe/value_mse_corrected/kae"] - m["probe/value_mse_corrected/rloo"]).abs().max() < 1e-12
    assert diff["fixed"] > 0.01 and diff["batch"] < 1e-12, diff


def test_06_a_bad_value_names_the_field_and_nothing_starts(tmp_path):
    la = _launcher(tmp_path, prompts_per_step=0)
    la.start_button.click()
    assert "prompts_per_step: must be an integer >= 1, got 0" in la.status.value
    assert not la.running and la.run_dir is None and not any(tmp_path.iterdir())
