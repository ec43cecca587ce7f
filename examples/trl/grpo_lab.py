"""A lab estimator (and clip rule) inside TRL's GRPOTrainer, on one or several processes.

    # one process
    python examples/trl/grpo_lab.py --estimator kae --loss ppo --clip-measure kl3
    # two processes on CPU (gloo), or one per GPU:
    torchrun --nproc_per_node 2 examples/trl/grpo_lab.py --estimator blend --reference runs/my-run

The dataset is a lab task's prompts with their stable ``prompt_id`` (the column the lab's
stateful estimators key their memory by) and answers; the reward is the task's own. The model
defaults to the shipped tiny checkpoint (data/models/tiny-arith), so this runs offline on a CPU.
``--dump DIR`` writes what each rank's estimator saw and its final state (``rank<R>.json``)
and rank 0's ``log_history.json`` (what tests/integrations/test_trl.py checks).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lab import tasks
from lab.integrations.trl import LabTRLConfig
from lab.models.loading import TINY_ARITH
from lab.tasks import Example


def task_dataset(task_name: str, task_params: dict, n: int, seed: int):
    """A ``datasets.Dataset`` of ``prompt``, ``prompt_id``, ``answer`` and ``meta`` (JSON) columns."""
    from datasets import Dataset

    task = tasks.get(task_name, **task_params)
    rows = [{"prompt": ex.prompt, "prompt_id": int(ex.prompt_id), "answer": ex.answer, "meta": json.dumps(ex.meta)}
            for ex in task.dataset("train", n=n, seed=seed)]
    return task, Dataset.from_list(rows)


def task_reward(task):
    """A TRL reward function scoring each completion with the lab task's reward."""

    def reward(completions, prompt_id, prompts, answer, meta, **_):
        return [float(task.reward(c, Example(int(pid), p, a, json.loads(m))))
                for c, pid, p, a, m in zip(completions, prompt_id, prompts, answer, meta)]

    reward.__name__ = "task_reward"
    return reward


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(TINY_ARITH))
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--task-params", default="{}")
    ap.add_argument("--prompts", type=int, default=64, help="distinct training prompts")
    ap.add_argument("--estimator", default="kae")
    ap.add_argument("--estimator-params", default="{}")
    ap.add_argument("--reference", default=None, help="a lab run folder (reference.parquet) for basis/blend")
    ap.add_argument("--loss", default=None, help="a lab rule (ppo, dual_clip, vanilla); default: TRL's own loss")
    ap.add_argument("--clip-measure", default="ratio")
    ap.add_argument("--clip-delta", type=float, default=None)
    ap.add_argument("--group", type=int, default=4, help="completions per prompt (num_generations)")
    ap.add_argument("--per-device-batch", type=int, default=4, help="completions per process per step")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output-dir", default="runs/trl")
    ap.add_argument("--dump", default=None)
    a = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    from lab.integrations.trl import LabGRPOTrainer

    task, data = task_dataset(a.task, json.loads(a.task_params), a.prompts, a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    cpu = not torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=a.output_dir, max_steps=a.steps, learning_rate=a.lr, seed=a.seed, data_seed=a.seed,
        per_device_train_batch_size=a.per_device_batch, num_generations=a.group, max_completion_length=a.max_new_tokens,
        temperature=1.0, beta=0.0, logging_steps=1, report_to=[], use_cpu=cpu, bf16=False,
        ddp_backend="gloo" if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None, dataloader_num_workers=0,
        save_strategy="steps" if a.save_steps else "no", save_steps=a.save_steps or 500, save_only_model=False,
    )
    lab = LabTRLConfig(estimator=a.estimator, estimator_params=json.loads(a.estimator_params), reference=a.reference,
                       loss=a.loss, clip_measure=a.clip_measure, clip_delta=a.clip_delta)
    seen: list[dict] = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            seen.append(dict(trainer.lab_last))

    trainer = LabGRPOTrainer(model=a.model, reward_funcs=task_reward(task), args=args, train_dataset=data,
                             processing_class=tok, lab=lab, callbacks=[Record()])
    trainer.train()
    if a.dump:
        out = Path(a.dump)
        out.mkdir(parents=True, exist_ok=True)
        rank = trainer.accelerator.process_index
        state = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in trainer.lab_estimator.state_dict().items()}
        (out / f"rank{rank}.json").write_text(json.dumps({"batches": seen, "state": state,
                                                          "world_size": trainer.accelerator.num_processes,
                                                          "pid": os.getpid()}))
        if rank == 0:
            (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main()
