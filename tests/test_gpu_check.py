"""scripts/gpu_check.sh cannot rot: its CPU dry run runs here, the way a GPU machine runs the real one.

The dry run goes through the same steps as the GPU check (tests/gpu/, the model build, two
``python -m lab.cli train`` children, the table), from a plain copy of the checkout with no
``.git`` (the commit comes from ``LAB_COMMIT``), with the packages the GPU image lacks made
unimportable in every process it starts (:data:`NOT_IN_GPU_IMAGE`): a lab import on that path
that needs one of them fails this test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up
spec.loader.exec_module(gpu_check)

NOT_IN_GPU_IMAGE = ("plotly", "streamlit", "ipywidgets", "anywidget", "matplotlib", "kaleido", "jupyterlab", "vllm", "trl",
                    "verl", "nbmake", "playwright")
"""The lab's dependencies (and extras) that the GPU image does not have."""
BLOCKER = f"""\
# Test-only: make these packages look absent, as on the GPU image (tests/test_gpu_check.py).
import sys
from importlib.machinery import PathFinder

_ABSENT = frozenset({NOT_IN_GPU_IMAGE!r})


class _Absent(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in _ABSENT else PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [_Absent if f is PathFinder else f for f in sys.meta_path]
"""
COPIED = ("lab", "scripts", "tests/gpu", "tests/conftest.py", "data/tasks", "pyproject.toml")
"""What a plain checkout needs for the check (no .git, no venv, no sample runs)."""
SHA = "0123456789abcdef0123456789abcdef01234567"


def qwen2_parameters(s) -> int:
    """Qwen2's parameter count from its shape, tied embeddings (q/k/v have biases, o and the MLP do not)."""
    h, head_dim = s.hidden, s.hidden // s.heads
    q, kv = s.heads * head_dim, s.kv_heads * head_dim
    layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * s.intermediate + 2 * h
    return s.vocab * h + s.layers * layer + h


def test_the_scripts_docstring_examples_hold():
    import doctest

    assert doctest.testmod(gpu_check, optionflags=doctest.ELLIPSIS).failed == 0  # scripts/ is outside --doctest-modules


def test_the_full_check_times_a_model_of_qwen2_5_0_5b_shape():
    assert qwen2_parameters(gpu_check.FULL) == 494_032_768  # Qwen2.5-0.5B's published count


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    checkout = tmp / "checkout"
    for rel in COPIED:
        src, dst = ROOT / rel, checkout / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    (tmp / "block").mkdir()
    (tmp / "block" / "sitecustomize.py").write_text(BLOCKER)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
           "PYTHON": sys.executable, "LAB_COMMIT": SHA, "PYTHONPATH": str(tmp / "block")}
    out = tmp / "out"
    proc = subprocess.run(["bash", str(checkout / "scripts" / "gpu_check.sh"), "--dry-run", str(out)], cwd=tmp,
                          env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(out.glob("*.log"))) if out.is_dir() else ""
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{logs}"
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_the_blocker_hides_exactly_the_packages_the_gpu_image_lacks(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    probe = "import importlib.util as u; print([u.find_spec(n) is None for n in ('plotly', 'streamlit', 'torch', 'pandas')])"
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[True, True, False, False]", out.stderr


def test_the_dry_run_writes_its_files_flat_with_the_commit_from_lab_commit(dry_run):
    out, res, _ = dry_run
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_check.OUT_FILES) and len(gpu_check.OUT_FILES) <= 8
    assert all(p.is_file() for p in out.iterdir())  # no folders: one level deep
    assert res["provenance"]["commit"] == SHA and res["provenance"]["commit_source"] == "LAB_COMMIT"
    assert res["dry_run"] is True and res["ok"] is True
    assert res["tests"]["rc"] == 0 and "passed" in res["tests"]["summary"]  # tests/gpu/: CPU tests ran, CUDA ones skipped


def test_the_dry_run_trained_the_stated_model_through_the_cli_with_and_without_checkpointing(dry_run):
    out, res, _ = dry_run
    s = gpu_check.DRY
    assert res["model"]["parameters"] == qwen2_parameters(s)
    assert [(r["name"], r["gradient_checkpointing"], r["rc"]) for r in res["runs"]] == [("ckpt-off", False, 0), ("ckpt-on", True, 0)]
    for r in res["runs"]:
        log = (out / f"{r['name']}.log").read_text()
        assert log.startswith("$ python -m lab.cli train ")
        assert ("--gradient-checkpointing " in log) == r["gradient_checkpointing"]
        metrics = [json.loads(x) for x in (out / f"{r['name']}.metrics.jsonl").read_text().splitlines() if x.strip()]
        assert [m["step"] for m in metrics] == list(range(s.warmup_steps + s.timed_steps))
        assert r["summary"]["timed_steps"] == s.timed_steps
        for row, m in zip(r["steps"], metrics):
            assert row["update_s"] == pytest.approx(m["perf/step_time_s"] - m["perf/rollout_time_s"])
            assert row["completion_tokens"] == pytest.approx(m["response/length_mean"] * s.prompts * s.rollouts)
            assert 0 < row["completion_tokens"] <= s.prompts * s.rollouts * s.new_tokens
            assert row["prompt_tokens"] >= s.prompts * s.rollouts * len("Question: ")  # one token per character
            flops = 6 * qwen2_parameters(s) * (row["prompt_tokens"] + row["completion_tokens"])
            assert row["update_tflops"] == pytest.approx(flops / row["update_s"] / 1e12)
        assert r["memory"]["host_max_rss_kib"] > 0 and "gpu_max_allocated" not in r["memory"]  # CPU: no GPU figures


def test_the_dry_run_prints_one_table_with_a_row_per_run(dry_run):
    out, res, stdout = dry_run
    md = (out / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ckpt-")]
    assert [r.split("|")[1].strip() for r in rows] == ["ckpt-off", "ckpt-on"]
    assert gpu_check.table(res) in md and gpu_check.table(res) in stdout


def test_a_dry_run_results_file_never_becomes_the_readmes_measured_table(dry_run):
    out, _, _ = dry_run
    block = gpu_check.readme_block(out / "results.json")
    assert "Not yet measured" in block and "dry run" in block and "| ckpt-" not in block


def test_a_gpu_results_file_renders_the_measured_table_with_its_device_and_commit(dry_run, tmp_path):
    _, res, _ = dry_run
    gpu = {**res, "dry_run": False, "device": {"device": "cuda", "name": "NVIDIA H200"}, "peak_tflops": 989.0}
    (tmp_path / "results.json").write_text(json.dumps(gpu))
    block = gpu_check.readme_block(tmp_path / "results.json")
    assert block.count("\n| ckpt-") == 2 and "**Measured**" in block
    assert "NVIDIA H200" in block and SHA[:12] in block and "989 TFLOP/s" in block


def test_the_readme_gpu_block_is_the_one_generated_from_the_committed_results():
    from lab.analysis import docblocks

    readme = (ROOT / "README.md").read_text()
    assert docblocks.block(readme, gpu_check.BLOCK) == gpu_check.readme_block().strip("\n"), \
        "README.md's GPU block is stale: run `python scripts/gpu_check.py --readme`"


def test_without_cuda_the_full_check_refuses_and_points_to_the_dry_run(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the full check would run")
    with pytest.raises(SystemExit, match="--dry-run"):
        gpu_check.check(tmp_path / "out", gpu_check.FULL, dry_run=False)
    assert not (tmp_path / "out").exists()  # refused before writing anything
