"""lab.analysis.docblocks and results: one marker style, atomic writes, torn lines skipped."""

import pytest

from lab.analysis import docblocks, results

ROOT = results.RESULTS_DIR.parents[1]


def test_every_generated_block_of_readme_and_docs_uses_the_one_marker_style():
    import re

    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = p.read_text(encoding="utf-8")
        assert ":begin -->" not in text, p
        for name in re.findall(r"<!-- ([a-z0-9-]+):start -->", text):
            assert text.count(docblocks.markers(name)[1]) == 1, (p, name)


def test_splice_replaces_only_the_block_and_write_is_a_no_op_when_unchanged(tmp_path):
    p = tmp_path / "d.md"
    p.write_text("a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n")
    assert docblocks.write(p, "x", "new") and p.read_text() == "a\n<!-- x:start -->\nnew\n<!-- x:end -->\nb\n"
    assert not docblocks.write(p, "x", "new")
    with pytest.raises(docblocks.MissingMarkers, match="y:start"):
        docblocks.write(p, "y", "z")


def test_append_after_a_torn_line_resumes_on_a_fresh_line(tmp_path):
    p = tmp_path / "r.csv"
    results.append_rows(p, [{"a": 1, "b": 2}], ["a", "b"])
    with p.open("a") as f:
        f.write("3,")  # killed mid-row
    assert [r["a"] for r in results.read_rows(p, {"a": int})] == [1]
    results.append_rows(p, [{"a": 4, "b": 5}], ["a", "b"])
    assert [r["a"] for r in results.read_rows(p, {"a": int})] == [1, 4]


def _append_many(args):
    path, who, n = args
    for i in range(n):
        results.append_rows(path, [{"who": who, "i": i}], ["who", "i"])


def test_processes_appending_side_by_side_to_a_new_file_write_one_header_and_whole_lines(tmp_path):
    """time_to_accuracy --jobs 2 once wrote two headers: both children saw an empty file before either wrote."""
    import multiprocessing as mp

    p = tmp_path / "r.csv"
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.map(_append_many, [(p, w, 50) for w in range(4)])
    lines = p.read_text().splitlines()
    assert lines[0] == "who,i" and lines.count("who,i") == 1
    assert sorted(lines[1:]) == sorted(f"{w},{i}" for w in range(4) for i in range(50))


def test_every_committed_results_file_records_where_its_numbers_came_from():
    # the whole class: per-row provenance columns, a sidecar with the run's provenance, or a sidecar naming the
    # results files it was derived from (each of which records its own)
    from lab.analysis import results

    folder = results.path("value_mse").parent
    missing = []
    for f in sorted(folder.glob("*.csv")):
        head = f.read_text(encoding="utf-8").splitlines()[0].split(",")
        meta = results.read_sidecar(f)
        if {"git_commit", "created"} <= set(head) or {"prov_git_commit", "prov_created"} <= set(head) or meta.get("provenance"):
            continue
        derived = meta.get("derived_from") or {}
        if not derived or not all((folder / name).is_file() for name in derived):
            missing.append(f.name)
    assert not missing, f"results files without provenance: {missing}"


def test_a_derived_file_names_its_sources_and_their_commits(tmp_path):
    from lab.analysis import results

    src = tmp_path / "runs.csv"
    results.write_csv(src, [{"x": 1, "git_commit": "abc", "git_dirty": False, "created": "t1"},
                            {"x": 2, "git_commit": "def", "git_dirty": True, "created": "t0"}], ["x", "git_commit", "git_dirty", "created"])
    out = tmp_path / "summary.csv"
    results.write_derived(out, [{"mean": 1.5}], ["mean"], [src])
    meta = results.read_sidecar(out)
    assert meta == {"derived_from": {"runs.csv": {"git_commits": ["abc", "def"], "git_dirty": True, "created": ["t0", "t1"]}}}
    again = tmp_path / "fit.csv"
    results.write_derived(again, [{"k": 0}], ["k"], [out])
    assert results.read_sidecar(again)["derived_from"]["summary.csv"] == {"derived_from": meta["derived_from"]}
