"""The adapter inside verl's own registries and dispatch (runs in .venv-verl; skips without verl).

Each test goes through verl's public entry points (``get_adv_estimator_fn``,
``ray_trainer.compute_advantage`` on a ``DataProto``, ``get_policy_loss_fn`` with verl's
``ActorConfig``) and compares with either verl's own estimator/loss of the same math or the
lab's function called directly.
"""

import uuid

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is not installed here: run `make test-integrations` (builds .venv-verl)")

from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from lab import estimators, losses  # noqa: E402
from lab.estimators import RewardBatch  # noqa: E402
from lab.integrations import verl as lv  # noqa: E402


def outcome_batch(rewards, groups, lengths, T=8):
    uids = {g: str(uuid.uuid4()) for g in set(groups)}
    B = len(rewards)
    mask = torch.zeros(B, T, dtype=torch.float32)
    tlr = torch.zeros(B, T, dtype=torch.float32)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        mask[i, :n] = 1
        tlr[i, n - 1] = r
    return tlr, mask, np.array([uids[g] for g in groups], dtype=object)


REWARDS = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.0]
GROUPS = [0, 0, 1, 1, 1, 2, 0, 2, 3]
LENGTHS = [3, 8, 1, 5, 2, 7, 4, 6, 2]


def test_importing_verl_registers_the_lab_through_its_plugin_entry_point():
    assert set(lv.estimator_names()) <= set(core_algos.ADV_ESTIMATOR_REGISTRY)
    assert set(lv.policy_loss_names()) <= set(core_algos.POLICY_LOSS_REGISTRY)
    assert lv.register() == []  # already there


@pytest.mark.parametrize("lab_name,verl_name", [("grpo", "grpo"), ("rloo", "rloo"), ("dr_grpo", None),
                                                ("reinforce_plus_plus_baseline", "reinforce_plus_plus_baseline")])
def test_lab_group_estimators_equal_verls_own_through_compute_advantage(lab_name, verl_name):
    tlr, mask, uids = outcome_batch(REWARDS, GROUPS, LENGTHS)

    def run(name, **kw):
        data = DataProto.from_dict(tensors={"token_level_rewards": tlr.clone(), "response_mask": mask.clone()},
                                   non_tensors={"uid": uids})
        return compute_advantage(data, adv_estimator=name, config=core_algos.AlgoConfig() if hasattr(core_algos, "AlgoConfig") else None, **kw).batch["advantages"]

    ours = run("lab_" + lab_name)
    direct = estimators.get(lab_name)(RewardBatch(torch.tensor(REWARDS, dtype=torch.float64), torch.tensor(GROUPS))).advantages
    torch.testing.assert_close(ours[:, 0].double(), direct, atol=1e-6, rtol=0)
    if verl_name == "grpo":
        theirs = run("grpo")
    elif verl_name is not None:
        theirs = run(verl_name)
    else:  # Dr. GRPO is verl's grpo with norm_adv_by_std_in_grpo=False
        theirs = run("grpo", norm_adv_by_std_in_grpo=False)
    if lab_name == "reinforce_plus_plus_baseline":
        # The one documented difference (docs/estimators.md): verl whitens the centred rewards
        # over valid *tokens* (a long answer weighs more), the lab over rollouts. verl's result
        # is exactly the token-weighted whitening of the lab's centred rewards r - mean_g:
        import verl.utils.torch_functional as verl_F

        centred = estimators.get("dr_grpo")(RewardBatch(torch.tensor(REWARDS, dtype=torch.float64), torch.tensor(GROUPS))).advantages
        token_whitened = verl_F.masked_whiten(centred.float()[:, None] * mask, mask) * mask
        torch.testing.assert_close(theirs, token_whitened, atol=1e-5, rtol=0)
        assert not torch.allclose(ours, theirs, atol=1e-3)  # the weighting does matter here
        return
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_lab_kae_through_verls_dispatch_keeps_memory_across_steps_with_fresh_uids():
    ctx = lv.CONTEXT
    ctx.reset()
    fn = core_algos.get_adv_estimator_fn("lab_kae")
    kae = estimators.get("kae")
    for step, (rewards, pids) in enumerate([([1.0, 0.0, 1.0, 1.0], [7, 7, 8, 8]), ([1.0, 1.0, 0.0, 1.0], [7, 7, 8, 8]),
                                            ([0.0, 0.0, 1.0, 1.0], [8, 8, 7, 7])]):
        tlr, mask, uids = outcome_batch(rewards, pids, [2, 3, 1, 4])  # new uuid4 per prompt each step
        ctx.record_prompts(uids, pids)
        ctx.set_step(step)
        adv, ret = fn(token_level_rewards=tlr, response_mask=mask, index=uids, config=None)
        want = kae(RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(pids), step=step)).advantages
        torch.testing.assert_close(adv[:, 0].double(), want, atol=1e-6, rtol=0)
        assert torch.all(adv[mask == 0] == 0) and torch.equal(adv, ret)
    assert ctx.estimators["kae"].state_dict()["pid"].numel() > 0
    ctx.reset()


def actor_config(**kw):
    from verl.workers.config import ActorConfig

    base = dict(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2, clip_ratio_low=0.2,
                clip_ratio_high=0.2, clip_ratio_c=3.0)
    base.update(kw)
    return ActorConfig(**base)


def loss_inputs(seed=0, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g) * 3
    new = old + 0.5 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)[:, None].expand(B, T).contiguous()
    mask = (torch.rand(B, T, generator=g) < 0.8).float()
    mask[:, 0] = 1
    return old, new, adv, mask


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_lab_dual_clip_equals_verls_vanilla_loss(agg):
    """verl's "vanilla" is PPO clip + dual clip (c = 3): the lab's ``dual_clip`` rule."""
    old, new, adv, mask = loss_inputs()
    cfg = actor_config(clip_ratio_high=0.28)
    ours, om = core_algos.get_policy_loss_fn("lab_dual_clip")(old, new, adv, mask, agg, cfg, None)
    theirs, tm = core_algos.get_policy_loss_fn("vanilla")(old, new, adv, mask, agg, cfg, None)
    torch.testing.assert_close(ours, theirs)
    for k in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
        assert om[k] == pytest.approx(tm[k], abs=1e-6), k


@pytest.mark.parametrize("measure,delta", [("kl3", 0.03), ("kl1", 0.2), ("kl2", 0.02)])
def test_lab_ppo_with_a_kl_measure_equals_lab_policy_loss(measure, delta):
    old, new, adv, mask = loss_inputs(seed=1)
    cfg = actor_config(clip_ratio=delta)
    ours, metrics = core_algos.get_policy_loss_fn(f"lab_ppo_{measure}")(old, new, adv, mask, "token-mean", cfg, None)
    want, diag = losses.policy_loss(new, old, adv[:, 0], mask.bool(), "ppo", "token-mean", measure=measure, delta=delta)
    torch.testing.assert_close(ours, want)
    assert metrics["actor/clip_frac_low"] == pytest.approx(diag["actor/clip_frac_low"])
    assert metrics["actor/clip_frac_high"] == pytest.approx(diag["actor/clip_frac_high"])
    assert metrics["actor/approx_kl"] == pytest.approx(diag["actor/approx_kl"])


def test_lab_ppo_matches_clip_higher_from_verls_clip_ratio_low_high():
    old, new, adv, mask = loss_inputs(seed=2)
    cfg = actor_config(clip_ratio_low=0.2, clip_ratio_high=0.28)
    ours, _ = core_algos.get_policy_loss_fn("lab_ppo")(old, new, adv, mask, "token-mean", cfg, None)
    want, _ = losses.policy_loss(new, old, adv[:, 0], mask.bool(), "ppo", measure="ratio", delta_low=0.2, delta_high=0.28)
    torch.testing.assert_close(ours, want)


def test_rollout_importance_weights_multiply_the_per_token_loss_as_in_verl():
    old, new, adv, mask = loss_inputs(seed=3)
    w = torch.rand_like(mask) + 0.5
    cfg = actor_config()
    ours, _ = core_algos.get_policy_loss_fn("lab_dual_clip")(old, new, adv, mask, "token-mean", cfg, w)
    theirs, _ = core_algos.get_policy_loss_fn("vanilla")(old, new, adv, mask, "token-mean", cfg, w)
    torch.testing.assert_close(ours, theirs)


def test_trainer_hooks_install_on_verls_v1_trainer():
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    assert getattr(PPOTrainer, "_lab_hooks_installed", False)  # the plugin installed them on import
    for name in ("_fetch_one_gen_batch", "_compute_advantage", "_save_checkpoint", "_load_checkpoint"):
        assert hasattr(getattr(PPOTrainer, name), "__wrapped__"), name


def test_example_config_composes_with_verls_defaults_and_names_lab_components():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    folder = Path(__file__).resolve().parents[2] / "examples" / "verl"
    with initialize_config_dir(config_dir=str(folder), version_base=None):
        cfg = compose(config_name="lab_kae_kl3")
    assert cfg.algorithm.adv_estimator == "lab_kae"
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "lab_ppo_kl3"
    assert cfg.actor_rollout_ref.actor.clip_ratio == pytest.approx(losses.matched_delta("kl3"), abs=1e-5)
    assert cfg.trainer.use_v1  # the trainer the hooks are installed on
    assert core_algos.get_adv_estimator_fn(cfg.algorithm.adv_estimator) is not None
    assert core_algos.get_policy_loss_fn(cfg.actor_rollout_ref.actor.policy_loss.loss_mode) is not None


def test_the_shipped_tokenizer_loads_with_this_environments_transformers():
    from lab import models

    model, tok = models.load("tiny-arith", device="cpu")
    assert tok("12+7=")["input_ids"] and model.config.vocab_size == 100


VERL_FLOAT_ATOL = 5e-5
"""Stated tolerance of |lab_<x> − verl <x>| on random dense float32 inputs: verl computes in
float32, the lab in float64 (1.1e-5 observed: verl's rounding; docs/integrations.md)."""


def dense_batch(seed, B=24, T=12, groups=6):
    """verl-style dense inputs: float32 N(0, 1) rewards on every valid token, random lengths, G = B / groups."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    tlr = torch.randn(B, T, generator=g) * mask
    ids = [str(uuid.UUID(int=int(i) + 1)) for i in torch.arange(B) % groups]
    return tlr, mask, np.array(ids, dtype=object)


def _verl_adv(name, tlr, mask, uids, **algo):
    data = DataProto.from_dict(tensors={"token_level_rewards": tlr.clone(), "response_mask": mask.clone()}, non_tensors={"uid": uids})
    cfg = core_algos.AlgoConfig(**algo) if hasattr(core_algos, "AlgoConfig") else None
    return compute_advantage(data, adv_estimator=name, config=cfg).batch["advantages"]


@pytest.mark.parametrize("lab_name,verl_name", [("grpo", "grpo"), ("rloo", "rloo")])
def test_on_dense_random_inputs_the_lab_equals_verl_within_the_stated_float_tolerance(lab_name, verl_name):
    worst = 0.0
    for seed in range(8):
        tlr, mask, uids = dense_batch(seed)
        ours, theirs = _verl_adv("lab_" + lab_name, tlr, mask, uids), _verl_adv(verl_name, tlr, mask, uids)
        worst = max(worst, float((ours - theirs).abs().max()))
    assert worst < VERL_FLOAT_ATOL, worst


def test_dense_rewards_differ_from_verls_reinforce_plus_plus_by_its_reward_to_go():
    """The documented difference: verl's reinforce_plus_plus gives token t the reward-to-go
    Σ_{s>=t} γ^{s-t} r_s (then whitens over tokens); the lab sums the response's rewards into one
    and gives every token the same advantage. On outcome rewards (one non-zero, last token) and
    γ = 1 the reward-to-go is that one reward on every token."""
    tlr, mask, uids = dense_batch(0)
    theirs = _verl_adv("reinforce_plus_plus", tlr, mask, uids)
    rtg = torch.flip(torch.cumsum(torch.flip(tlr * mask, [1]), 1), [1]) * mask  # reward-to-go, γ = 1
    import verl.utils.torch_functional as verl_F

    torch.testing.assert_close(theirs, verl_F.masked_whiten(rtg, mask) * mask, atol=1e-5, rtol=0)
    ours = _verl_adv("lab_reinforce_plus_plus", tlr, mask, uids)
    assert float((ours - theirs).abs().max()) > 0.5  # dense rewards: the two really differ
    on_token = ours[mask.bool()]
    per_row = (ours * mask).sum(1) / mask.sum(1)
    assert torch.allclose(ours, per_row[:, None] * mask, atol=1e-6) and on_token.numel() > 0  # one value per response


def test_gamma_other_than_one_is_refused_through_verls_own_dispatch():
    tlr, mask, uids = outcome_batch(REWARDS, GROUPS, LENGTHS)
    from lab.errors import UsageError

    with pytest.raises(UsageError, match=r"algorithm\.gamma=0\.99"):
        _verl_adv("lab_reinforce_plus_plus", tlr, mask, uids, gamma=0.99)
    _verl_adv("lab_reinforce_plus_plus", tlr, mask, uids, gamma=1.0)


def test_verl_check_reports_this_environment():
    from lab.integrations import verl_check

    report = verl_check.check()
    names = {c.name for c in report}
    assert {"verl", "transformers", "rollout engine", "ray", "GPU"} <= names
    assert next(c for c in report if c.name == "verl").ok  # verl 0.9.1 is installed here
    assert not verl_check.can_run(report)  # CPU only, no rollout engine in this environment


VERL_KEYS_IN_LESSONS = ("algorithm.adv_estimator", "algorithm.norm_adv_by_std_in_grpo", "actor_rollout_ref.rollout.n",
                        "actor_rollout_ref.actor.clip_ratio", "actor_rollout_ref.actor.clip_ratio_low",
                        "actor_rollout_ref.actor.clip_ratio_high", "actor_rollout_ref.actor.loss_agg_mode",
                        "actor_rollout_ref.actor.ppo_epochs", "actor_rollout_ref.actor.grad_clip",
                        "actor_rollout_ref.actor.policy_loss.loss_mode")
"""The verl settings the lessons' bridge sections name (notebooks 00–04) or ``lab.notebook.verl_overrides`` writes."""
VERL_BUILTINS_IN_LESSONS = {"adv_estimator": ("grpo", "rloo", "reinforce_plus_plus"), "loss_mode": ("vanilla",),
                            "loss_agg_mode": ("token-mean",)}


def test_every_verl_setting_and_builtin_the_lessons_name_exists_in_this_verl():
    import json
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lab import notebook

    root = Path(__file__).resolve().parents[2]
    text = "\n".join("".join(c["source"]) for p in sorted((root / "notebooks").glob("0*.ipynb"))
                     for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
    with initialize_config_dir(config_dir=str(root / "examples" / "verl"), version_base=None):
        cfg = compose(config_name="lab_kae_kl3")  # verl's own defaults underneath
    written = [p.split("=", 1)[0] for p in notebook.verl_overrides("kae", measure="kl3", delta=0.02, group_size=4,
                                                                    loss_agg="token-mean").split() if "=" in p and "." in p]
    missing = object()
    for key in {*VERL_KEYS_IN_LESSONS, *written}:
        leaf = key.rsplit(".", 1)[1]
        assert key in written or f"`{key}" in text or f"`{leaf}" in text, f"{key}: no lesson names it; drop it here"
        assert OmegaConf.select(cfg, key, default=missing) is not missing, f"{key}: not a setting of verl {verl.__version__}"
    for name in VERL_BUILTINS_IN_LESSONS["adv_estimator"]:
        assert f"`{name}`" in text or f"={name}`" in text
        assert core_algos.get_adv_estimator_fn(name) is not None
    assert core_algos.get_policy_loss_fn("vanilla") is not None
    mat, mask = torch.ones(2, 3), torch.ones(2, 3)
    assert float(core_algos.agg_loss(loss_mat=mat, loss_mask=mask, loss_agg_mode="token-mean")) == pytest.approx(1.0)
