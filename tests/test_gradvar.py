"""lab.gradvar and benchmarks/grad_variance.py: streamed gradients, error measures, snapshot copies, the benchmark."""

import csv
import math
from types import SimpleNamespace

import pytest
import torch
from scipy import stats

import importlib

from lab import estimators, gradvar
from lab.analysis import docblocks
from lab.estimators import RewardBatch
from lab.models.tiny import build_tiny_model, tiny_config

def _bench():
    return importlib.import_module("benchmarks.grad_variance")


def _rollouts(n=6, seed=0):
    """Hand-made rollouts: left-padded prompts, right-padded completions of varying length."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, 90, (n, 4), generator=g)
    pmask = torch.ones(n, 4, dtype=torch.bool)
    pmask[::2, 0] = False  # some prompts shorter (left padding)
    comp = torch.randint(3, 90, (n, 5), generator=g)
    lengths = torch.tensor([5, 3, 1, 4, 2, 5][:n])
    cmask = torch.arange(5)[None, :] < lengths[:, None]
    return SimpleNamespace(prompt_token_ids=prompt, prompt_mask=pmask, completion_ids=comp, completion_mask=cmask)


def _rows(ro, idx):
    return SimpleNamespace(**{k: getattr(ro, k)[idx] for k in ("prompt_token_ids", "prompt_mask", "completion_ids", "completion_mask")})


def test_streamed_gradient_equals_the_gradient_of_the_summed_loss_at_once():
    model = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=2), seed=0).eval()
    ro = _rollouts()
    w = torch.randn(2, 6, generator=torch.Generator().manual_seed(1))
    # at once: plain autograd of the summed surrogate Σ_i w_i · Σ_t log π(y_it), for each weight row
    params = gradvar.trainable(model)
    whole = []
    for e in range(2):
        logp, _ = gradvar.models.completion_logprobs(model, ro)
        loss = (w[e] * (logp * ro.completion_mask).sum(1)).sum()
        whole.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    whole = torch.stack(whole)
    chunks = [(_rows(ro, torch.tensor([0, 1])), w[:, :2]), (_rows(ro, torch.tensor([2, 3, 4, 5])), w[:, 2:])]
    streamed = gradvar.streamed_gradient(model, iter(chunks))
    assert streamed.shape == whole.shape == (2, sum(p.numel() for p in params))
    assert float(whole.abs().max()) > 1e-3  # not trivially zero
    assert torch.allclose(streamed, whole, atol=1e-6, rtol=1e-5)
    assert all(p.grad is None for p in params)  # nothing left behind in .grad


def test_policy_gradients_are_linear_in_the_weights_and_skip_zero_rows():
    model = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=3).eval()
    ro = _rollouts()
    per_sample = gradvar.policy_gradients(model, ro, torch.eye(6))  # row i: ∇ log π(y_i)
    w = torch.tensor([[0.5, -1.0, 0.0, 2.0, 0.25, -0.5], [0.0] * 6])
    g = gradvar.policy_gradients(model, ro, w)
    assert torch.allclose(g[0], w[0] @ per_sample, atol=1e-6)
    assert bool((g[1] == 0).all())


def test_relative_error_and_cosine_on_hand_made_vectors():
    j = torch.tensor([3.0, 4.0, 0.0])
    assert gradvar.relative_sq_error(j, j) == 0.0
    assert gradvar.relative_sq_error(torch.zeros(3), j) == 1.0
    assert gradvar.relative_sq_error(torch.tensor([0.0, 0.0, 5.0]), j) == pytest.approx(2.0)  # orthogonal, same norm
    assert gradvar.cosine(-2 * j, j) == pytest.approx(-1.0)
    assert gradvar.cosine(torch.tensor([4.0, -3.0, 0.0]), j) == pytest.approx(0.0)
    # the reference is ∇J + e with ‖e‖² = 1 (e orthogonal here): the corrected numbers see ∇J itself
    ref = torch.tensor([3.0, 4.0, 1.0])
    assert gradvar.relative_sq_error(j, ref, noise_sq=1.0) == pytest.approx(0.0)
    assert gradvar.cosine(j, ref, noise_sq=1.0) == pytest.approx(1.0)
    assert math.isnan(gradvar.relative_sq_error(j, torch.tensor([0.5, 0.0, 0.0]), noise_sq=1.0))


def test_compare_matches_the_single_vector_functions():
    g = torch.randn(5, 50, generator=torch.Generator().manual_seed(0))
    j = torch.randn(50, generator=torch.Generator().manual_seed(1))
    ref = gradvar.Reference(j + 0.3 * torch.randn(50, generator=torch.Generator().manual_seed(2)),
                            j + 0.3 * torch.randn(50, generator=torch.Generator().manual_seed(3)), rollouts=10, reward_mean=0.0)
    assert 0 < ref.noise_sq < float(ref.grad.dot(ref.grad))
    for row, gi in zip(gradvar.compare(g, ref), g):
        assert row["rel_sq_error"] == pytest.approx(gradvar.relative_sq_error(gi, ref.grad, ref.noise_sq), rel=1e-9)
        assert row["cosine"] == pytest.approx(gradvar.cosine(gi, ref.grad, ref.noise_sq), rel=1e-9)
        assert row["rel_sq_error_raw"] == pytest.approx(gradvar.relative_sq_error(gi, ref.grad), rel=1e-9)


def test_split_half_noise_estimates_the_error_of_the_mean_of_the_halves():
    D, sigma2 = 20_000, 0.3  # each half: ∇J + N(0, 2σ² I), so the mean of the halves has E‖err‖² = σ² D
    gen = torch.Generator().manual_seed(0)
    j = torch.randn(D, generator=gen, dtype=torch.float64)
    a = j + math.sqrt(2 * sigma2) * torch.randn(D, generator=gen, dtype=torch.float64)
    b = j + math.sqrt(2 * sigma2) * torch.randn(D, generator=gen, dtype=torch.float64)
    est = gradvar.split_half_noise(a, b)
    actual = float((((a + b) / 2 - j) ** 2).sum())
    assert est == pytest.approx(sigma2 * D, rel=0.05)
    assert est == pytest.approx(actual, rel=0.05)


def test_mean_ci95_is_the_t_interval():
    x = [0.3, 1.7, 2.2, 0.9, 1.4]
    m, h = gradvar.mean_ci95(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=sum(x) / len(x), scale=stats.sem(x))
    assert m == pytest.approx((lo + hi) / 2) and h == pytest.approx((hi - lo) / 2)
    assert math.isnan(gradvar.mean_ci95([1.0])[1])


def test_leave_one_out_advantages_use_only_the_other_rewards():
    r = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    a = gradvar.leave_one_out_advantages(r)
    for p in range(2):
        for i in range(4):
            others = [float(r[p, k]) for k in range(4) if k != i]
            assert float(a[p, i]) == pytest.approx(float(r[p, i]) - sum(others) / 3)


def _snapshot_with_history():
    kae = estimators.get("kae")
    for step in range(4):
        kae(RewardBatch(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([7, 7, 9, 9]), step=step))
    basis = estimators.get("basis")
    basis(RewardBatch(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([7, 9, 11]), step=0))
    return gradvar.Snapshot(step=4, model=None, tokenizer=None, config=None,
                            states={"kae": kae.state_dict(), "basis": basis.state_dict()}, params={"kae": {}, "basis": {}})


def test_a_batch_does_not_change_the_snapshot_state():
    snap = _snapshot_with_history()
    saved = {n: {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()} for n, s in snap.states.items()}
    batch = RewardBatch(torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.tensor([7, 7, 9, 9]), step=4)
    first = {}
    for name in ("kae", "basis"):
        est = gradvar.estimator_at(name, snap)
        first[name] = est(batch).baselines  # update=True: the copy remembers this batch, the snapshot must not
        est(RewardBatch(torch.tensor([1.0, 1.0]), torch.tensor([7, 9]), step=5))
    for name, state in saved.items():
        for k, v in state.items():
            now = snap.states[name][k]
            same = now.shape == v.shape and torch.equal(now.nan_to_num(-7.0), v.nan_to_num(-7.0)) if isinstance(v, torch.Tensor) else now == v
            assert same, (name, k)  # (BASIS's sample bank holds NaN for empty slots)
    for name in ("kae", "basis"):  # a second batch from the same snapshot sees exactly the first one's memory
        assert torch.equal(gradvar.estimator_at(name, snap)(batch).baselines, first[name])
    # and the memory is really there: a fresh KAE (no history) gives other baselines
    assert not torch.equal(estimators.get("kae")(batch).baselines, first["kae"])


def test_benchmark_quick_run_writes_rows_and_resumes(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "gv.csv"
    args = ["--quick", "--snapshots", "0", "1", "--group-sizes", "1", "2", "--batches", "2", "--batch-rollouts", "4",
            "--prompts", "4", "--reference-per-prompt", "64", "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main(args) == 0
    rows = bench.read_rows(out)
    names = estimators.available()
    assert len(rows) == 2 * 2 * len(names)
    assert set(bench.FIELDS) <= set(rows[0]) and {"lab_version", "git_commit", "torch"} <= set(rows[0])
    assert {(r["snapshot_step"], r["rollouts_per_prompt"]) for r in rows} == {("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")}
    assert all(r["reference_rollouts"] == "256" and r["batches"] == "2" for r in rows)
    for r in rows:  # the paired difference to the group mean is the difference of the two means
        base = next(b for b in rows if b["estimator"] == "dr_grpo" and (b["snapshot_step"], b["rollouts_per_prompt"]) ==
                    (r["snapshot_step"], r["rollouts_per_prompt"]))
        want = float(r["rel_sq_error"]) - float(base["rel_sq_error"])
        assert float(r["rel_sq_error_minus_group_mean"]) == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True)
    assert any(math.isfinite(float(r["rel_sq_error"])) for r in rows)  # 256 reference rollouts: above its noise
    assert {r["history"] for r in rows if r["snapshot_step"] == "1"} == {"run"}  # main + shadows loaded from the checkpoint
    assert all(-1.0001 <= float(r["cosine_raw"]) <= 1.0001 and float(r["rel_sq_error_raw"]) >= 0 for r in rows)
    assert out.with_suffix(".png").is_file()
    # the last (snapshot, G) lost all its rows but one (an interruption, or a newly registered estimator):
    # a rerun drops that row and redoes only that (snapshot, G), whole
    keep = [r for r in rows if (r["snapshot_step"], r["rollouts_per_prompt"]) != ("1", "2")]
    partial = next(r for r in rows if (r["snapshot_step"], r["rollouts_per_prompt"]) == ("1", "2"))
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep + [partial])
    capsys.readouterr()
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "resuming: 3 (snapshot, G) pairs" in printed and "training to step" not in printed
    assert "snapshot 1  G 2" in printed and "snapshot 0  G 1" not in printed
    again = bench.read_rows(out)
    assert len(again) == len(rows) and again[: len(keep)] == keep
    redone = {r["estimator"]: r["rel_sq_error_raw"] for r in again[len(keep):]}
    first = {r["estimator"]: r["rel_sq_error_raw"] for r in rows if (r["snapshot_step"], r["rollouts_per_prompt"]) == ("1", "2")}
    assert redone == first  # the unit's seed and the cached reference make a redo draw the same batches


def test_the_docs_block_is_generated_from_the_committed_csv():
    bench = _bench()
    doc = bench.DOCS.read_text(encoding="utf-8")
    block = docblocks.block(doc, bench.DOCS_BLOCK)
    assert block == bench.docs_block(bench.read_rows(bench.DEFAULT_OUT))  # regenerate: grad_variance.py --write-docs


def test_write_docs_replaces_only_the_block(tmp_path):
    bench = _bench()
    doc = tmp_path / "d.md"
    start, end = docblocks.markers(bench.DOCS_BLOCK)
    doc.write_text("before\n" + start + "\nold\n" + end + "\nafter\n", encoding="utf-8")
    row = {"snapshot_step": "50", "estimator": "kae", "rollouts_per_prompt": "4", "rel_sq_error": "3.0",
           "rel_sq_error_ci95": "0.5", "rel_sq_error_best_scale": "0.8", "cosine": "0.41", "reference_rollouts": "8192",
           "reference_rel_sq_error": "0.02", "batches": "64", "batch_rollouts": "64"}
    bench.write_docs([row], doc)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "old" not in text
    assert "| kae | 3 ± 0.5 · 0.8 · 0.410 |" in text and "**Snapshot step 50**" in text
