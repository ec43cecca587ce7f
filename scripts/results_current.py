"""Are the committed results the numbers today's code computes? Re-run every driver small, at the
commits that made each results file and at HEAD, and compare.

Run from the repository root (``make results-current``, ~7 min on 2 cores)::

    .venv/bin/python scripts/results_current.py [--against REV] [--files value_mse.csv ...] [--jobs 2]

A results file is made over sessions, often by several commits (a resumed sweep records each row's
``git_commit``; a file written at once records its sidecar's). Re-making all of ``make bench`` (~8
CPU-hours) to learn whether later commits changed its numbers is out of reach on every change, so
this check answers that question directly: for each results file in :data:`SMOKE` and each commit
that made its rows (``lab.analysis.results.made_by``), the file's driver runs at a smoke size in a
throwaway ``git worktree`` of that commit and once at ``--against`` (default HEAD, the committed
tree: uncommitted edits are not checked), and the rows of the two outputs are compared exactly on
every column but timings and provenance (``results.row_agreement``). For ``time_to_accuracy.csv``
each commit runs the labels it made. The sample runs (``data/sample_runs/``) are re-made at
``--against`` by ``scripts/make_sample_runs.py`` and their metrics compared the same way.

Equal smoke outputs mean the code path that made the rows computes today what it computed then
(the same seeds, configs built by the same driver code, the same trainer or bandit); a difference
names the file and commit whose rows a re-make would change. It does not re-check thread-count
nondeterminism (a run's reduction order differs between 1 and 2 torch threads): every smoke run
here uses the same threads at both commits.

The table goes to ``data/results/results_current.csv`` (with provenance): ``docs/claims.md``'s
Sources list and the README's Results block say, for each file, when it was last checked and with
what outcome (``make results-current`` regenerates both after the check). Exit 1 if any file's rows
differ or a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import provenance  # noqa: E402
from lab.analysis import results  # noqa: E402

OUT = REPO / "data" / "results" / "results_current.csv"
FIELDS = ["file", "made_at", "checked_against", "rows", "equal_rows", "columns_compared", "outcome", "detail",
          "git_commit", "git_dirty", "created"]
SMOKE: dict[str, tuple[str, list[str]]] = {
    "time_to_accuracy.csv": ("benchmarks/time_to_accuracy.py",
                             ["--seeds", "0", "--steps", "20", "--eval-every", "5", "--jobs", "1", "--runs-dir", "{work}/runs"]),
    "basis_real.csv": ("benchmarks/basis_real.py", ["--seeds", "1", "--steps", "8"]),
    "krpo_partial_credit.csv": ("benchmarks/krpo_partial_credit.py", ["--seeds", "1", "--steps", "8"]),
    "kl3_entropy.csv": ("benchmarks/kl3_entropy.py", ["--seeds", "1", "--steps", "6"]),
    "learning_curve.csv": ("benchmarks/learning_curve.py", ["--seeds", "0", "--steps", "15"]),
    "value_mse_real.csv": ("benchmarks/value_mse_real.py", ["--quick", "--no-match"]),
    "value_mse.csv": ("benchmarks/value_mse.py",
                      ["--seeds", "2", "--steps", "30", "--group-sizes", "2", "4", "--reuses", "1", "4", "--fresh"]),
    "value_mse_calibrated.csv": ("benchmarks/value_mse.py", ["--calibrated", "--seeds", "2", "--steps", "30",
                                                             "--group-sizes", "2", "4", "--reuses", "1", "4", "--fresh"]),
    "value_mse_long.csv": ("benchmarks/value_mse.py", ["--long", "--seeds", "2", "--steps", "40", "--warmup", "10",
                                                       "--fresh"]),
    "grad_variance.csv": ("benchmarks/grad_variance.py", ["--quick", "--work-dir", "{work}/gv"]),
}
"""Each checked results file: its driver and the smoke-size arguments it runs with (``--out`` is added).
Files that hold timings only (step time, load time, speeds, the reward sandbox's cost) are not checked:
their numbers are the machine's. Derived files (summaries, fits) follow from the files they are made from."""
NOT_CHECKED = {
    "dashboard_load.csv": "timings of this machine", "reward_sandbox.csv": "timings of this machine",
    "step_time_vs_trl.csv": "timings of this machine", "step_time_vs_trl_1thread.csv": "timings of this machine",
    "time_to_accuracy_summary.csv": "summarises time_to_accuracy.csv (the same driver writes both)",
    "results_current.csv": "this check's own table",
}
"""Results files with no smoke run here, and why; any other file is in :data:`SMOKE` or derived (its sidecar's
``derived_from`` names files that are)."""
SAMPLE_RUNS = "data/sample_runs"


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def labels_made_by(csv_path: Path, commit: str) -> list[str]:
    """The ``label`` values of a time-to-accuracy file's rows made by ``commit`` (first-seen order)."""
    return list(dict.fromkeys(r["label"] for r in results.read_rows(csv_path) if r.get("git_commit") == commit))


def plan(files: list[str], root: Path = REPO / "data" / "results") -> list[tuple[str, str, list[str]]]:
    """(file, commit, extra driver arguments) for every commit that made each file's rows."""
    jobs = []
    for name in files:
        for commit in results.made_by(root / name):
            extra = ["--labels", *labels_made_by(root / name, commit)] if name == "time_to_accuracy.csv" else []
            jobs.append((name, commit, extra))
    return jobs


class Worktrees:
    """Throwaway ``git worktree``s of commits, one per commit, removed on exit."""

    def __init__(self, base: Path):
        self.base, self.made = base, {}

    def __call__(self, commit: str) -> Path:
        if commit not in self.made:
            d = self.base / f"wt-{commit[:12]}"
            git("worktree", "add", "--detach", "--force", str(d), commit)
            self.made[commit] = d
        return self.made[commit]

    def close(self) -> None:
        for d in self.made.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(d)], cwd=REPO, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)


def run_driver(tree: Path, name: str, extra: list[str], out: Path) -> str | None:
    """Run ``name``'s driver at smoke size in ``tree`` writing ``out``; None, or the error's last lines."""
    script, args = SMOKE[name]
    work = out.parent
    cmd = [sys.executable, script, *[a.format(work=work) for a in args], *extra, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode != 0 or not out.is_file():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return f"exit {p.returncode}: " + " | ".join(tail)
    return None


def compare_sample_runs(made: Path, committed: Path) -> tuple[int, int, str]:
    """(metric rows compared, rows equal, detail) between freshly made sample runs and the committed ones."""
    rows = same = 0
    odd = []
    for run in sorted(p.name for p in committed.iterdir() if (p / "metrics.jsonl").is_file()):
        old = [json.loads(x) for x in (committed / run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        new_p = made / run / "metrics.jsonl"
        new = [json.loads(x) for x in new_p.read_text().splitlines() if x.strip()] if new_p.is_file() else []
        n, _ = results.row_agreement(old, new)
        rows, same = rows + len(old), same + n
        if n < len(old):
            odd.append(f"{run} {n}/{len(old)}")
    return rows, same, "; ".join(odd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", default="HEAD", help="the commit whose code is checked (default HEAD)")
    ap.add_argument("--files", nargs="+", default=list(SMOKE), choices=list(SMOKE), metavar="FILE",
                    help="results files to check (default: every one in SMOKE)")
    ap.add_argument("--no-samples", action="store_true", help="skip the sample runs")
    ap.add_argument("--jobs", type=int, default=2, help="driver runs side by side, one torch thread each (default 2)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"the table (default {OUT.relative_to(REPO)})")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {a.jobs}")
    against = git("rev-parse", a.against)
    if git("status", "--porcelain", "--untracked-files=no"):
        print(f"note: the working tree has uncommitted changes; the check runs the committed {against[:10]}")
    jobs = plan(a.files)
    print(f"{len(jobs)} (file, commit) pairs against {against[:10]}; {len(set(c for _, c, _ in jobs))} commits")
    prov = provenance.collect()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lab-results-current-") as tmp:
        trees = Worktrees(Path(tmp))
        try:
            for c in sorted({c for _, c, _ in jobs} | {against}):
                try:
                    trees(c)
                except subprocess.CalledProcessError as e:
                    print(f"  commit {c[:10]} is not in this clone ({e.stderr.strip()[:120]})")

            def one(i_job):
                i, (name, commit, extra) = i_job
                if commit not in trees.made:
                    return name, commit, None, None, "commit not in this clone (fetch the full history)"
                base = Path(tmp) / f"job{i}"
                old_out, new_out = base / "old" / name, base / "new" / name
                old_out.parent.mkdir(parents=True)
                new_out.parent.mkdir(parents=True)
                err = run_driver(trees.made[commit], name, extra, old_out) or \
                    run_driver(trees.made[against], name, extra, new_out)
                return name, commit, old_out, new_out, err

            with ThreadPoolExecutor(max_workers=a.jobs) as pool:
                for name, commit, old_out, new_out, err in pool.map(one, enumerate(jobs)):
                    row = {"file": name, "made_at": commit[:10], "checked_against": against[:10]}
                    if err:
                        row.update(outcome="failed", detail=err)
                    else:
                        old, new = results.read_rows(old_out), results.read_rows(new_out)
                        same, cols = results.row_agreement(old, new)
                        row.update(rows=len(old), equal_rows=same, columns_compared=len(cols),
                                   outcome="same" if old and same == len(old) else "differs",
                                   detail="" if old else "the smoke run wrote no rows")
                    rows.append(row)
                    print(f"  {name:26s} made at {commit[:10]}: {row['outcome']:7s} "
                          f"{row.get('equal_rows', '')}/{row.get('rows', '')} rows {row.get('detail', '')}", flush=True)
            if not a.no_samples:
                made = Path(tmp) / "samples"
                tree = trees.made[against]
                committed = tree / SAMPLE_RUNS
                provs = [json.loads(f.read_text()) for f in committed.glob("*/provenance.json")]
                made_at = sorted({d.get("git_commit", "")[:10] for d in provs})
                # the threads they were made with: a run's reduction order, so its last digits, depend on it
                threads = max((d.get("torch_threads") or 1 for d in provs), default=1)
                p = subprocess.run([sys.executable, "scripts/make_sample_runs.py", "--output-dir", str(made)], cwd=tree,
                                   env={**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)},
                                   capture_output=True, text=True)
                row = {"file": SAMPLE_RUNS + "/", "made_at": " ".join(made_at), "checked_against": against[:10]}
                if p.returncode != 0:
                    row.update(outcome="failed", detail=" | ".join((p.stderr or p.stdout).strip().splitlines()[-3:]))
                else:
                    n, same, odd = compare_sample_runs(made, committed)
                    row.update(rows=n, equal_rows=same, outcome="same" if n and same == n else "differs", detail=odd)
                rows.append(row)
                print(f"  {SAMPLE_RUNS + '/':26s} made at {row['made_at']}: {row['outcome']} "
                      f"{row.get('equal_rows', '')}/{row.get('rows', '')} metric rows {row.get('detail', '')}")
        finally:
            trees.close()
    for r in rows:
        r.update(git_commit=prov.get("git_commit"), git_dirty=prov.get("git_dirty"), created=prov.get("created"))
    results.write_csv(a.out, rows, FIELDS)
    results.write_sidecar(a.out, {"provenance": prov})
    bad = [r for r in rows if r["outcome"] != "same"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} checks the same; table: {a.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
