"""Issue 21, class 1 (and class 7's duplicate prompts): every value a JSONL task file can hold
is checked when the task is made, with one message naming the file, the line and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import cli, tasks
from lab.errors import LabError, TaskDataError, TaskFileNotFound
from lab.tasks.base import hash_split
from lab.tasks.extract import answers_match

ROOT = Path(__file__).resolve().parents[2]
MICRO = str(ROOT / "tests" / "fixtures" / "micro-model")


def _file(tmp_path: Path, lines: list[str], name: str = "t.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return p


GOOD = '{"prompt": "1+1=", "answer": "2"}'


@pytest.mark.parametrize("line, field, words", [
    ('{"prompt": "q", "answer": NaN}', "answer", "NaN (not a JSON value)"),
    ('{"prompt": Infinity, "answer": "1"}', "prompt", "Infinity (not a JSON value)"),
    ('{"prompt": "q", "answer": -Infinity}', "answer", "-Infinity (not a JSON value)"),
    ('{"prompt": "q", "answer": null}', "answer", "is null"),
    ('{"prompt": ["q"], "answer": "1"}', "prompt", "is a list"),
    ('{"prompt": "q", "answer": {"v": 1}}', "answer", "is an object"),
    ('{"prompt": "q", "answer": true}', "answer", "is a boolean"),
    ('{"prompt": "q", "answer": ""}', "answer", "is empty"),
    ('{"prompt": "q", "answer": " \\t\\n"}', "answer", "is empty"),
    ('{"prompt": "   ", "answer": "1"}', "prompt", "the prompt is empty"),
    ('{"prompt": "q"}', "answer", "missing field 'answer'"),
    ('{"prompt": "\\ud800", "answer": "1"}', "prompt", "unpaired surrogate"),
    ('{"prompt": "q", "answer": "1", "answer": "2"}', None, "key 'answer' appears twice"),
    ('{"prompt": "q", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}", "answer", "is nested too deeply"),
    ('{"prompt": "q", "answer": ' + "9" * 5000 + "}", None, "not valid JSON"),
    ('[1, 2]', None, "expected a JSON object, got a list"),
    ('"just text"', None, "expected a JSON object, got a string"),
])
def test_a_bad_record_is_refused_naming_the_file_the_line_and_the_field(tmp_path, line, field, words):
    p = _file(tmp_path, [GOOD, "", line])
    with pytest.raises(TaskDataError) as e:
        tasks.get("jsonl", path=str(p), test_fraction=0.0)
    msg = str(e.value)
    assert msg.startswith(f"{p} line 3: ") and words in msg, msg
    if field is not None:
        assert repr(field) in msg, msg
    assert "\n" not in msg


def test_numbers_are_text_and_a_numeric_answer_scores_numerically(tmp_path):
    p = _file(tmp_path, ['{"prompt": 12, "answer": 7}', '{"prompt": "x", "answer": 2.5}'])
    t = tasks.get("jsonl", path=str(p), test_fraction=0.0)
    exs = sorted(t.examples("train"), key=lambda e: e.meta["line"])
    assert [(e.prompt, e.answer) for e in exs] == [("12", "7"), ("x", "2.5")]
    assert t.reward("7", exs[0]) == 1.0 and t.reward("", exs[0]) == 0.0


@pytest.mark.parametrize("template, words", [
    ("{prompt:>999999999}", "width or precision of 999999999"),
    ("{prompt:.{w}}", "nested format spec"),
    ("{}", "positional field {}"),
    ("{0}", "positional field {0}"),
    ("{prompt.upper}", "attribute or index"),
    ("{prompt[0]}", "attribute or index"),
    ("{prompt:d}", "does not format text fields"),
    ("{prompt", "expected '}'"),
    ("}", "Single '}'"),
    (42, "must be a string, got a number"),
])
def test_a_template_that_cannot_render_within_bounds_is_refused_before_reading(tmp_path, template, words):
    p = _file(tmp_path, [GOOD])
    with pytest.raises(TaskDataError, match=r"^template: ") as e:
        tasks.get("jsonl", path=str(p), template=template)
    assert words in str(e.value)


def test_a_bounded_format_spec_is_allowed(tmp_path):
    p = _file(tmp_path, [GOOD])
    t = tasks.get("jsonl", path=str(p), template="Q: {prompt:>6}|{prompt!r}", test_fraction=0.0)
    assert next(t.examples("train")).prompt == "Q:   1+1=|'1+1='"


@pytest.mark.parametrize("make, words", [
    (lambda d: _file(d, []), "no records (the file is empty or holds only blank lines)"),
    (lambda d: _file(d, ["", "   ", "\t"]), "no records"),
    (lambda d: (_file(d, [GOOD, '{"prompt": "2+2=", "answer": "4"}']), {"test_fraction": 1.0}), "all 2 records fall in the test split"),
    (lambda d: {"test": str(_file(d, [GOOD]))}, "the mapping has no 'train' file"),
    (lambda d: {"train": str(_file(d, [], "train.jsonl")), "test": str(_file(d, [GOOD], "test.jsonl"))}, "train.jsonl: no records"),
])
def test_a_task_without_training_examples_is_refused(tmp_path, make, words):
    made = make(tmp_path)
    path, extra = made if isinstance(made, tuple) else (made, {})
    with pytest.raises(TaskDataError) as e:
        tasks.get("jsonl", path=str(path) if isinstance(path, Path) else path, **extra)
    assert words in str(e.value)


def test_a_folder_without_train_jsonl_and_a_missing_file_are_named(tmp_path):
    _file(tmp_path, [GOOD], "test.jsonl")
    with pytest.raises(TaskFileNotFound, match="has no train.jsonl"):
        tasks.get("jsonl", path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.jsonl not found"):
        tasks.get("jsonl", path=str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("kw, name", [({"prompt_field": ""}, "prompt_field"), ({"answer_field": ["a"]}, "answer_field"),
                                      ({"test_fraction": True}, "test_fraction"), ({"test_fraction": math.nan}, "test_fraction"),
                                      ({"shuffle": "no"}, "shuffle"), ({"answer_extraction": "regex"}, "answer_extraction"),
                                      ({"path": 3}, "path"), ({"path": {"train": None}}, "path")])
def test_bad_task_parameters_are_named(tmp_path, kw, name):
    kw = {"path": str(_file(tmp_path, [GOOD])), **kw}
    with pytest.raises(TaskDataError, match=rf"^{name}: "):
        tasks.get("jsonl", **kw)


# --- class 7: one prompt, one answer -------------------------------------------------------------
def test_the_same_prompt_with_another_answer_is_refused_naming_both_lines(tmp_path):
    p = _file(tmp_path, [GOOD, '{"prompt": "3+3=", "answer": "6"}', '{"prompt": "1+1=", "answer": "3"}'])
    with pytest.raises(TaskDataError) as e:
        tasks.get("jsonl", path=str(p))
    msg = str(e.value)
    assert msg.startswith(f"{p} line 3: field 'answer'") and f"{p} line 1" in msg and "'3'" in msg and "'2'" in msg


def test_across_split_files_too_and_a_numerically_equal_answer_is_the_same_answer(tmp_path):
    train = _file(tmp_path, [GOOD], "train.jsonl")
    _file(tmp_path, ['{"prompt": "1+1=", "answer": "5"}'], "test.jsonl")
    with pytest.raises(TaskDataError, match=rf"test.jsonl line 1: .*the prompt of {train} line 1 again"):
        tasks.get("jsonl", path=str(tmp_path))
    p = _file(tmp_path, [GOOD, '{"prompt": "1+1=", "answer": "2.0"}', '{"prompt": "2+2=", "answer": "4"}'], "same.jsonl")
    t = tasks.get("jsonl", path=str(p), test_fraction=0.0)
    assert len(t) == 2 and t.duplicates == [f"{p} line 2"]  # the exact repeat is skipped, once
    ids = [e.prompt_id for e in t.examples("train")]
    assert len(set(ids)) == len(ids)


# --- the CLI: exit 2, nothing written -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("lines, extra", [
    (['{"prompt": "1+1=", "answer": NaN}'], {}), ([], {}), ([GOOD], {"test_fraction": 1.0}),
    (['{"prompt": "1+1=", "answer": ""}'], {}), ([GOOD], {"template": "{prompt:>99999999999}"}),
])
def test_the_cli_refuses_bad_task_data_in_one_line_and_writes_nothing(tmp_path, capsys, lines, extra):
    p = _file(tmp_path, lines)
    params = json.dumps({"path": str(p), **extra})
    rc = cli.main(["train", "--model", MICRO, "--task", "jsonl", "--task-params", params, "--output-dir", str(tmp_path / "out"),
                   "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(p) in err or "template" in err
    assert not (tmp_path / "out").exists()


# --- the sweep: random JSON in every field ---------------------------------------------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=4), st.sampled_from(["", " ", "\t\n", "12", "#### 3", "\\boxed{4}"]))
json_values = st.recursive(json_scalars, lambda c: st.one_of(st.lists(c, max_size=2), st.dictionaries(st.text(max_size=2), c, max_size=2)),
                           max_leaves=4)
raw_values = st.one_of(json_values.map(json.dumps), st.sampled_from(["NaN", "Infinity", "-Infinity", "[" * 3000 + "]" * 3000]))
record = st.one_of(
    st.fixed_dictionaries({"prompt": raw_values, "answer": raw_values}),
    st.fixed_dictionaries({"prompt": raw_values}),
    st.fixed_dictionaries({"prompt": st.text(min_size=1, max_size=3).map(json.dumps), "answer": st.sampled_from(['"1"', '"2"', "3"])}),
)


def _line(rec: dict) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in rec.items()) + "}"


def _text(raw: str):
    """The field's text by the documented rule, computed from the raw JSON (None: refused)."""
    if raw in ("NaN", "Infinity", "-Infinity") or raw.startswith("[" * 3000):
        return None
    v = json.loads(raw)
    if isinstance(v, bool) or v is None or isinstance(v, (list, dict)):
        return None
    if isinstance(v, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in v):
        return None  # an unpaired surrogate escape: not text
    return v if isinstance(v, str) else json.dumps(v)


def _expected_error(lines: list, test_fraction: float):
    """(line, field) of the first problem the documented rules name, or None if the task is valid."""
    seen, train = {}, 0
    for n, rec in enumerate(lines, start=1):
        if rec is None:
            continue
        deep = [f for f, raw in rec.items() if raw.startswith("[" * 3000)]
        if deep:
            return n, deep[0]  # the reader cannot parse the line: it names the deep field
        texts = {}
        for f in ("prompt", "answer"):
            if f not in rec:
                return n, f
            texts[f] = _text(rec[f])
            if texts[f] is None:
                return n, f
        if not texts["answer"].strip():
            return n, "answer"
        if not texts["prompt"].strip():
            return n, "prompt"
        p, a = texts["prompt"], texts["answer"].strip()
        if p in seen and not answers_match(a, seen[p]):
            return n, "answer"
        if p not in seen:
            seen[p] = a
            train += hash_split(p, test_fraction) == "train"
    return None if train else (None, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(st.none(), record), max_size=6), test_fraction=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_json_gives_a_valid_task_or_one_lab_error_naming_file_line_and_field(tmp_path_factory, lines, test_fraction):
    d = tmp_path_factory.mktemp("sweep")
    p = _file(d, ["" if rec is None else _line(rec) for rec in lines])
    want = _expected_error(lines, test_fraction)
    try:
        t = tasks.get("jsonl", path=str(p), test_fraction=test_fraction)
    except LabError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(p)), msg
        assert want is not None, msg
        line, field = want
        if line is None:
            assert "no training examples" in msg or "no records" in msg, msg
        else:
            assert msg.startswith(f"{p} line {line}: ") and repr(field) in msg, (msg, want)
        return
    assert want is None, want
    exs = list(t.examples("train")) + list(t.examples("test"))
    assert list(t.examples("train"))
    for ex in exs:
        assert isinstance(ex.prompt, str) and ex.prompt.strip() and isinstance(ex.answer, str) and ex.answer.strip()
        assert t.reward(ex.answer, ex) in (0.0, 1.0) and t.reward("", ex) == 0.0 and t.reward(" \n", ex) == 0.0
