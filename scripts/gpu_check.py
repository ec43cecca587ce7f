"""The GPU check: the CUDA tests, then a timed ``lab train --device cuda`` on a ~0.5B model.

Run it from a plain checkout (no ``.git`` needed, nothing installed: ``PYTHONPATH=.``) with a
python that already has CUDA torch and transformers::

    LAB_COMMIT=<sha> scripts/gpu_check.sh OUT_DIR            # ~6 min on one H100/H200
    scripts/gpu_check.sh --dry-run OUT_DIR                    # the same steps, tiny and on CPU, < 1 min

What it does, in order (every step's output lands in OUT_DIR; :data:`OUT_FILES`):

1. ``pytest tests/gpu/``: the real CUDA steps (fp32 master weights under bf16 autocast,
   gradient checkpointing, a few training steps); ``pytest.log``.
2. A bf16 matmul throughput measurement (what this device reaches on a large GEMM, beside
   the datasheet peak of :data:`BF16_PEAK_TFLOPS`).
3. A random-init Qwen2-architecture model built from a config (no download): Qwen2.5-0.5B's
   shape (:data:`FULL`, 494 M parameters, tied embeddings), saved with a character-level
   tokenizer whose vocabulary is padded with filler tokens to the model's 151,936 entries,
   so the embedding and LM-head cost is Qwen2.5-0.5B's. A random model almost never samples
   its end-of-text token, so every rollout runs the full ``max_new_tokens``.
4. ``python -m lab.cli train --device cuda`` on it, twice (gradient checkpointing off, on),
   on the GSM8K-format fixture prompts (``data/tasks/gsm8k_fixture.jsonl``), hf rollouts,
   GRPO, no shadows / probes / eval: :data:`FULL` sizes (16 prompts x 4 rollouts, 256 new
   tokens, 10 timed steps after 2 warm-up steps); ``<run>.log`` and ``<run>.metrics.jsonl``.
5. One table (``results.md``, also printed) and ``results.json`` (every number, per step,
   with provenance): per-step time split into rollout / update, generated tokens/s, peak GPU
   memory, and the update's model FLOP utilisation (MFU).

How the numbers are defined:

* rollout = ``perf/rollout_time_s``; update = ``perf/step_time_s`` - rollout (reward scoring,
  advantages and the PPO update; nothing else runs in these steps) unless the trainer logs its
  own ``perf/update_time_s``; medians over the timed steps.
* generated tokens/s = completion tokens / rollout time (``perf/tokens_per_s``).
* update model FLOPs = 6 * N * T: N = the model's parameters (the tied embedding counted once:
  it is the LM head's matmul), T = prompt + completion tokens of the step's rollouts (what the
  loss's forward and backward run over). Attention's own FLOPs and the recomputed forward of
  gradient checkpointing are not counted (hardware FLOPs would add 2 * N * T with it on).
  MFU = update model FLOPs / update time / the device's datasheet dense bf16 peak.
* peak GPU memory = ``torch.cuda.max_memory_allocated`` (and ``_reserved``) of the training
  process, read when it exits; host peak RSS beside it.

The README's GPU section quotes the measured table from the committed results file:
``python scripts/gpu_check.py --readme`` regenerates that block (:func:`readme_block`; "not
yet measured" while no results file exists).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/gpu_check.py` without PYTHONPATH=.
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "data" / "results" / "gpu_check"
"""Where ``make gpu-check`` writes, and where the README's measured table is read from."""
RESULTS = "results.json"
OUT_FILES = ("results.json", "results.md", "pytest.log", "ckpt-off.log", "ckpt-on.log",
             "ckpt-off.metrics.jsonl", "ckpt-on.metrics.jsonl")
"""Every file the check writes into OUT_DIR (flat: at most 8 files, no sub-folders)."""
FIXTURE = ROOT / "data" / "tasks" / "gsm8k_fixture.jsonl"
README = ROOT / "README.md"
BLOCK = "gpu-check"

BF16_PEAK_TFLOPS = (  # NVIDIA datasheets, dense (no sparsity) bf16 tensor-core TFLOP/s; first match wins
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),  # H200 SXM and GH200: the H100 SXM's tensor cores, more and faster memory
    ("H100", 989.0),  # H100 SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
"""Datasheet peak by a substring of ``torch.cuda.get_device_name()``. Real GEMMs reach less, so
the check also measures one (:func:`matmul_tflops`) and reports that rate beside the MFU."""


@dataclass(frozen=True)
class Sizes:
    """One check's model and workload."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    prompts: int
    rollouts: int
    new_tokens: int
    warmup_steps: int
    timed_steps: int
    matmul_n: int
    device: str
    tests_timeout_s: int
    """Limit of the tests/gpu/ run."""
    child_timeout_s: int
    """Limit of each timed ``lab train`` (with the tests' limit: at most ~8 minutes in all on a GPU)."""


FULL = Sizes(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151_936,  # Qwen2.5-0.5B
             prompts=16, rollouts=4, new_tokens=256, warmup_steps=2, timed_steps=10,
             matmul_n=8192, device="cuda", tests_timeout_s=120, child_timeout_s=170)
DRY = replace(FULL, hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64, vocab=160,
              prompts=2, rollouts=2, new_tokens=8, warmup_steps=1, timed_steps=1,
              matmul_n=128, device="cpu", tests_timeout_s=240, child_timeout_s=240)
RUNS = (("ckpt-off", False), ("ckpt-on", True))
"""(run name, gradient checkpointing) of the two timed runs."""


# ---- provenance ------------------------------------------------------------------------------
def commit(environ=None) -> tuple[str, str]:
    """(commit, where it came from): ``LAB_COMMIT``, else ``git rev-parse HEAD`` in a checkout
    with ``.git``, else ``"unknown"``.

    >>> commit({"LAB_COMMIT": "abc123"})
    ('abc123', 'LAB_COMMIT')
    """
    env = os.environ if environ is None else environ
    if env.get("LAB_COMMIT", "").strip():
        return env["LAB_COMMIT"].strip(), "LAB_COMMIT"
    if (ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip(), "git"
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown", "unknown"


def device_info(device: str) -> dict:
    import torch

    if device != "cuda":
        from lab.provenance import cpu_model

        return {"device": "cpu", "name": cpu_model(), "threads": torch.get_num_threads()}
    p = torch.cuda.get_device_properties(0)
    return {"device": "cuda", "name": torch.cuda.get_device_name(0), "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1), "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def peak_tflops(name: str) -> float | None:
    """The datasheet dense bf16 peak of a device by name (:data:`BF16_PEAK_TFLOPS`), None if unknown.

    >>> peak_tflops("NVIDIA H200"), peak_tflops("NVIDIA H100 PCIe"), peak_tflops("NVIDIA L40S"), peak_tflops("cpu")
    (989.0, 756.0, 362.0, None)
    """
    return next((tf for key, tf in BF16_PEAK_TFLOPS if key in name), None)


def matmul_tflops(n: int, device: str, iters: int = 20) -> float:
    """Measured bf16 (n, n) @ (n, n) throughput in TFLOP/s (fp32 on CPU, where bf16 GEMMs are emulated)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


# ---- the model ---------------------------------------------------------------------------------
def build_model_dir(folder: Path, s: Sizes, seed: int = 0) -> dict:
    """Save a random-init Qwen2 model of ``s``'s shape and a char tokenizer padded to its vocabulary.

    Returns the model's description (parameters, config). The tokenizer is the shipped
    character tokenizer (``lab.models.tiny``) with filler tokens ``<|fill_N|>`` after its 100
    characters, so every id the model can sample decodes."""
    import torch
    from tokenizers import models as tok_models
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lab.models.tiny import UNK_TOKEN, build_char_tokenizer, char_vocab

    vocab = char_vocab()
    if s.vocab < len(vocab):
        raise ValueError(f"vocab {s.vocab} is smaller than the char tokenizer's {len(vocab)} tokens")
    vocab.update({f"<|fill_{i}|>": i for i in range(len(vocab), s.vocab)})
    tok = build_char_tokenizer(model_max_length=4096)
    tok.backend_tokenizer.model = tok_models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN)
    cfg = Qwen2Config(vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                      num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                      max_position_embeddings=4096, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(s.device):  # initialise where it is fast
        model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    del model
    if s.device == "cuda":
        torch.cuda.empty_cache()
    return {"architecture": "Qwen2ForCausalLM (random init, seed %d)" % seed, "parameters": n,
            "config": {k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                    "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")},
            "tokenizer": f"char-level ({len(char_vocab())} tokens) + {s.vocab - len(char_vocab())} filler tokens"}


# ---- the timed runs ---------------------------------------------------------------------------
CHILD = """\
import atexit, json, os, resource, runpy, sys
def _peak():
    rec = {"host_max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        rec.update(gpu_max_allocated=torch.cuda.max_memory_allocated(), gpu_max_reserved=torch.cuda.max_memory_reserved())
    with open(os.environ["LAB_GPU_CHECK_MEMORY"], "w") as f:
        json.dump(rec, f)
atexit.register(_peak)
sys.argv = ["lab", *sys.argv[1:]]
runpy.run_module("lab.cli", run_name="__main__", alter_sys=True)
"""
"""``python -m lab.cli`` (runpy, exactly what ``-m`` runs) plus a record of the process's peak
memory when it exits: the timed runs are ``lab train`` as a user runs it."""


def train_args(model_dir: Path, runs_dir: Path, name: str, checkpointing: bool, s: Sizes) -> list[str]:
    """The ``lab train`` flags of one timed run."""
    return [
        "train", "--model", str(model_dir), "--task", "gsm8k", "--task-params", json.dumps({"path": str(FIXTURE)}),
        "--device", s.device, "--rollout-backend", "hf", "--estimator", "grpo",
        "--prompts-per-step", str(s.prompts), "--rollouts-per-prompt", str(s.rollouts),
        "--max-new-tokens", str(s.new_tokens), "--steps", str(s.warmup_steps + s.timed_steps), "--lr", "1e-6",
        "--shadow-estimators", "", "--probe-every", "0", "--eval-every", "0", "--checkpoint-every", "0",
        "--gradient-checkpointing" if checkpointing else "--no-gradient-checkpointing",
        "--seed", "0", "--quiet", "--output-dir", str(runs_dir), "--run-name", name,
    ]


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; the model is a local folder
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def timed_run(name: str, checkpointing: bool, model_dir: Path, runs_dir: Path, out: Path, s: Sizes, n_params: int,
              peak: float | None) -> dict:
    """One ``lab train`` in a child process; its per-step numbers and summary."""
    mem_file = runs_dir / f"{name}.memory.json"
    args = [sys.executable, "-c", CHILD, *train_args(model_dir, runs_dir, name, checkpointing, s)]
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        log.write("$ python -m lab.cli " + " ".join(args[3:]) + "\n")
        log.flush()
        try:
            rc = subprocess.run(args, cwd=ROOT, env={**child_env(), "LAB_GPU_CHECK_MEMORY": str(mem_file)},
                                stdout=log, stderr=subprocess.STDOUT, timeout=s.child_timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    rec = {"name": name, "gradient_checkpointing": checkpointing, "rc": rc, "wall_s": round(time.perf_counter() - t0, 2)}
    if mem_file.is_file():
        rec["memory"] = json.loads(mem_file.read_text())
    run_dir = runs_dir / name
    if (run_dir / "metrics.jsonl").is_file():
        shutil.copyfile(run_dir / "metrics.jsonl", out / f"{name}.metrics.jsonl")
        rec["steps"] = step_rows(run_dir, model_dir, n_params)
        rec["summary"] = summarize(rec["steps"], s.warmup_steps, peak)
    shutil.rmtree(run_dir, ignore_errors=True)  # its final checkpoint is GBs on a GPU: free the room for the next run
    return rec


def step_rows(run_dir: Path, model_dir: Path, n_params: int) -> list[dict]:
    """Per-step timings and token counts of a run (read through ``lab.runs``)."""
    from transformers import AutoTokenizer

    from lab.runs import load_run

    run = load_run(run_dir, samples=True, probes=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for _, m in run.metrics.sort_values("step").iterrows():
        step = int(m["step"])
        smp = run.samples[run.samples["step"] == step]
        prompt_tok = sum(len(ids) for ids in tok(list(smp["prompt"]), add_special_tokens=False)["input_ids"])
        completion_tok = int(smp["length"].sum())
        step_s, roll_s = float(m["perf/step_time_s"]), float(m["perf/rollout_time_s"])
        upd = m.get("perf/update_time_s")
        update_s = float(upd) if upd is not None and upd == upd else step_s - roll_s
        rows.append({"step": step, "step_s": step_s, "rollout_s": roll_s, "update_s": update_s,
                     "gen_tokens_per_s": float(m["perf/tokens_per_s"]), "prompt_tokens": prompt_tok,
                     "completion_tokens": completion_tok,
                     "update_tflops": 6 * n_params * (prompt_tok + completion_tok) / max(update_s, 1e-9) / 1e12})
    return rows


def summarize(rows: list[dict], warmup: int, peak: float | None) -> dict:
    """Medians over the steps after ``warmup`` (MFU against ``peak`` TFLOP/s when known).

    >>> r = [{"step": i, "step_s": 2.0 + i, "rollout_s": 1.5, "update_s": 0.5 + i, "gen_tokens_per_s": 100.0,
    ...       "prompt_tokens": 10, "completion_tokens": 20, "update_tflops": 30.0} for i in range(3)]
    >>> s = summarize(r, 1, 100.0); s["timed_steps"], s["step_s"], s["mfu"]
    (2, 3.5, 0.3)
    """
    timed = [r for r in rows if r["step"] >= warmup]
    med = lambda k: statistics.median(r[k] for r in timed)  # noqa: E731
    out = {"timed_steps": len(timed)}
    if timed:
        out.update({k: med(k) for k in ("step_s", "rollout_s", "update_s", "gen_tokens_per_s", "update_tflops")})
        out["tokens_per_step"] = med("prompt_tokens") + med("completion_tokens")
        out["mfu"] = out["update_tflops"] / peak if peak else None
    return out


# ---- the report --------------------------------------------------------------------------------
COLUMNS = ("run", "step s", "rollout s", "update s", "gen tok/s", "update TFLOP/s", "MFU", "peak GPU mem GiB (alloc / reserved)")


def table(results: dict) -> str:
    """The results as one Markdown table (a row per timed run).

    >>> print(table({"runs": [{"name": "ckpt-off", "summary": {"step_s": 2.0, "rollout_s": 1.5, "update_s": 0.5,
    ...       "gen_tokens_per_s": 8192.0, "update_tflops": 250.0, "mfu": 0.253}, "memory": {"gpu_max_allocated": 2**34,
    ...       "gpu_max_reserved": 2**35}}, {"name": "ckpt-on", "rc": 1}]}))
    | run | step s | rollout s | update s | gen tok/s | update TFLOP/s | MFU | peak GPU mem GiB (alloc / reserved) |
    |---|---|---|---|---|---|---|---|
    | ckpt-off | 2.00 | 1.50 | 0.50 | 8192 | 250.0 | 25.3% | 16.0 / 32.0 |
    | ckpt-on | failed (rc 1) | | | | | | |
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results["runs"]:
        s = r.get("summary") or {}
        if not s.get("timed_steps", 1) or "step_s" not in s:
            lines.append(f"| {r['name']} | failed (rc {r.get('rc')}) |" + " |" * (len(COLUMNS) - 2))
            continue
        name = r["name"] if r.get("rc", 0) == 0 else f"{r['name']} (rc {r['rc']}: {s['timed_steps']} steps)"
        mem = r.get("memory") or {}
        gpu = (f"{mem['gpu_max_allocated'] / 2**30:.1f} / {mem['gpu_max_reserved'] / 2**30:.1f}"
               if "gpu_max_allocated" in mem else f"n/a (host RSS {mem.get('host_max_rss_kib', 0) / 2**20:.1f})")
        mfu = f"{100 * s['mfu']:.1f}%" if s.get("mfu") is not None else "n/a"
        lines.append(f"| {name} | {s['step_s']:.2f} | {s['rollout_s']:.2f} | {s['update_s']:.2f} | "
                     f"{s['gen_tokens_per_s']:.0f} | {s['update_tflops']:.1f} | {mfu} | {gpu} |")
    return "\n".join(lines)


def describe(results: dict) -> str:
    """The sentence above the table: device, model, sizes, code version."""
    d, m, z, p = results["device"], results["model"], results["sizes"], results["provenance"]
    peak = f"datasheet dense bf16 peak {results['peak_tflops']:.0f} TFLOP/s" if results.get("peak_tflops") else "peak unknown"
    gemm = "bf16" if d["device"] == "cuda" else "fp32"
    return (f"{d['name']} ({peak}; a {z['matmul_n']}-square {gemm} GEMM measured {results['matmul_tflops']:.3g} TFLOP/s), "
            f"commit {p['commit'][:12]}, torch {p['torch']}, transformers {p['transformers']}, {p['created']}: "
            f"random-init {m['architecture'].split(' ')[0]}, {m['parameters'] / 1e6:.3g} M parameters, "
            f"{z['prompts']} prompts x {z['rollouts']} rollouts, {z['new_tokens']} new tokens, hf rollouts, GRPO, "
            f"{'fp32 master weights under bf16 autocast' if d['device'] == 'cuda' else 'fp32'}; "
            f"medians of {z['timed_steps']} steps after {z['warmup_steps']}.")


def readme_block(results_path: Path = DEFAULT_OUT / RESULTS) -> str:
    """The README's GPU block, generated from a results file ("not yet measured" without one)."""
    head = f"<!-- generated by `python scripts/gpu_check.py --readme` from {_rel(results_path)}; do not edit by hand -->"
    if not results_path.is_file():
        return (f"{head}\n**Not yet measured**: no GPU has run `make gpu-check` yet ({_rel(results_path)} does not "
                "exist), so every GPU number in this section is an estimate.")
    results = json.loads(results_path.read_text())
    if results.get("dry_run") or results.get("device", {}).get("device") != "cuda":
        return (f"{head}\n**Not yet measured**: {_rel(results_path)} holds a CPU dry run (tiny model), not a GPU "
                "measurement, so every GPU number in this section is an estimate.")
    return (f"{head}\n**Measured** by `make gpu-check` on {describe(results)}\n\n{table(results)}\n\n"
            "Update = step - rollout (scoring, advantages, the PPO update); MFU = 6·N·tokens / update time / datasheet "
            "peak (model FLOPs: no attention term, no recomputation).")


def _rel(p: Path) -> str:
    try:
        return Path(p).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


# ---- the check ---------------------------------------------------------------------------------
def run_tests(out: Path, s: Sizes) -> dict:
    """``pytest tests/gpu/`` (the CUDA tests skip on a CPU dry run); output in pytest.log."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "gpu")]
    t0 = time.perf_counter()
    with open(out / "pytest.log", "w") as log:
        try:
            rc = subprocess.run(args, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
                                timeout=s.tests_timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    lines = [x for x in (out / "pytest.log").read_text(errors="replace").splitlines() if x.strip()]
    return {"rc": rc, "summary": lines[-1] if lines else "", "wall_s": round(time.perf_counter() - t0, 2)}


def scratch_dir() -> Path:
    """A temporary folder for the model and the run directories (GBs on a GPU: /dev/shm when it has room)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 24 * 2**30:
        return Path(tempfile.mkdtemp(prefix="lab-gpu-check-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="lab-gpu-check-"))


def check(out: Path, s: Sizes, *, dry_run: bool) -> dict:
    """Run every step of the check into ``out``; returns the results (also written to ``out/results.json``)."""
    import torch

    from lab import provenance

    t_start = time.perf_counter()
    if s.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: CUDA is not available here (torch {torch.__version__}); "
                         "use --dry-run for the CPU form of the check")
    out.mkdir(parents=True, exist_ok=True)
    sha, source = commit()
    dev = device_info(s.device)
    peak = peak_tflops(dev["name"]) if s.device == "cuda" else None
    results = {"dry_run": dry_run, "sizes": asdict(s), "device": dev, "peak_tflops": peak,
               "peak_source": "NVIDIA datasheet, dense bf16 (scripts/gpu_check.py BF16_PEAK_TFLOPS)",
               "provenance": {**provenance.collect(device=f"{s.device}:{dev['name']}"), "commit": sha, "commit_source": source},
               "flop_model": "update model FLOPs = 6 * parameters * (prompt + completion tokens); MFU = that / update "
                             "time / peak_tflops (no attention FLOPs, no checkpointing recomputation)",
               "update_time": "perf/update_time_s when logged, else perf/step_time_s - perf/rollout_time_s"}
    print(f"gpu_check: {'dry run, ' if dry_run else ''}{dev['name']}; commit {sha} ({source}); results in {out}", flush=True)
    results["tests"] = run_tests(out, s)
    print(f"gpu_check: tests/gpu: {results['tests']['summary']} ({results['tests']['wall_s']:.0f} s)", flush=True)
    results["matmul_tflops"] = matmul_tflops(s.matmul_n, s.device)
    scratch = scratch_dir()
    try:
        t0 = time.perf_counter()
        results["model"] = build_model_dir(scratch / "model", s)
        results["model"]["build_s"] = round(time.perf_counter() - t0, 2)
        print(f"gpu_check: model {results['model']['parameters'] / 1e6:.1f} M parameters "
              f"({results['model']['build_s']:.0f} s to build and save)", flush=True)
        results["runs"] = []
        for name, ckpt in RUNS:
            rec = timed_run(name, ckpt, scratch / "model", scratch / "runs", out, s, results["model"]["parameters"], peak)
            results["runs"].append(rec)
            print(f"gpu_check: {name}: rc {rec['rc']}, {rec['wall_s']:.0f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["elapsed_s"] = round(time.perf_counter() - t_start, 2)
    results["ok"] = results["tests"]["rc"] == 0 and all(r["rc"] == 0 and r.get("summary", {}).get("timed_steps")
                                                         for r in results["runs"])
    (out / RESULTS).write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    md = f"{describe(results)}\n\n{table(results)}\n"
    (out / "results.md").write_text(md)
    print("\n" + md, flush=True)
    print(f"gpu_check: {'ok' if results['ok'] else 'FAILED'} in {results['elapsed_s']:.0f} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", nargs="?", default=str(DEFAULT_OUT), help=f"results folder (default {_rel(DEFAULT_OUT)})")
    p.add_argument("--dry-run", action="store_true", help="the same steps with a tiny model on CPU (< 1 min)")
    p.add_argument("--readme", action="store_true",
                   help="regenerate the README's GPU block from OUT_DIR/results.json and exit (runs nothing)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    if args.readme:
        from lab.analysis import docblocks

        changed = docblocks.write(README, BLOCK, readme_block(out / RESULTS))
        print(f"README.md: GPU block {'updated' if changed else 'already up to date'} from {_rel(out / RESULTS)}")
        return 0
    results = check(out, DRY if args.dry_run else FULL, dry_run=args.dry_run)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
