"""Tests for lab/tasks: generators, splits, rewards, the safe countdown parser, extraction,
JSONL loading and time-limited scoring."""

from __future__ import annotations

import builtins
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import tasks
from lab.tasks.base import Example, Task, hash_split, stable_prompt_id
from lab.tasks.countdown import UnsafeExpression, expression_of, parse_expression
from lab.tasks.extract import answers_match, extract_answer, parse_number
from lab.tasks.jsonl import GSM8K_FIXTURE, read_jsonl
from lab.tasks.scoring import score

ROOT = Path(__file__).resolve().parents[1]


def _solve(prompt: str) -> int:
    """Independent check of an arithmetic prompt: parse it with a regex, compute with ints."""
    a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)=", prompt).groups()
    return {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]


# --- registry ----------------------------------------------------------------------------------
def test_builtin_tasks_are_registered_and_follow_the_task_protocol():
    assert {"arithmetic", "countdown", "gsm8k", "jsonl"} <= set(tasks.available())
    for name in ("arithmetic", "countdown", "gsm8k"):
        t = tasks.get(name)
        assert isinstance(t, Task) and t.name == name
        json.dumps(t.params)  # recordable in config.json


def test_get_rejects_unknown_params_naming_the_param_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"no parameter 'digits'.*min_digits, max_digits, ops, test_fraction"):
        tasks.get("arithmetic", digits=3)
    with pytest.raises(ValueError, match=r"unknown task 'arith'; available: .*arithmetic"):
        tasks.get("arith")


def test_register_rejects_a_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        tasks.register("arithmetic")(object)


def test_reference_answers_score_one_for_every_builtin_task():
    for name in ("arithmetic", "countdown", "gsm8k"):
        t = tasks.get(name)
        for split in ("train", "test"):
            exs = t.sample(300, split, seed=1)
            assert exs, (name, split)
            assert all(t.reward(ex.answer, ex) == 1.0 for ex in exs), name


# --- arithmetic --------------------------------------------------------------------------------
def test_arithmetic_stream_is_the_same_for_a_seed_and_differs_between_seeds():
    t = tasks.get("arithmetic")
    a, b, c = t.sample(200, "train", 7), t.sample(200, "train", 7), t.sample(200, "train", 8)
    assert [(e.prompt, e.answer, e.prompt_id) for e in a] == [(e.prompt, e.answer, e.prompt_id) for e in b]
    assert [e.prompt for e in a] != [e.prompt for e in c]
    assert t.dataset("test", 50, seed=3) == t.dataset("test", 50, seed=3)


def test_arithmetic_prompt_ids_are_content_hashes_stable_across_processes():
    t = tasks.get("arithmetic")
    exs = t.sample(5, "train", 0)
    assert all(e.prompt_id == stable_prompt_id("arithmetic", e.prompt) for e in exs)
    code = "from lab import tasks; print([e.prompt_id for e in tasks.get('arithmetic').sample(5, 'train', 0)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, check=True).stdout
    assert out.strip() == str([e.prompt_id for e in exs])


def test_arithmetic_train_and_test_never_share_a_problem_across_thousands_of_prompts():
    t = tasks.get("arithmetic")
    train = {e.prompt for s in range(3) for e in t.sample(4000, "train", s)}
    test = {e.prompt for s in range(3) for e in t.sample(1500, "test", s)}
    assert len(train) > 3000 and len(test) > 1000
    assert not train & test
    assert all(hash_split(p, 0.1) == "test" for p in test)
    share = len(test) / (len(test) + len(train))  # rough check that the split is not degenerate
    assert 0.02 < share < 0.5


def test_arithmetic_answers_are_the_true_results_including_negative_ones():
    exs = tasks.get("arithmetic").sample(2000, "train", 0)
    assert all(int(e.answer) == _solve(e.prompt) for e in exs)
    assert any(e.answer.startswith("-") for e in exs)
    assert {e.meta["op"] for e in exs} == {"+", "-", "*"}


def test_arithmetic_digit_knob_sets_operand_digit_counts():
    hard = tasks.get("arithmetic", min_digits=3, max_digits=3).sample(500, "train", 0)
    assert all(len(str(e.meta["a"])) == 3 and len(str(e.meta["b"])) == 3 for e in hard)
    assert all(e.meta["difficulty"] == 3 for e in hard)
    easy = tasks.get("arithmetic", min_digits=1, max_digits=1, ops="+").sample(500, "train", 0)
    assert all(re.fullmatch(r"\d\+\d=", e.prompt) for e in easy)
    mixed = tasks.get("arithmetic", min_digits=1, max_digits=3).sample(1000, "train", 0)
    assert {d for e in mixed for d in e.meta["digits"]} == {1, 2, 3}
    assert {e.meta["difficulty"] for e in mixed} == {1, 2, 3}


def test_arithmetic_rejects_bad_params_naming_them():
    for kw, name in [({"min_digits": 0}, "min_digits"), ({"max_digits": 10}, "max_digits"),
                     ({"min_digits": 3, "max_digits": 2}, "min_digits"), ({"ops": "+/"}, "ops"),
                     ({"test_fraction": 0}, "test_fraction")]:
        with pytest.raises(ValueError, match=name):
            tasks.get("arithmetic", **kw)


@pytest.mark.parametrize("completion,expected", [
    ("19", 1.0), ("19\n", 1.0), (" 19 ", 1.0), ("19\n12+7=20", 1.0), ("19<|endoftext|>junk", 1.0), ("+19", 1.0),
    ("18", 0.0), ("19 apples", 0.0), ("1 9", 0.0), ("19.0", 0.0), ("", 0.0), ("\n19", 0.0), ("9" * 5000, 0.0),
])
def test_arithmetic_reward_reads_the_first_line_as_an_integer(completion, expected):
    t = tasks.get("arithmetic")
    assert t.reward(completion, t.make(12, "+", 7)) == expected


def test_arithmetic_stops_generation_at_a_newline():
    assert tasks.get("arithmetic").stop == ("\n",)


# --- countdown ---------------------------------------------------------------------------------
def _cd(numbers, target, **kw):
    t = tasks.get("countdown", **kw)
    return t, t.make(numbers, target, "")


@pytest.mark.parametrize("completion", [
    "3*5+7", "7+3*5", "(7+3*5)", "5*3+7=22", " 3 * 5 + 7 \nlater text", "<answer>3*5+7</answer>", "think <answer>1</answer> <answer>7+5*3</answer>",
])
def test_countdown_accepts_valid_expressions_reaching_the_target(completion):
    t, ex = _cd([3, 5, 7], 22)
    assert t.reward(completion, ex) == 1.0


def test_countdown_uses_exact_fractions_not_floats():
    t, ex = _cd([1, 2, 10, 10, 10], 3)
    assert (0.1 + 0.2) * 10 != 3  # a float evaluator would get this wrong
    assert t.reward("(1/10+2/10)*10", ex) == 1.0


@pytest.mark.parametrize("completion", [
    "__import__('os')", "().__class__", "x", "abs(22)", "(3).real", "[22][0]", "2**99999", "3**2+13",
    "'22'", "22.0", "lambda: 22", "[i for i in (22,)]", "-3+25", "7//1+15", "22%23", "3*5+7;1", "0x16", "2_2",
    "(" * 500 + "3*5+7" + ")" * 500, "(" * 17 + "3*5+7" + ")" * 17, "+".join(["1"] * 60),
    "3*3+7+3", "22", "3*5+8-1", "3/(5-5)+22", "", "=22", "True",
])
def test_countdown_rejects_code_reuse_and_unknown_numbers_with_reward_zero(completion):
    t, ex = _cd([3, 5, 7], 22, format_reward=0.1)
    assert t.reward(completion, ex) == 0.0


def test_countdown_allows_a_number_as_often_as_it_is_given():
    t, ex = _cd([3, 3, 4], 13)
    assert t.reward("3*3+4", ex) == 1.0
    assert t.reward("3*3+3+4", ex) == 0.0


def test_countdown_format_reward_for_valid_wrong_expressions_only():
    t, ex = _cd([3, 5, 7], 22, format_reward=0.1)
    assert t.reward("3+5+7", ex) == 0.1
    assert t.reward("3+5+8", ex) == 0.0
    assert tasks.get("countdown").reward("3+5+7", ex) == 0.0  # default 0


def test_countdown_never_executes_the_completion(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w').write('x')",
        f"(lambda: open('{marker}', 'w'))()",
        f"22 if open('{marker}', 'w') else 0",
    ]

    def forbidden(*a, **k):
        raise AssertionError("model output reached eval/exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    t, ex = _cd([3, 5, 7], 22, format_reward=0.1)
    for p in payloads:
        assert t.reward(p, ex) == 0.0
        with pytest.raises(UnsafeExpression):
            parse_expression(p, max_chars=10_000)
    assert not marker.exists()


def test_countdown_parser_rejects_each_forbidden_construct_even_past_the_character_filter():
    for text, why in [("2**9", "Pow"), ("7//2", "FloorDiv"), ("-3", "UnaryOp"), ("3 % 2", "character"),
                      ("f(1)", "character"), ("01", "not a valid expression|plain decimal"),
                      ("+".join(["1"] * 40), "nodes"), ("(" * 17 + "1" + ")" * 17, "parentheses"),
                      ("1" + "*(1" * 17 + ")" * 17, "parentheses|deeper")]:
        with pytest.raises(UnsafeExpression, match=why):
            parse_expression(text)


def test_countdown_parser_is_fast_on_hostile_inputs():
    t, ex = _cd([3, 5, 7], 22)
    start = time.perf_counter()
    for text in ["9" * 10_000, "2**99999**99999", "(" * 100_000, "1+" * 50_000 + "1", "9" * 150 + "*" + "9" * 45]:
        assert t.reward(text, ex) == 0.0
    assert time.perf_counter() - start < 0.5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/() =\nabc_.'[]<>", max_size=80))
def test_countdown_reward_is_always_one_of_its_three_values_and_never_raises(text):
    t, ex = _cd([3, 5, 7], 22, format_reward=0.1)
    assert t.reward(text, ex) in (0.0, 0.1, 1.0)


def test_countdown_generator_is_deterministic_solvable_and_split_disjoint():
    t = tasks.get("countdown")
    a = t.sample(300, "train", 5)
    assert [e.prompt for e in a] == [e.prompt for e in t.sample(300, "train", 5)]
    assert [e.prompt for e in a] != [e.prompt for e in t.sample(300, "train", 6)]
    for e in a:
        assert 1 <= e.meta["target"] <= 100 and len(e.meta["numbers"]) == 3
        assert parse_expression(e.answer).value == e.meta["target"]
    train = {e.prompt for s in range(3) for e in t.sample(2000, "train", s)}
    test = {e.prompt for s in range(3) for e in t.sample(500, "test", s)}
    assert test and not train & test


def test_countdown_expression_is_read_before_the_first_equals_sign():
    assert expression_of("3*5+7=22\nmore") == "3*5+7"
    assert expression_of("22=3*5+7") == "22"


# --- extraction --------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    (r"so \boxed{\frac{3}{4}}", "3/4"),
    (r"\boxed{1} no wait \boxed{{2}+{3}}", "{2}+{3}"),
    (r"\boxed{12} and later \boxed{-5}", "-5"),
    (r"\boxed{ 1,234 }.", "1234"),
    (r"\boxed{x^{2}}", "x^{2}"),
    ("steps\n#### 1,234,567", "1234567"),
    ("#### -12", "-12"),
    ("#### 3.50", "3.50"),
    ("#### 7\nbut \\boxed{8}", "8"),
    ("it costs $18.", "18"),
    ("from 5 to -3.25 degrees", "-3.25"),
    ("about 0.5 or .75", ".75"),
    ("10-3", "3"),
    ("ratio 3/4 of them", "3/4"),
    ("1,234 people", "1234"),
    ("+7 points", "7"),
    ("no numbers here", None),
    ("", None),
    (r"\boxed{unclosed 5", "5"),
])
def test_extract_answer_handles_boxed_hash_and_final_number_conventions(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pred,ref,expected", [
    ("18", "18", True), ("18.0", "18", True), ("1,234", "1234", True), ("0.75", "3/4", True),
    ("-3", "-3", True), ("3", "-3", False), ("18.0000001", "18", True), ("18.001", "18", False),
    ("1e-10", "0", False), ("0.0000000001", "0", True), (None, "1", False), ("Paris", " Paris ", True),
    ("paris", "Paris", False), ("1/0", "1", False),
])
def test_answers_match_compares_numbers_with_documented_tolerance(pred, ref, expected):
    assert answers_match(pred, ref) is expected


def test_parse_number_is_exact():
    assert parse_number("0.1") + parse_number("0.2") == parse_number("3/10")


# --- gsm8k / jsonl -----------------------------------------------------------------------------
FIXTURE_ANSWERS = ["27", "14", "20", "280", "28", "24", "340", "14", "18", "20", "-7", "300000", "13", "2", "16", "3200"]


def test_gsm8k_fixture_loads_with_all_questions_and_final_answers():
    t = tasks.get("gsm8k")
    train, test = list(t.examples("train")), list(t.examples("test"))
    assert len(train) + len(test) == len(FIXTURE_ANSWERS) == len(t)
    assert train and test and not {e.prompt for e in train} & {e.prompt for e in test}
    by_line = sorted(train + test, key=lambda e: e.meta["line"])
    assert [e.answer for e in by_line] == FIXTURE_ANSWERS
    assert by_line[0].prompt.startswith("Question: Mia buys") and by_line[0].prompt.endswith("\nAnswer:")
    assert "<<3*12=36>>" in by_line[0].meta["solution"]


def test_gsm8k_every_fixture_solution_matches_its_own_final_answer():
    for line, rec in read_jsonl(GSM8K_FIXTURE):
        lines = rec["answer"].strip().split("\n")
        assert lines[-1].startswith("#### "), line
        for expr, val in re.findall(r"<<([^=]+)=([^>]+)>>", rec["answer"]):
            assert float(eval(expr)) == float(val), (line, expr)  # trusted fixture, not model output


def test_gsm8k_order_is_shuffled_by_seed_and_reproducible():
    t = tasks.get("gsm8k")
    a = [e.prompt for e in t.examples("train", 0)]
    assert a == [e.prompt for e in t.examples("train", 0)]
    assert a != [e.prompt for e in t.examples("train", 1)]
    assert sorted(a) == sorted(e.prompt for e in t.examples("train", 1))
    plain = tasks.get("gsm8k", shuffle=False)
    lines = [e.meta["line"] for e in plain.examples("train", 5)]
    assert lines == sorted(lines)


@pytest.mark.parametrize("completion,expected", [
    ("The answer is 27.", 1.0), ("... #### 27", 1.0), (r"\boxed{27}", 1.0), ("27.0", 1.0),
    ("#### 27\n\\boxed{26}", 0.0), ("26", 0.0), ("I don't know", 0.0),
])
def test_gsm8k_reward_matches_the_extracted_number(completion, expected):
    t = tasks.get("gsm8k")
    ex = next(e for split in ("train", "test") for e in t.examples(split) if e.meta["line"] == 1)
    assert ex.answer == "27"
    assert t.reward(completion, ex) == expected


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_gsm8k_directory_with_train_and_test_files_is_used_as_given(tmp_path):
    rec = lambda q, n: json.dumps({"question": q, "answer": f"work\n#### {n}"})
    _write(tmp_path / "train.jsonl", [rec("a?", 1), rec("b?", 2), rec("c?", 3)])
    _write(tmp_path / "test.jsonl", [rec("d?", 4)])
    t = tasks.get("gsm8k", path=str(tmp_path), template="{question}")
    assert sorted(e.prompt for e in t.examples("train")) == ["a?", "b?", "c?"]
    assert [e.answer for e in t.examples("test")] == ["4"]
    m = tasks.get("gsm8k", path={"train": str(tmp_path / "test.jsonl")})
    assert len(list(m.examples("train"))) == 1 and list(m.examples("test")) == []


def test_jsonl_bad_line_error_names_the_file_and_line(tmp_path):
    p = _write(tmp_path / "bad.jsonl", ['{"question": "q", "answer": "#### 1"}', "", '{"question": oops}'])
    with pytest.raises(ValueError, match=r"bad\.jsonl line 3: not valid JSON"):
        tasks.get("gsm8k", path=str(p))
    p = _write(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object"):
        tasks.get("gsm8k", path=str(p))


def test_jsonl_missing_field_or_marker_errors_name_them(tmp_path):
    p = _write(tmp_path / "f.jsonl", ['{"question": "q", "answer": "#### 1"}', '{"q": "x", "answer": "#### 2"}'])
    with pytest.raises(ValueError, match=r"f\.jsonl line 2: missing field 'question' \(has: q, answer\)"):
        tasks.get("gsm8k", path=str(p))
    p = _write(tmp_path / "g.jsonl", ['{"question": "q", "answer": "no marker"}'])
    with pytest.raises(ValueError, match=r"line 1: field 'answer' has no answer"):
        tasks.get("gsm8k", path=str(p))


def test_jsonl_missing_file_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        tasks.get("gsm8k", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="needs path"):
        tasks.get("jsonl")


def test_generic_jsonl_task_uses_configured_fields_template_and_extraction(tmp_path):
    p = _write(tmp_path / "d.jsonl", [json.dumps({"q": f"what is {i}+{i}?", "sol": f"it is \\boxed{{{2 * i}}}", "city": "Paris"})
                                      for i in range(40)])
    t = tasks.get("jsonl", path=str(p), prompt_field="q", answer_field="sol", answer_extraction="auto",
                  template="Q: {q}\nA:", test_fraction=0.25)
    exs = list(t.examples("train")) + list(t.examples("test"))
    assert len(exs) == 40 and 0 < len(list(t.examples("test"))) < 40
    ex = next(e for e in exs if e.prompt == "Q: what is 3+3?\nA:")
    assert ex.answer == "6" and t.reward("6", ex) == 1.0 and t.reward("7", ex) == 0.0
    words = tasks.get("jsonl", path=str(p), prompt_field="q", answer_field="city")
    ex = next(words.examples("train"))
    assert ex.answer == "Paris"
    assert words.reward("Paris\nbecause", ex) == 1.0 and words.reward(r"I say \boxed{Paris}", ex) == 1.0
    assert words.reward("London", ex) == 0.0


# --- scoring -----------------------------------------------------------------------------------
class _Flaky:
    """A task whose reward misbehaves on purpose, keyed by the completion text."""

    name = "flaky"

    def reward(self, completion, example):
        if completion == "sleep":
            time.sleep(0.5)
            return 1.0
        if completion == "sleep-swallowing":
            try:
                time.sleep(0.5)
            except Exception:  # a careless reward cannot swallow the timeout
                return 1.0
            return 1.0
        if completion == "raise":
            raise RuntimeError("boom")
        return {"nan": math.nan, "inf": math.inf, "big": 1.5, "neg": -0.1, "none": None, "str": "1"}.get(completion, 1.0)


def _exs(n):
    return [Example(stable_prompt_id("flaky", i), f"p{i}", "") for i in range(n)]


@pytest.mark.parametrize("use_signals", [True, False])
def test_score_counts_timeouts_and_exceptions_and_keeps_going(use_signals):
    comps = ["ok", "sleep", "ok", "raise", "sleep-swallowing", "ok"]
    exs = _exs(len(comps))
    start = time.perf_counter()
    res = score(_Flaky(), comps, exs, timeout_s=0.05, use_signals=use_signals)
    assert res.rewards == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert (res.timeouts, res.errors, res.failed) == (2, 1, 3)
    assert time.perf_counter() - start < 0.45  # the sleeps were cut short, not waited out
    assert f"prompt_id {exs[1].prompt_id}" in res.messages[0] and "timed out" in res.messages[0]
    assert "RuntimeError: boom" in res.messages[1]


def test_score_treats_non_finite_or_out_of_range_rewards_as_errors_naming_the_prompt():
    comps = ["nan", "inf", "big", "neg", "none", "str", "ok"]
    exs = _exs(len(comps))
    res = score(_Flaky(), comps, exs, max_messages=3)
    assert res.rewards == [0.0] * 6 + [1.0]
    assert (res.errors, res.timeouts) == (6, 0)
    assert len(res.messages) == 3
    assert all(f"prompt_id {e.prompt_id}" in m for e, m in zip(exs, res.messages))


def test_score_from_a_worker_thread_uses_threads_and_still_times_out():
    out = {}
    t = threading.Thread(target=lambda: out.update(r=score(_Flaky(), ["sleep", "ok"], _exs(2), timeout_s=0.05)))
    t.start()
    t.join(5)
    assert out["r"].rewards == [0.0, 1.0] and out["r"].timeouts == 1


def test_score_restores_the_previous_alarm_handler_and_leaves_no_timer_running():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGALRM, mine)
    try:
        score(_Flaky(), ["sleep", "ok"], _exs(2), timeout_s=0.05)
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, old)


def test_score_rejects_caller_mistakes():
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        score(_Flaky(), ["a", "b"], _exs(1))
    with pytest.raises(ValueError, match="timeout_s"):
        score(_Flaky(), ["a"], _exs(1), timeout_s=0)


def test_score_on_a_real_task_gives_the_task_rewards():
    t = tasks.get("arithmetic")
    exs = t.sample(50, "test", 0)
    res = score(t, [e.answer for e in exs[:25]] + ["x"] * 25, exs)
    assert res.rewards == [1.0] * 25 + [0.0] * 25 and res.failed == 0
