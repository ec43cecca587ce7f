"""Policy-gradient error of one batch against a reference gradient, on a real model.

The question (issue 14, item 4): how far is one batch's policy-gradient estimate, with a
given advantage estimator, from the true gradient ∇J of the expected reward? On a real model
∇J is not known, so it is estimated once per policy snapshot from many rollouts, with a
baseline that is unbiased and nearly exact, and every batch estimate is compared with it.

Direction and normalisation (the same for every estimator): the *sequence-level* score
function, averaged over the batch's rollouts,

    g = (1/N) Σ_i A_i ∇_θ log π_θ(y_i | x_i),   log π_θ(y | x) = Σ_t log π_θ(y_t | x, y_<t),

which for A_i = r_i − b_i with b_i independent of r_i is an unbiased estimate of
∇J = ∇ (1/P) Σ_x E_y[r(x, y)] over the prompts the batch was drawn from (uniformly).
The trainer's ``token-mean`` aggregation divides by the batch's token count instead, which
weights a rollout by its length; that is a different vector, not an estimate of ∇J, so it
is not used here.

Pieces (pure functions over tensors unless they take a model):

* :func:`policy_gradients`: one forward pass, then one backward per weight row: the flat
  float32 vectors ∇ Σ_i w_ei log π(y_i | x_i), (E, D), for E advantage vectors at once.
* :func:`streamed_gradient`: the same summed over chunks of rollouts (the reference): only
  one chunk's graph and one (E, D) accumulator are ever in memory, never a per-sample pool.
* :func:`leave_one_out_advantages`: r − (mean of the other M − 1 rewards of the prompt),
  the reference's baseline (unbiased; with the benchmark's 64 rollouts per half its value
  error is 1/63 of the reward variance).
* :func:`split_half_noise`: the reference's own squared error, from two independent halves.
* :func:`relative_sq_error`, :func:`cosine`: one batch against the reference, with the
  reference's noise subtracted (``noise_sq``); ``lab.analysis.stats.mean_ci95`` over batches.
* :func:`load_snapshot`, :func:`estimator_at`: the policy and the estimator memories of a
  run at a step, and a fresh estimator holding a *copy* of that memory for one batch.
* :func:`make_sampler`, :func:`reference_gradient`, :func:`batch_gradients`, :func:`compare`,
  :func:`summarise`: the steps of ``benchmarks/grad_variance.py`` (sample as the trainer does;
  the split-half reference; one batch for every estimator on the same rollouts; the errors
  of each row; their means, intervals and the best-scale error over batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from lab import estimators, models
from lab.analysis.stats import mean_ci95


# --- gradients -----------------------------------------------------------------------------------
def trainable(model) -> list[torch.nn.Parameter]:
    """The parameters that get gradients, in ``model.parameters()`` order (tied ones once)."""
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The ``.grad`` of ``params`` as one flat float32 vector (zeros where a grad is None).

    Shapes: -> (D,), D = total number of elements.

    >>> w = torch.nn.Parameter(torch.ones(2)); u = torch.nn.Parameter(torch.ones(1))
    >>> (3 * w).sum().backward()
    >>> flat_grad([w, u]).tolist()
    [3.0, 3.0, 0.0]
    """
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    return torch.cat(parts) if parts else torch.zeros(0)


def sequence_logprobs(model, out) -> torch.Tensor:
    """log π(y_i | x_i) of each rollout: the sum of its completion tokens' log-probs (with grad).

    Shapes: a ``RolloutOutput`` of N rows -> (N,) float32 on the model's device.
    """
    logp, _ = models.completion_logprobs(model, out)  # (N, T), 0 at padding
    return logp.float().sum(1)  # (N,)


def policy_gradients(model, out, weights: torch.Tensor) -> torch.Tensor:
    """Row e: ∇_θ Σ_i weights[e, i] · log π(y_i | x_i), as a flat float32 vector.

    One forward pass over the N rollouts, then one backward per non-zero row (the graph is
    kept between them); an all-zero row gives a zero vector without a backward. The model's
    ``.grad`` is left zeroed.

    Shapes: out with N rows, weights (E, N) -> (E, D), D = number of trainable parameters.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> from types import SimpleNamespace
    >>> m = build_tiny_model(tiny_config(n_layer=1, n_embd=8, n_head=2), seed=0)
    >>> ro = SimpleNamespace(prompt_token_ids=torch.tensor([[5, 6], [5, 6]]), prompt_mask=torch.ones(2, 2, dtype=torch.bool),
    ...                      completion_ids=torch.tensor([[7, 1], [8, 1]]), completion_mask=torch.ones(2, 2, dtype=torch.bool))
    >>> g = policy_gradients(m, ro, torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 0.0]]))
    >>> g.shape[0], torch.allclose(g[2], 2 * (g[0] + g[1]), atol=1e-6), bool((g[3] == 0).all())
    (4, True, True)
    """
    params = trainable(model)
    D = sum(p.numel() for p in params)
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.dim() != 2 or weights.shape[1] != out.completion_ids.shape[0]:
        raise ValueError(f"weights: expected shape (E, {out.completion_ids.shape[0]}), got {tuple(weights.shape)}")
    grads = torch.zeros(weights.shape[0], D, dtype=torch.float32)  # (E, D)
    live = [e for e in range(weights.shape[0]) if bool((weights[e] != 0).any())]
    if not live:
        return grads
    for p in params:
        p.grad = None
    seq = sequence_logprobs(model, out)  # (N,)
    w = weights.to(seq.device)
    for k, e in enumerate(live):
        (w[e] * seq).sum().backward(retain_graph=k < len(live) - 1)
        grads[e] = flat_grad(params).cpu()
        for p in params:
            p.grad = None
    return grads


def streamed_gradient(model, chunks: Iterable[tuple[Any, torch.Tensor]]) -> torch.Tensor:
    """Σ over chunks of :func:`policy_gradients` ``(model, out, weights)``: a gradient over many
    rollouts with one chunk in memory at a time (accumulated in float32).

    Shapes: each chunk's weights (E, N_chunk) with the same E -> (E, D).
    """
    total = None
    for out, weights in chunks:
        g = policy_gradients(model, out, weights)
        total = g if total is None else total.add_(g)
    if total is None:
        raise ValueError("chunks: no chunk given")
    return total


# --- the reference's baseline and noise ------------------------------------------------------------
def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """r − (mean of the prompt's other rewards), per row: an unbiased baseline (needs M ≥ 2).

    Shapes: rewards (P, M) -> (P, M).

    >>> (leave_one_out_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)) * 3).tolist()
    [[3.0, -1.0, -1.0, -1.0]]
    """
    M = rewards.shape[1]
    if M < 2:
        raise ValueError(f"rewards: a leave-one-out baseline needs at least 2 samples per prompt, got {M}")
    loo = (rewards.sum(1, keepdim=True) - rewards) / (M - 1)  # (P, M)
    return rewards - loo


def split_half_noise(half_a: torch.Tensor, half_b: torch.Tensor) -> float:
    """Estimated E‖ĝ − ∇J‖² of the reference ĝ = (a + b)/2 from two independent, unbiased halves.

    Each half has error variance 2σ² (half the rollouts), so E‖a − b‖² = 4σ²: σ² = ‖a − b‖²/4.

    Shapes: (D,), (D,) -> float.

    >>> split_half_noise(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0]))
    1.0
    """
    d = (half_a.double() - half_b.double())
    return float(d.dot(d)) / 4.0


def relative_sq_error(g: torch.Tensor, ref: torch.Tensor, noise_sq: float = 0.0) -> float:
    """(‖g − ref‖² − noise_sq) / (‖ref‖² − noise_sq): ‖g − ∇J‖²/‖∇J‖² when ``ref`` = ∇J + e
    with E‖e‖² = ``noise_sq`` and e independent of g (both terms are unbiased for their
    noise-free values). NaN when the reference is no larger than its noise.

    Shapes: (D,), (D,) -> float.

    >>> relative_sq_error(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]))
    0.5
    >>> relative_sq_error(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]), noise_sq=1.0)
    0.3333333333333333
    """
    d = g.double() - ref.double()
    den = float(ref.double().dot(ref.double())) - noise_sq
    return (float(d.dot(d)) - noise_sq) / den if den > 0 else math.nan


def cosine(g: torch.Tensor, ref: torch.Tensor, noise_sq: float = 0.0) -> float:
    """⟨g, ref⟩ / (‖g‖ · √(‖ref‖² − noise_sq)): the cosine to ∇J with the reference's noise
    taken out of its norm (the dot product is already unbiased). 0 for g = 0; NaN when the
    reference is no larger than its noise.

    Shapes: (D,), (D,) -> float.

    >>> round(cosine(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0])), 4)
    0.7071
    >>> cosine(torch.zeros(2), torch.tensor([2.0, 0.0]))
    0.0
    """
    g, ref = g.double(), ref.double()
    den = float(ref.dot(ref)) - noise_sq
    if den <= 0:
        return math.nan
    ng = float(g.norm())
    return float(g.dot(ref)) / (ng * math.sqrt(den)) if ng > 0 else 0.0


# --- snapshots of a run ------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """The policy and estimator memories of a run just before training step ``step``.

    ``states`` maps estimator name -> its state dict (the run's main estimator and every
    shadow, as the checkpoint of step ``step − 1`` saved them; empty at step 0);
    ``params`` maps name -> the parameters it was built with; ``checkpoint`` is the folder
    loaded (None at step 0: the run's initial model).
    """

    step: int
    model: Any
    tokenizer: Any
    config: Any
    states: dict[str, dict] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)
    checkpoint: Path | None = None


def load_snapshot(run_dir: str | Path | None, step: int, *, config=None, device: str = "cpu") -> Snapshot:
    """The policy that runs step ``step`` of the run at ``run_dir``, and its estimators' memories.

    Step 0 is the run's initial model with empty memories; step t > 0 needs the checkpoint of
    step t − 1 (keep it: ``keep_checkpoints=0``, or train in pieces ending at t). ``config``
    (a ``TrainConfig``) replaces the run's config.json, so step 0 needs no run at all. The
    model is in eval mode with the lean forward the trainer uses.
    """
    from lab import runs
    from lab.config import TrainConfig
    from lab.errors import UsageError
    from lab.models.fast import accelerate

    cfg = config
    if cfg is None:
        if run_dir is None:
            raise UsageError("load_snapshot: give a run directory or a config")
        saved, problems = runs.read_config(run_dir)
        if problems:
            raise UsageError(f"{run_dir}: {problems[0]}")
        cfg = TrainConfig.from_dict(saved)
    if step > 0 and run_dir is None:
        raise UsageError(f"load_snapshot: step {step} needs the run directory (its checkpoint of step {step - 1})")
    params = {n: (dict(cfg.estimator_params) if n == cfg.estimator else {}) for n in [cfg.estimator, *cfg.shadow_names()]}
    states: dict[str, dict] = {}
    folder = None
    if step == 0:
        model, tok = models.load(cfg.model, device=device)
    else:
        run_dir = Path(run_dir)
        found = dict(runs.checkpoint_candidates(run_dir)[0])
        if step - 1 not in found:
            raise UsageError(f"{run_dir}: no checkpoint of step {step - 1} (kept: {sorted(found)}); the snapshot of step "
                             f"{step} needs it: train with keep_checkpoints=0 and a checkpoint at step {step - 1}")
        folder = found[step - 1]
        model, tok = models.load(folder, device=device)
        est = torch.load(folder / "trainer_state.pt", weights_only=True, map_location="cpu")["estimators"]
        states = {cfg.estimator: est["main"], **est["shadows"]}
    model.eval()
    accelerate(model)
    return Snapshot(step=step, model=model, tokenizer=tok, config=cfg, states=states, params=params, checkpoint=folder)


def estimator_at(name: str, snap: Snapshot) -> estimators.Estimator:
    """A new ``name`` estimator holding a copy of its memory at the snapshot (a fresh one when
    the run had no such estimator or the snapshot is step 0). Calling it never changes
    ``snap.states``: ``load_state_dict`` copies the tensors."""
    est = estimators.get(name, **snap.params.get(name, {}))
    if name in snap.states:
        est.load_state_dict(snap.states[name])
    return est


# --- sampling, the reference, one batch ------------------------------------------------------------
def make_sampler(model, tokenizer, task, config):
    """``sample(examples, n) -> (RolloutOutput, rewards (N,) float64)``: n rollouts per example with
    the run's backend, sampling settings and reward function (rows i·n .. i·n + n − 1 answer
    example i), as the trainer samples them."""
    from lab import rollout
    from lab.tasks.scoring import score

    backend = rollout.get(config.rollout_backend, model=model, tokenizer=tokenizer)
    stop = list(getattr(task, "stop", []) or [])

    def sample(examples: list, n: int):
        prompts = [models.format_prompt(tokenizer, ex.prompt) for ex in examples]
        params = rollout.SamplingParams(n=n, temperature=config.temperature, top_p=config.top_p,
                                        max_new_tokens=config.max_new_tokens, stop=stop)
        out = backend.generate(prompts, params)
        exs = [examples[i] for i in out.prompt_index.tolist()]
        res = score(task, out.texts, exs, timeout_s=config.reward_timeout_s)
        return out, torch.tensor(res.rewards, dtype=torch.float64)

    return sample


@dataclass
class Reference:
    """The reference gradient from two independent halves of its rollouts.

    ``grad`` = (a + b)/2 estimates ∇J; ``noise_sq`` = ‖a − b‖²/4 estimates E‖grad − ∇J‖²;
    ``rel_noise`` = noise_sq / (‖grad‖² − noise_sq), the reference's own relative squared error.
    """

    half_a: torch.Tensor  # (D,)
    half_b: torch.Tensor  # (D,)
    rollouts: int
    reward_mean: float

    @property
    def grad(self) -> torch.Tensor:
        return (self.half_a + self.half_b) / 2

    @property
    def noise_sq(self) -> float:
        return split_half_noise(self.half_a, self.half_b)

    @property
    def rel_noise(self) -> float:
        g = self.grad.double()
        den = float(g.dot(g)) - self.noise_sq
        return self.noise_sq / den if den > 0 else math.nan


def reference_gradient(model, sample, examples: list, per_prompt: int, *, chunk_rollouts: int = 512) -> Reference:
    """∇J over ``examples`` (uniform over prompts) from ``per_prompt`` rollouts of each, streamed.

    Each prompt's rollouts are split in two halves; each half is an unbiased REINFORCE estimate
    with its own leave-one-out baseline, (1/(P·M/2)) Σ (r − b_loo) ∇ log π, so the halves are
    independent and :class:`Reference` can estimate its own noise. Generated and
    back-propagated ``chunk_rollouts`` at a time (whole prompts per chunk).

    Shapes: P examples -> Reference with (D,) halves; P · per_prompt rollouts in all.
    """
    if per_prompt < 4 or per_prompt % 2:
        raise ValueError(f"per_prompt: need an even number >= 4 of rollouts per prompt (two halves with a "
                         f"leave-one-out baseline each), got {per_prompt}")
    P, h = len(examples), per_prompt // 2
    chunk = max(1, chunk_rollouts // per_prompt)
    total = [0.0]

    def chunks():
        for s in range(0, P, chunk):
            exs = examples[s:s + chunk]
            out, r = sample(exs, per_prompt)
            r = r.view(len(exs), per_prompt).float()  # (Pc, M): row i = prompt i's rollouts
            total[0] += float(r.sum())
            w = torch.zeros(2, len(exs), per_prompt)  # (2, Pc, M)
            w[0, :, :h] = leave_one_out_advantages(r[:, :h]) / (P * h)
            w[1, :, h:] = leave_one_out_advantages(r[:, h:]) / (P * h)
            yield out, w.view(2, -1)

    g = streamed_gradient(model, chunks())  # (2, D)
    return Reference(half_a=g[0], half_b=g[1], rollouts=P * per_prompt, reward_mean=total[0] / (P * per_prompt))


def batch_gradients(model, sample, examples: list, group_size: int, batch_rollouts: int, ests: dict,
                    step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's policy-gradient estimate per estimator, all on the same rollouts.

    ``batch_rollouts / group_size`` prompts are drawn uniformly without replacement from
    ``examples`` (so every G spends the same rollouts and every batch estimates the same ∇J),
    G rollouts each; each estimator in ``ests`` (name -> a fresh instance, e.g. from
    :func:`estimator_at`) turns the rewards into advantages (``update=False``), and row e is
    (1/N) Σ_i A_ei ∇ log π(y_i | x_i).

    Shapes: -> grads (E, D) in ``ests`` order, rewards (N,), N = batch_rollouts.
    """
    if batch_rollouts % group_size:
        raise ValueError(f"batch_rollouts: {batch_rollouts} is not a multiple of the group size {group_size}")
    n_prompts = batch_rollouts // group_size
    if n_prompts > len(examples):
        raise ValueError(f"batch_rollouts: {batch_rollouts} rollouts at G = {group_size} need {n_prompts} prompts, "
                         f"but only {len(examples)} are fixed; give more prompts or fewer rollouts per batch")
    pick = torch.randperm(len(examples), generator=generator)[:n_prompts].tolist()
    exs = [examples[i] for i in pick]
    out, r = sample(exs, group_size)
    pids = torch.tensor([exs[i].prompt_id for i in out.prompt_index.tolist()], dtype=torch.long)
    batch = estimators.RewardBatch(r, pids, step=step)
    N = r.shape[0]
    w = torch.stack([e(batch, update=False).advantages.detach().float().cpu() for e in ests.values()]) / N  # (E, N)
    return policy_gradients(model, out, w), r


def compare(grads: torch.Tensor, ref: Reference) -> list[dict[str, float]]:
    """Per row of ``grads`` (E, D): relative squared error and cosine to the reference, with its
    noise subtracted and raw, plus ⟨g, ref⟩ and ‖g‖² (for the best-scale error). The same
    numbers as :func:`relative_sq_error` / :func:`cosine`, from one matrix product in float64.

    >>> ref = Reference(torch.tensor([2.0, 0.0]), torch.tensor([2.0, 0.0]), rollouts=8, reward_mean=0.5)
    >>> compare(torch.tensor([[1.0, 1.0]]), ref)[0]["rel_sq_error"] == relative_sq_error(torch.tensor([1.0, 1.0]), ref.grad)
    True
    """
    g = grads.double()  # (E, D)
    r = ref.grad.double()  # (D,)
    s2, r2 = ref.noise_sq, float(r.dot(r))
    dots = (g @ r).tolist()  # (E,)
    norms = (g * g).sum(1).tolist()  # (E,)
    out = []
    for dot, n2 in zip(dots, norms):
        d2 = max(n2 - 2 * dot + r2, 0.0)  # ‖g − ref‖²
        row = {"dot": dot, "norm_sq": n2}
        for suffix, noise in (("", s2), ("_raw", 0.0)):
            den = r2 - noise
            row[f"rel_sq_error{suffix}"] = (d2 - noise) / den if den > 0 else math.nan
            row[f"cosine{suffix}"] = (dot / math.sqrt(n2 * den) if n2 > 0 else 0.0) if den > 0 else math.nan
        out.append(row)
    return out


def summarise(per_batch: list[dict[str, float]], ref: Reference) -> dict[str, float]:
    """Means and 95% intervals over batches of :func:`compare`'s rows for one estimator.

    ``rel_sq_error_best_scale`` = min over one constant c of E‖c·g − ∇J‖²/‖∇J‖² =
    1 − (E⟨g, ∇J⟩)² / (E‖g‖² ‖∇J‖²): the error left if the learning rate absorbed the
    estimator's scale (GRPO's std division, KRPO's ~10× advantages, REINFORCE++'s whitening).
    ``norm_ratio`` = mean ‖g‖ / ‖∇J‖.

    >>> ref = Reference(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), rollouts=8, reward_mean=0.5)
    >>> rows = compare(torch.tensor([[2.0, 0.0], [2.0, 2.0]]), ref)
    >>> s = summarise(rows, ref)
    >>> s["rel_sq_error"], round(s["cosine"], 4), round(s["rel_sq_error_best_scale"], 4), round(s["norm_ratio"], 4)
    (3.0, 0.8536, 0.3333, 2.4142)
    """
    out: dict[str, float] = {}
    for k in ("rel_sq_error", "cosine", "rel_sq_error_raw", "cosine_raw"):
        out[k], out[f"{k}_ci95"] = mean_ci95([b[k] for b in per_batch])
    g = ref.grad.double()
    j2 = float(g.dot(g)) - ref.noise_sq
    dot = sum(b["dot"] for b in per_batch) / len(per_batch)
    n2 = sum(b["norm_sq"] for b in per_batch) / len(per_batch)
    out["rel_sq_error_best_scale"] = 1 - dot * dot / (n2 * j2) if n2 > 0 and j2 > 0 else math.nan
    out["norm_ratio"] = (sum(math.sqrt(b["norm_sq"]) for b in per_batch) / len(per_batch) / math.sqrt(j2)) if j2 > 0 else math.nan
    out["batches"] = len(per_batch)
    return out
