"""lab.provenance: what every run and results file records about its origin."""

import json
import subprocess
from pathlib import Path

import torch
import transformers

import lab
from lab import provenance


def test_collect_reports_this_process_versions_and_threads():
    p = provenance.collect(device="cpu")
    assert p["lab_version"] == lab.__version__
    assert p["torch"] == torch.__version__
    assert p["transformers"] == transformers.__version__
    assert p["torch_threads"] == torch.get_num_threads()
    assert p["device"] == "cpu"
    json.dumps(p)  # JSON-safe


def test_collect_names_the_git_commit_in_a_checkout():
    repo = Path(lab.__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return  # installed from a wheel: nothing to compare against
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert provenance.collect()["git_commit"] == head


def test_cpu_model_is_a_nonempty_string():
    assert isinstance(provenance.cpu_model(), str) and provenance.cpu_model()


def test_git_dirty_ignores_the_results_and_sample_runs_the_benchmarks_write(tmp_path, monkeypatch):
    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    for d in provenance.OUTPUTS:
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f.csv").write_text("a\n1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(provenance, "_REPO", tmp_path)

    def dirty():
        provenance._static.cache_clear()
        return provenance._static()["git_dirty"]

    try:
        assert dirty() is False
        for d in provenance.OUTPUTS:  # a sweep rewriting its own results file
            (tmp_path / d / "f.csv").write_text("a\n2\n")
        assert dirty() is False
        (tmp_path / "code.py").write_text("x = 2\n")  # the code that makes the numbers changed
        assert dirty() is True
    finally:
        provenance._static.cache_clear()


def test_a_plain_copy_without_git_takes_its_commit_from_lab_commit(tmp_path, monkeypatch):
    from lab import provenance

    monkeypatch.setattr(provenance, "_REPO", tmp_path)  # no .git here: a plain copy of a checkout
    for env, want in (({"LAB_COMMIT": "abc123"}, "abc123"), ({}, None)):
        monkeypatch.delenv("LAB_COMMIT", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        provenance._static.cache_clear()
        rec = provenance.collect()
        assert rec["git_commit"] == want and rec["git_dirty"] is None
    provenance._static.cache_clear()
