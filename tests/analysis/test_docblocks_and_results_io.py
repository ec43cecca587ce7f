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
