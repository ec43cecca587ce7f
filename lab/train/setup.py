"""Everything a run is built from, loaded from its config before anything is written.

:func:`load` is where a config meets the model and the task: the checks that need them
(prompt + ``max_new_tokens`` within the model's positions, a task with training prompts)
run here, so a refused run leaves no run directory behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch

from lab import estimators, models, rollout, tasks
from lab.config import ConfigError, TrainConfig
from lab.errors import LabError, UsageError
from lab.models import precision
from lab.models.fast import accelerate as _lean_forward
from lab.tasks.base import distinct_examples

from .schedule import PromptSchedule


@dataclass
class Setup:
    """The loaded pieces of one run (no files, no loop state)."""

    c: TrainConfig
    device: torch.device
    model: Any
    tok: Any
    ref: Any  # frozen initial model for the KL penalty, or None
    task: Any
    backend: Any
    opt: torch.optim.Optimizer
    estimator: estimators.Estimator
    shadows: dict[str, estimators.Estimator]
    probe_est: dict[str, estimators.Estimator]  # probe-only instances: own memories, apart from training
    schedule: PromptSchedule
    probe_examples: list
    eval_examples: list
    stop: list[str]
    warnings: list[str]

    def estimator_instances(self) -> list[tuple[str, str, estimators.Estimator]]:
        """(role, name, instance) of every estimator instance: ``train``, ``shadow``, ``probe``."""
        return [("train", self.c.estimator, self.estimator), *(("shadow", n, e) for n, e in self.shadows.items()),
                *(("probe", n, e) for n, e in self.probe_est.items())]


def load(c: TrainConfig) -> Setup:
    """Load model, task, backend, optimizer and estimators for ``c``; ``LabError`` on bad input."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # our own bar is the progress bar
    device = models.pick_device(c.device)
    model, tok = _load_model(c)
    model.eval()  # RL without dropout: sampling and training see the same network
    _lean_forward(model)  # GPT-2s: same maths, fewer ops (lab/models/fast.py); others unchanged
    precision.set_gradient_checkpointing(model, c.gradient_checkpointing)  # on: undoes the lean forward
    ref = None
    if c.use_ref_model:
        ref, _ = models.load(c.model, device=c.device, dtype=c.dtype)
        ref.eval().requires_grad_(False)
        _lean_forward(ref)
    task = _load_task(c)
    schedule = PromptSchedule(task, seed=c.seed, per_step=c.prompts_per_step, reuse=c.prompt_reuse, pool_size=c.train_pool_size)
    probe_examples = list(islice(task.examples("test", c.seed + 10_000), c.probe_prompts))
    eval_examples = distinct_examples(task.examples("test", c.seed + 20_000), c.eval_prompts)
    first = _first_prompts(c, task, schedule)
    _check_positions(c, model, tok, [*first, *probe_examples, *eval_examples])
    names = [c.estimator, *c.shadow_names()]
    return Setup(
        c=c, device=device, model=model, tok=tok, ref=ref, task=task,
        backend=rollout.get(c.rollout_backend, model=model, tokenizer=tok, max_batch_bytes=c.rollout_max_batch_bytes),
        opt=torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay),
        estimator=estimators.get(c.estimator, **c.estimator_params),
        shadows={n: estimators.get(n) for n in names[1:]},
        probe_est={n: estimators.get(n, **(c.estimator_params if n == c.estimator else {})) for n in names},
        schedule=schedule, probe_examples=probe_examples, eval_examples=eval_examples,
        stop=list(getattr(task, "stop", []) or []), warnings=_task_warnings(c, task, schedule),
    )


def _load_model(c: TrainConfig):
    try:
        return models.load(c.model, device=c.device, dtype=precision.master_dtype(c.dtype))  # fp32 master weights
    except FileNotFoundError as e:  # resolve_name's "no such path": a user error like the rest
        if isinstance(e, LabError):
            raise
        raise ConfigError(f"model: {e}") from None


def _load_task(c: TrainConfig):
    try:
        return tasks.get(c.task, **c.task_params)
    except (ValueError, TypeError, OSError) as e:
        if isinstance(e, LabError):
            raise
        raise UsageError(f"task {c.task!r}: {e}") from None


def _first_prompts(c: TrainConfig, task, schedule: PromptSchedule) -> list:
    """The prompts of the first step (or the whole pool); a task without any is refused here."""
    if schedule.pool is not None:
        if not schedule.pool:
            raise UsageError(f"task {c.task!r}: no training examples for --train-pool-size {c.train_pool_size}")
        return schedule.pool
    try:
        return list(PromptSchedule(task, seed=c.seed, per_step=c.prompts_per_step, reuse=1).prompts(0))
    except ValueError as e:
        raise UsageError(f"task {c.task!r}: {e}") from None


def model_positions(model) -> int | None:
    """How many positions the model can attend over (learned absolute positions), or None."""
    cfg = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _check_positions(c: TrainConfig, model, tok, examples: list) -> None:
    n_pos = model_positions(model)
    if n_pos is None or not examples:
        return
    texts = [models.format_prompt(tok, ex.prompt) for ex in examples]
    lengths = [len(s) for s in rollout.base.tokenize_prompts(tok, texts)]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[i] + c.max_new_tokens > n_pos:
        room = n_pos - lengths[i]
        fix = f"give --max-new-tokens {room} or less" if room > 0 else "use shorter prompts or a model with more positions"
        raise ConfigError(f"max_new_tokens: prompt {examples[i].prompt[:40]!r} is {lengths[i]} tokens, + max_new_tokens "
                          f"{c.max_new_tokens} exceeds the model's {n_pos} positions; {fix}")


def _task_warnings(c: TrainConfig, task, schedule: PromptSchedule) -> list[str]:
    """A step asking for more prompts than the task (or the pool) holds repeats prompts within the step."""
    held = len(schedule.pool) if schedule.pool is not None else sum(1 for _ in islice(task.examples("train", c.seed), c.prompts_per_step))
    out = []
    if c.train_pool_size and held < c.train_pool_size:
        out.append(f"train_pool_size: task {c.task!r} holds only {held} distinct training prompts, fewer than {c.train_pool_size}")
    if held < c.prompts_per_step:
        out.append(f"prompts_per_step: {c.prompts_per_step} prompts per step but task {c.task!r} holds only {held} "
                   f"training prompts{' in the pool' if schedule.pool is not None else ''}; each step repeats some of them")
    return out
