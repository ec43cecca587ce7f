"""The verl adapter's translation layer against verl's tensor conventions, without verl.

verl's conventions, restated here from its ``core_algos.py`` / ``ray_trainer.py`` (0.9.1):
token-level rewards (B, T) carry the outcome reward on the last valid token; the response
mask (B, T) is 1 on generated tokens; ``index`` is an object array of uid strings (one fresh
uuid4 per prompt per step, the same for the G rollouts of that prompt, in any order); an
advantage function returns (advantages, returns), both (B, T) and zero off the mask. These
tests build such batches by hand and compare with the lab's estimators called directly.
The same functions inside verl's own registries are tested in ``test_verl.py`` (verl env).
"""

import json
import uuid

import numpy as np
import pytest
import torch

from lab import estimators, losses
from lab.estimators import RewardBatch
from lab.integrations import verl as lv


def verl_batch(rewards, groups, lengths, T=6, seed=0):
    """verl-shaped (token_level_rewards, response_mask, uid index) for outcome rewards.

    ``groups[i]`` is rollout i's prompt (ints); each prompt gets a fresh uuid4, as verl does.
    """
    uids = {g: str(uuid.UUID(int=np.random.default_rng(seed + g).integers(2**62))) for g in set(groups)}
    B = len(rewards)
    mask = torch.zeros(B, T)
    tlr = torch.zeros(B, T)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        mask[i, :n] = 1
        tlr[i, n - 1] = r  # verl's reward manager: score on the last valid token
    return tlr, mask, np.array([uids[g] for g in groups], dtype=object)


def test_sequence_rewards_recover_the_outcome_reward_on_the_last_valid_token():
    tlr, mask, _ = verl_batch([1.0, 0.0, 0.5], [0, 0, 1], [3, 6, 1])
    assert lv.sequence_rewards(tlr, mask).tolist() == [1.0, 0.0, 0.5]


def test_sequence_rewards_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="must both be"):
        lv.sequence_rewards(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_plus_plus_baseline", "krpo"])
def test_stateless_estimators_through_the_adapter_equal_the_lab_called_directly(name):
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.0]
    groups = [3, 5, 3, 5, 5, 3, 9]  # interleaved members, a singleton group
    tlr, mask, uids = verl_batch(rewards, groups, [2, 6, 1, 3, 4, 5, 2])
    adv, ret = lv.advantage_fn(name, lv.VerlContext())(tlr, mask, index=uids)
    want = estimators.get(name)(RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(groups))).advantages
    assert adv.shape == mask.shape and adv.dtype == torch.float32
    assert torch.equal(adv, ret)
    assert torch.all(adv[mask == 0] == 0)
    first = adv[torch.arange(len(rewards)), 0]  # every response has token 0 valid
    torch.testing.assert_close(first.double(), want, atol=1e-6, rtol=0)
    rows_const = (adv * mask).sum(1) / mask.sum(1)  # same advantage on every valid token
    torch.testing.assert_close(rows_const, first)


def test_stateful_estimator_needs_stable_ids_and_says_how_to_get_them():
    tlr, mask, uids = verl_batch([1.0, 0.0], [0, 0], [2, 2])
    ctx = lv.VerlContext()
    ctx.set_step(0)
    with pytest.raises(RuntimeError, match="install_trainer_hooks"):
        lv.advantage_fn("kae", ctx)(tlr, mask, index=uids)


def test_stateful_estimator_needs_the_step():
    tlr, mask, uids = verl_batch([1.0, 0.0], [0, 0], [2, 2])
    ctx = lv.VerlContext()
    ctx.record_prompts(uids, [7, 7])
    with pytest.raises(RuntimeError, match="set_step"):
        lv.advantage_fn("kae", ctx)(tlr, mask, index=uids)


def run_steps(ctx, name, steps, start=0):
    """Feed ``steps`` (rewards, prompt ids) through the adapter with fresh uids each step."""
    fn = lv.advantage_fn(name, ctx)
    outs = []
    for k, (rewards, pids) in enumerate(steps, start=start):
        tlr, mask, uids = verl_batch(rewards, list(range(len(pids))), [1] * len(pids), T=2, seed=1000 * k)
        # uids differ per rollout here; record one stable id per uid (several uids may share a prompt)
        ctx.record_prompts(uids, pids)
        ctx.set_step(k)
        adv, _ = fn(tlr, mask, index=uids)
        outs.append(adv[:, 0].double())
    return outs


STEPS = [
    ([1.0, 0.0, 1.0, 0.0], [7, 7, 8, 8]),
    ([1.0, 1.0, 0.0, 0.0], [7, 7, 9, 9]),
    ([0.0, 1.0, 1.0, 0.0], [8, 8, 7, 7]),
    ([1.0, 0.0, 0.0, 1.0], [7, 9, 9, 7]),
]


@pytest.mark.parametrize("name", ["kae", "blend", "basis"])
def test_stateful_estimators_with_fresh_uids_match_the_lab_with_stable_ids(name):
    got = run_steps(lv.VerlContext(), name, STEPS)
    est = estimators.get(name)
    for k, (rewards, pids) in enumerate(STEPS):
        want = est(RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(pids), step=k)).advantages
        torch.testing.assert_close(got[k], want.to(torch.float32).double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["kae", "blend", "basis"])
def test_saved_and_restored_context_continues_exactly(tmp_path, name):
    full = run_steps(lv.VerlContext(), name, STEPS)
    first = lv.VerlContext()
    run_steps(first, name, STEPS[:2])
    path = first.save(tmp_path / "global_step_2")
    assert path.name == lv.STATE_FILE
    resumed = lv.VerlContext()
    assert resumed.load(tmp_path / "global_step_2") is True
    rest = run_steps(resumed, name, STEPS[2:], start=2)
    for a, b in zip(rest, full[2:]):
        assert torch.equal(a, b)


def test_a_fresh_context_differs_from_a_restored_one_for_kae():
    """Guards the test above: without restoring, KAE's history is gone and step 3 changes."""
    full = run_steps(lv.VerlContext(), "kae", STEPS)
    cold = run_steps(lv.VerlContext(), "kae", STEPS[2:], start=2)
    assert not torch.equal(cold[0], full[2])


def test_loading_from_a_folder_without_state_changes_nothing(tmp_path):
    ctx = lv.VerlContext()
    assert ctx.load(tmp_path) is False and ctx.estimators == {}


def test_stable_prompt_id_prefers_the_dataset_index_and_hashes_otherwise():
    rows = {"extra_info": np.array([{"index": 5}, {"index": 5}, {"split": "train"}], dtype=object),
            "raw_prompt": np.array([[{"role": "user", "content": "1+1="}]] * 2 + [[{"role": "user", "content": "2+2="}]], dtype=object)}
    ids = lv.stable_prompt_ids(rows)
    assert ids[:2] == [5, 5]
    assert ids[2] == lv.hash_prompt([{"role": "user", "content": "2+2="}])
    assert 0 <= ids[2] < 2**62


def test_stable_prompt_id_rejects_a_negative_index():
    with pytest.raises(ValueError, match="non-negative integer"):
        lv.stable_prompt_id({"index": -1}, "x")


def test_hash_prompt_is_fixed_across_processes():
    # pinned value: BLAKE2b-64 of the JSON text, shifted right by 2 (not Python's salted hash())
    assert lv.hash_prompt("2+2=") == int.from_bytes(__import__("hashlib").blake2b(b'"2+2="', digest_size=8).digest(), "little") >> 2


def test_estimator_params_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(lv.PARAMS_ENV, json.dumps({"kae": {"width": 2.0}}))
    ctx = lv.VerlContext()
    assert ctx.estimator("kae").width == 2.0
    monkeypatch.setenv(lv.PARAMS_ENV, json.dumps({"kea": {}}))
    with pytest.raises(ValueError, match="unknown estimators"):
        lv.VerlContext().estimator("kae")


def test_basis_offline_prior_from_a_file_matches_set_reference(tmp_path, monkeypatch):
    prior = tmp_path / "prior.jsonl"
    rows = [{"prompt_id": 1, "reward": 0.5}, {"prompt_id": 2, "reward": 0.2}, {"prompt_id": 3, "reward": 0.8}]
    prior.write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.setenv(lv.PARAMS_ENV, json.dumps({"basis": {"online_prior": False}}))
    monkeypatch.setenv(lv.BASIS_PRIOR_ENV, str(prior))
    ctx = lv.VerlContext()
    tlr, mask, uids = verl_batch([1.0, 0.0, 1.0], [0, 1, 2], [1, 1, 1])
    ctx.record_prompts(uids, [1, 2, 3])
    ctx.set_step(0)
    adv, _ = lv.advantage_fn("basis", ctx)(tlr, mask, index=uids)
    direct = estimators.get("basis", online_prior=False)
    direct.set_reference(torch.tensor([1, 2, 3]), torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    want = direct(RewardBatch(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([1, 2, 3]))).advantages
    torch.testing.assert_close(adv[:, 0].double(), want.float().double(), atol=1e-6, rtol=0)
    cold = estimators.get("basis", online_prior=False)(RewardBatch(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([1, 2, 3])))
    assert not torch.allclose(cold.advantages, want)  # the prior file did change the baselines


def test_basis_without_online_prior_and_without_a_file_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(lv.PARAMS_ENV, json.dumps({"basis": {"online_prior": False}}))
    monkeypatch.delenv(lv.BASIS_PRIOR_ENV, raising=False)
    monkeypatch.delenv(lv.REFERENCE_ENV, raising=False)
    with pytest.raises(ValueError, match=lv.REFERENCE_ENV):
        lv.VerlContext().estimator("basis")


def write_reference_parquet(run_dir, rows):
    """A run folder's reference.parquet as helper B's trainer writes it (docs/run-format.md)."""
    import pandas as pd

    run_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=["prompt_id", "split", "sample", "prompt", "completion", "reward"])
    df = df.astype({"prompt_id": "int64", "sample": "int64", "reward": "float64"})
    df.to_parquet(run_dir / "reference.parquet", index=False)
    return run_dir / "reference.parquet"


REFERENCE_ROWS = [  # m = 2 samples of prompts 7 and 8 (train), and a probe prompt reusing id 7
    (7, "train", 0, "1+1=", "2", 1.0), (7, "train", 1, "1+1=", "2", 1.0),
    (8, "train", 0, "2+2=", "4", 1.0), (8, "train", 1, "2+2=", "4", 1.0),
    (7, "probe", 0, "9+9=", "17", 0.0),
]


WANTS_REFERENCE = [n for n in estimators.available() if getattr(estimators.ESTIMATORS.get(n), "wants_reference", False)]


def test_the_reference_estimators_are_found_by_their_flag():
    assert {"basis", "blend"} <= set(WANTS_REFERENCE)  # the parametrization below is not empty


@pytest.mark.parametrize("name", WANTS_REFERENCE)
@pytest.mark.parametrize("as_folder", [True, False], ids=["run folder", "reference.parquet"])
def test_every_estimator_that_wants_a_reference_gets_the_runs_train_reference_samples(tmp_path, monkeypatch, name, as_folder):
    path = write_reference_parquet(tmp_path / "run", REFERENCE_ROWS)
    monkeypatch.delenv(lv.BASIS_PRIOR_ENV, raising=False)
    monkeypatch.setenv(lv.REFERENCE_ENV, str(path.parent if as_folder else path))
    got = run_steps(lv.VerlContext(), name, STEPS[:2])
    direct = estimators.get(name)
    train = [r for r in REFERENCE_ROWS if r[1] == "train"]  # the probe row's id 7 must not count
    direct.set_reference(torch.tensor([r[0] for r in train]), torch.tensor([r[5] for r in train], dtype=torch.float64))
    cold = estimators.get(name)
    changed = False
    for k, (rewards, pids) in enumerate(STEPS[:2]):
        batch = RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(pids), step=k)
        want = direct(batch).advantages
        torch.testing.assert_close(got[k], want.to(torch.float32).double(), atol=1e-6, rtol=0)
        changed |= not torch.allclose(want, cold(batch).advantages)
    assert changed  # the reference samples did change the advantages


def test_estimators_that_want_no_reference_ignore_one(tmp_path, monkeypatch):
    path = write_reference_parquet(tmp_path / "run", REFERENCE_ROWS)
    monkeypatch.setenv(lv.REFERENCE_ENV, str(path))
    got = run_steps(lv.VerlContext(), "kae", STEPS[:2])
    want = run_steps(lv.VerlContext(), "kae", STEPS[:2])
    monkeypatch.delenv(lv.REFERENCE_ENV)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not estimators.ESTIMATORS.get("kae").wants_reference


def test_gamma_other_than_one_is_refused_naming_the_field():
    tlr, mask, uids = verl_batch([1.0, 0.0], [0, 0], [2, 2])
    fn = lv.advantage_fn("reinforce_plus_plus", lv.VerlContext())
    fn(tlr, mask, index=uids, config={"gamma": 1.0})  # the default is fine
    with pytest.raises(ValueError, match=r"^algorithm\.gamma=0\.99: lab_reinforce_plus_plus"):
        fn(tlr, mask, index=uids, config={"gamma": 0.99})


def test_dense_per_token_rewards_are_summed_and_counted_in_the_metrics():
    rewards = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.2, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 0]])
    uids = np.array(["a", "a", "a"], dtype=object)
    ctx = lv.VerlContext()
    adv, _ = lv.advantage_fn("grpo", ctx)(rewards, mask, index=uids)
    want = estimators.get("grpo")(RewardBatch(torch.tensor([1.0, 1.0, 0.2], dtype=torch.float64), torch.tensor([0, 0, 0]))).advantages
    torch.testing.assert_close(adv[:, 0].double(), want.float().double(), atol=1e-6, rtol=0)
    assert ctx.last_info["dense_reward_frac"] == pytest.approx(1 / 3)


def test_basis_prior_file_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        lv.load_basis_prior(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score\n1,0.5\n")
    with pytest.raises(ValueError, match="'reward' column"):
        lv.load_basis_prior(bad)


@pytest.mark.parametrize("measure,rule", [("ratio", "ppo"), ("kl3", "ppo"), ("ratio", "dual_clip"), ("kl2", "dual_clip")])
def test_policy_loss_matrix_token_mean_equals_lab_policy_loss(measure, rule):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 7
    old = -torch.rand(B, T, generator=g) * 2
    new = old + 0.4 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.8
    mask[:, 0] = True
    cfg = {"clip_ratio": 0.2 if measure == "ratio" else 0.03, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28}
    low, high = lv.loss_bounds(measure, cfg)
    out, _ = lv.policy_loss_matrix(old, new, adv[:, None].expand(B, T), mask, rule, low, high, 3.0)
    mat_mean = (out.loss * mask).sum() / mask.sum()
    if measure == "ratio":
        want, _ = losses.policy_loss(new, old, adv, mask, rule, measure="ratio", delta_low=0.2, delta_high=0.28)
    else:
        want, _ = losses.policy_loss(new, old, adv, mask, rule, measure=measure, delta=0.03)
    torch.testing.assert_close(mat_mean, want)


def test_names_cover_every_estimator_and_every_bounded_rule_measure():
    assert lv.estimator_names() == ["lab_" + n for n in estimators.available()]
    names = lv.policy_loss_names()
    assert "lab_vanilla" in names and "lab_vanilla_kl3" not in names  # vanilla ignores bounds
    for rule in ("ppo", "dual_clip"):
        assert {f"lab_{rule}"} | {f"lab_{rule}_{m}" for m in losses.available_measures() if m != "ratio"} <= set(names)


class FakeRegistries:
    """verl's two registry dicts and decorators, as in core_algos (for register() without verl)."""

    def __init__(self):
        self.ADV_ESTIMATOR_REGISTRY, self.POLICY_LOSS_REGISTRY = {}, {}

    def register_adv_est(self, name):
        def deco(fn):
            if name in self.ADV_ESTIMATOR_REGISTRY and self.ADV_ESTIMATOR_REGISTRY[name] != fn:
                raise ValueError(f"Adv estimator {name} has already been registered")
            self.ADV_ESTIMATOR_REGISTRY[name] = fn
            return fn
        return deco

    def register_policy_loss(self, name):
        def deco(fn):
            self.POLICY_LOSS_REGISTRY[name] = fn
            return fn
        return deco


def test_register_is_idempotent_and_adds_every_name():
    ca = FakeRegistries()
    added = lv.register(ca)
    assert set(added) == set(lv.estimator_names()) | set(lv.policy_loss_names())
    assert lv.register(ca) == []


# --- trainer hooks on a stand-in with the four methods of verl's v1 PPOTrainer ------------------------
class Cfg(dict):
    __getattr__ = dict.__getitem__


def make_trainer_cls():
    class Trainer:
        def __init__(self, estimator, folder):
            self.config = Cfg(algorithm=Cfg(adv_estimator=estimator), trainer=Cfg(default_local_dir=str(folder)))
            self.global_steps = 1
            self.calls = []

        def _fetch_one_gen_batch(self):
            self.calls.append("fetch")
            return {"uid": np.array(["u-a", "u-b"], dtype=object), "extra_info": np.array([{"index": 4}, {"index": 6}], dtype=object),
                    "raw_prompt": np.array(["p", "q"], dtype=object)}

        def _compute_advantage(self, batch, metrics):
            self.calls.append("adv")
            return batch

        def _save_checkpoint(self):
            self.calls.append("save")

        def _load_checkpoint(self):
            self.calls.append("load")
            self.global_steps = 3

    return Trainer


def test_trainer_hooks_record_ids_set_the_step_and_checkpoint_state(tmp_path):
    ctx = lv.VerlContext()
    cls = lv.install_trainer_hooks(make_trainer_cls(), context=ctx)
    assert lv.install_trainer_hooks(cls, context=ctx) is cls  # idempotent
    t = cls("lab_kae", tmp_path)
    t._fetch_one_gen_batch()
    assert ctx.uid_to_pid == {"u-a": 4, "u-b": 6}
    t.global_steps = 5
    metrics = {}
    ctx.last_info = {"zero_std_frac": 0.25}
    t._compute_advantage(type("KV", (), {"keys": ["u-a_0_0", "u-a_0_1"]})(), metrics)
    assert ctx.step == 4 and metrics == {"lab/zero_std_frac": 0.25}
    assert "u-a" not in ctx.uid_to_pid and "u-b" in ctx.uid_to_pid  # used uids are forgotten
    ctx.estimator("kae")(RewardBatch([1.0, 0.0], [4, 4], step=4))
    t._save_checkpoint()
    assert (tmp_path / "global_step_5" / lv.STATE_FILE).is_file()
    ctx2 = lv.VerlContext()
    cls2 = lv.install_trainer_hooks(make_trainer_cls(), context=ctx2)
    (tmp_path / "global_step_3").mkdir()
    (tmp_path / "global_step_5" / lv.STATE_FILE).rename(tmp_path / "global_step_3" / lv.STATE_FILE)
    cls2("lab_kae", tmp_path)._load_checkpoint()
    assert torch.equal(ctx2.estimators["kae"].state_dict()["sum"], ctx.estimators["kae"].state_dict()["sum"])


def test_trainer_hooks_pass_through_for_verl_estimators(tmp_path):
    ctx = lv.VerlContext()
    t = lv.install_trainer_hooks(make_trainer_cls(), context=ctx)("grpo", tmp_path)
    t._fetch_one_gen_batch()
    t._compute_advantage(None, {})
    t._save_checkpoint()
    assert ctx.uid_to_pid == {} and ctx.step is None and not any(tmp_path.iterdir())
    assert t.calls == ["fetch", "adv", "save"]


def test_trainer_hooks_refuse_a_class_without_the_methods():
    with pytest.raises(RuntimeError, match="not supported"):
        lv.install_trainer_hooks(type("Old", (), {}), context=lv.VerlContext())
