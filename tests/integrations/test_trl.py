"""The lab inside TRL's GRPOTrainer, across processes (runs in .venv-verl, where TRL lives; skips without TRL).

One ``torchrun --nproc_per_node 2`` run (CPU, gloo) of ``examples/trl/grpo_lab.py`` on the
shipped tiny model: KAE advantages with the lab's PPO rule under a KL3 budget, 4 steps over the
same 2 prompts (so KAE's memory matters), a checkpoint at step 2. Checked against a fresh
estimator replayed on the rewards the run recorded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is not installed here: run `make test-integrations` (adds it to .venv-verl)")

from lab import estimators, losses  # noqa: E402
from lab.estimators import RewardBatch  # noqa: E402
from lab.integrations import trl as lt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "trl" / "grpo_lab.py"
STEPS = 4


def test_trl_is_a_tested_version_and_its_internals_are_where_the_adapter_expects_them():
    assert lt.trl_version_ok(trl.__version__), trl.__version__
    lt.check_trl_internals()  # raises naming every moved method


def test_a_moved_internal_fails_loudly_naming_it():
    class Moved(trl.GRPOTrainer):
        def _calculate_rewards(self, inputs, prompts):  # an argument gone
            pass

    with pytest.raises(RuntimeError, match=r"_calculate_rewards.*no longer starts with"):
        lt.check_trl_internals(Moved)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trl")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000), str(EXAMPLE),
           "--estimator", "kae", "--loss", "ppo", "--clip-measure", "kl3", "--prompts", "2", "--steps", str(STEPS),
           "--save-steps", "2", "--output-dir", str(tmp / "out"), "--dump", str(tmp / "dump")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ranks = [json.loads((tmp / "dump" / f"rank{r}.json").read_text()) for r in (0, 1)]
    log = json.loads((tmp / "dump" / "log_history.json").read_text())
    return tmp, ranks, log


def replay(batches, upto=None):
    """A fresh KAE fed the recorded (rewards, prompt ids, step) of each batch."""
    est = estimators.get("kae")
    outs = []
    for b in batches[:upto]:
        outs.append(est(RewardBatch(torch.tensor(b["rewards"], dtype=torch.float64), torch.tensor(b["prompt_ids"]), step=b["step"])))
    return est, outs


def test_both_ranks_computed_identical_advantages_and_estimator_state(two_ranks):
    _, (r0, r1), _ = two_ranks
    assert r0["world_size"] == r1["world_size"] == 2 and r0["pid"] != r1["pid"]  # two real processes
    assert [b["step"] for b in r0["batches"]] == list(range(STEPS))
    assert all(len(b["advantages"]) == 8 for b in r0["batches"])  # 2 prompts x G = 4, gathered from both ranks
    assert r0["batches"] == r1["batches"]
    assert r0["state"] == r1["state"] and len(r0["state"]["pid"]) > 0


def test_the_advantages_are_the_lab_estimators_with_its_memory(two_ranks):
    _, (r0, _), _ = two_ranks
    est, outs = replay(r0["batches"])
    for b, out in zip(r0["batches"], outs):
        torch.testing.assert_close(torch.tensor(b["advantages"]), out.advantages.float(), atol=1e-6, rtol=0)
    assert {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in est.state_dict().items()} == r0["state"]
    # the memory is in play: a memoryless group baseline (TRL's own, unscaled) differs on some step
    differs = False
    for b in r0["batches"][1:]:
        stateless = estimators.get("dr_grpo")(RewardBatch(torch.tensor(b["rewards"], dtype=torch.float64), torch.tensor(b["prompt_ids"])))
        differs |= not torch.allclose(torch.tensor(b["advantages"], dtype=torch.float64), stateless.advantages, atol=1e-4)
    assert differs


def test_the_runs_metrics_show_the_lab_estimators_values_and_clip_interval(two_ranks):
    _, (r0, _), log = two_ranks
    _, outs = replay(r0["batches"])
    steps = [e for e in log if "lab/baseline_mean" in e]
    assert len(steps) == STEPS
    low, high = losses.clip_bounds("kl3", losses.matched_delta("kl3"))
    for e, out in zip(steps, outs):
        assert e["lab/baseline_mean"] == pytest.approx(float(out.baselines.mean()), abs=1e-6)
        assert e["lab/adv_abs_max"] == pytest.approx(float(out.advantages.abs().max()), abs=1e-6)
        assert e["lab/clip_low_bound"] == pytest.approx(low, abs=1e-6) and e["lab/clip_high_bound"] == pytest.approx(high, abs=1e-6)


def test_the_estimator_state_is_in_the_trl_checkpoint_and_loads_on_resume(two_ranks):
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    tmp, (r0, _), _ = two_ranks
    ckpt = tmp / "out" / "checkpoint-2"
    assert (ckpt / lt.STATE_FILE).is_file() and (ckpt / "optimizer.pt").is_file()
    want, _ = replay(r0["batches"], upto=2)
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import grpo_lab
    finally:
        sys.path.pop(0)
    task, data = grpo_lab.task_dataset("arithmetic", {}, 2, 0)
    model = str(ROOT / "data" / "models" / "tiny-arith")
    args = GRPOConfig(output_dir=str(tmp / "resume"), max_steps=4, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=4, report_to=[], use_cpu=True, bf16=False, beta=0.0)
    trainer = lt.LabGRPOTrainer(model=model, reward_funcs=grpo_lab.task_reward(task), args=args, train_dataset=data,
                                processing_class=AutoTokenizer.from_pretrained(model), lab=lt.LabTRLConfig(estimator="kae"))
    assert trainer.lab_estimator.state_dict()["pid"].numel() == 0
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    trainer._load_optimizer_and_scheduler(str(ckpt))  # what trainer.train(resume_from_checkpoint=ckpt) calls
    got = trainer.lab_estimator.state_dict()
    for k, v in want.state_dict().items():
        assert torch.equal(torch.as_tensor(got[k]), torch.as_tensor(v)), k
    wrong = lt.LabGRPOTrainer(model=model, reward_funcs=grpo_lab.task_reward(task), args=args, train_dataset=data,
                              processing_class=AutoTokenizer.from_pretrained(model), lab=lt.LabTRLConfig(estimator="blend"))
    with pytest.raises(ValueError, match="written for estimator 'kae'"):
        lt.load_state(ckpt, wrong.lab_estimator, "blend")


TRL_NAMES_IN_LESSONS = ("epsilon", "epsilon_high", "num_iterations", "beta", "loss_type", "scale_rewards",
                        "num_generations", "max_grad_norm")
"""The GRPOConfig settings the lessons' bridge sections name (notebooks 00, 02, 04)."""


def test_every_trl_setting_the_lessons_name_is_a_grpoconfig_field_of_the_installed_trl():
    import dataclasses

    text = "\n".join("".join(c["source"]) for p in sorted((ROOT / "notebooks").glob("0*.ipynb"))
                     for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
    fields = {f.name: f for f in dataclasses.fields(trl.GRPOConfig)}
    for name in TRL_NAMES_IN_LESSONS:
        assert f"`{name}" in text, f"{name}: no lesson names it any more; drop it from TRL_NAMES_IN_LESSONS"
        assert name in fields, f"{name}: not a GRPOConfig field in TRL {trl.__version__}; fix the lesson that names it"
    assert "'dr_grpo'" in fields["loss_type"].metadata.get("help", "")  # the aggregation lesson 00 maps to
