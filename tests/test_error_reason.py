"""``lab.errors.reason``: every message that quotes a caught exception goes through it, so the
whole class of texts an exception can carry (empty, multi-line, long, unbroken, non-ASCII, a
``__str__`` that raises) gives one readable line within its limit, cut at a word."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import reason


class _Hostile(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class _NotText(Exception):
    def __str__(self):
        return 42  # str() raises TypeError


@pytest.mark.parametrize("e, want", [
    (ValueError(""), "ValueError"),
    (ValueError("   \n\t "), "ValueError"),
    (_Hostile(), "_Hostile"),
    (_NotText(), "_NotText"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
    (OSError("first\nsecond"), "first"),
    ("", ""),
])
def test_reason_names_the_type_when_there_is_no_text(e, want):
    assert reason(e) == want


def test_reason_joins_lines_when_asked_and_keeps_short_text_whole():
    assert reason(ValueError("a\n  b\n\nc"), join=True) == "a b c"
    assert reason("x" * 160, 160) == "x" * 160


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab Ωé\n\t.;(-"), max_size=400), limit=st.integers(2, 200),
       join=st.booleans())
def test_reason_is_one_line_within_its_limit_and_a_prefix_of_the_text(text, limit, join):
    got = reason(ValueError(text), limit, join=join)
    assert "\n" not in got and len(got) <= limit
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    full = (" ".join(lines) if join else lines[0]) if lines else "ValueError"
    if len(full) <= limit:
        assert got == full
    else:
        assert got.endswith("…") and full.startswith(got[:-1])
        kept = got[:-1]
        if " " in full[limit // 2: limit]:  # a space in the second half of what fits: cut at a word
            assert full[len(kept)] in " .,;:(-", (full, kept)


def test_a_torn_parquet_file_is_named_with_a_reason_cut_at_a_word(tmp_path):
    from lab.runs.reader import _parquet_problem

    f = tmp_path / "step_000001.parquet"
    e = OSError(f"Could not open Parquet input source '{f}': Parquet magic bytes not found in footer. "
                "Either the file is corrupted or this is not a parquet file. " * 3)
    msg = _parquet_problem(f, "samples/step_000001.parquet", e)
    assert str(f) not in msg and "step_000001.parquet" in msg
    assert msg.endswith("…)") and " the )" not in msg and len(msg) < 240
