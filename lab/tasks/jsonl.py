"""JSONL-backed tasks: ``gsm8k`` (GSM8K format) and the generic ``jsonl``.

A JSONL file holds one JSON object per line; blank lines are skipped. Everything is
checked when the task is made, before anything is written (:class:`~lab.errors.TaskDataError`,
a ``ValueError``, naming the file, the 1-based line and the field; a missing file is
:class:`~lab.errors.TaskFileNotFound`, a ``FileNotFoundError``):

* a line that is not valid UTF-8 or JSON, holds ``NaN``/``Infinity`` (Python's reader would
  accept them; JSON does not), repeats a key, nests too deeply, or is not an object;
* a used field (the template's fields and ``answer_field``) that is missing, ``null``, a
  boolean, a list or an object (only strings and finite numbers are text), or whose text is
  empty or only whitespace (an empty reference would let an empty completion score 1);
* a reference that extraction cannot find, a prompt that renders blank;
* the same prompt twice with different answers (both lines named; one prompt_id cannot
  have two answers). A record repeating an earlier one's prompt *and* answer in the same
  split is skipped (``task.duplicates`` lists them);
* no training examples at all (an empty file, blank lines only, every record in the test
  split, a mapping or folder without a train file);
* a ``template`` with positional (``{}``), attribute or index fields, nested or oversized
  format specs (a width or precision above :data:`MAX_FORMAT_NUMBER`), or a spec that does
  not format a string.

**Splits** (``path`` param):

* a **file**: every record is in exactly one split, ``"test"`` iff
  ``hash_fraction(prompt) < test_fraction``, so a question never lands in both;
* a **directory**: ``train.jsonl`` and ``test.jsonl`` inside it, as given (the layout of
  the real GSM8K release, ``grade-school-math/data``);
* a **mapping** ``{"train": path, "test": path}``: each file as given (a split left out is empty).

``examples(split, seed)`` yields that split's records once, shuffled by ``seed``
(``shuffle=False`` keeps file order): a finite stream that the trainer cycles.

**Prompts** come from ``template``, a ``str.format`` string over the record's fields
(``"Question: {question}\\nAnswer:"`` for gsm8k). Use ``{{``/``}}`` for literal braces.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from pathlib import Path
from typing import Any, Iterator, Mapping

from lab.errors import TaskDataError, TaskFileNotFound, reason
from lab.paths import resource_path
from lab.tasks.base import SPLITS, TASKS, Example, TaskBase, check_split, hash_split, stable_prompt_id
from lab.tasks.extract import answers_match, extract_answer, extract_boxed, extract_hash, normalize_number, parse_number

DATA_DIR = resource_path("data/tasks")  # the checkout, or lab/_data in an installed wheel
GSM8K_FIXTURE = DATA_DIR / "gsm8k_fixture.jsonl"
GSM8K_TEMPLATE = "Question: {question}\nAnswer:"
EXTRACTIONS = ("none", "gsm8k", "auto")
MAX_FORMAT_NUMBER = 1000
"""Largest width or precision a template's format spec may ask for (``{question:>80}`` is fine)."""


class _Constant:
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON line: kept as a marker so that the field
    holding it can be named (JSON has no such values; Python's reader accepts them)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line_number, record)`` for every non-blank line of a JSONL file (1-based lines).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.jsonl")
    >>> _ = open(p, "w").write('{"q": 1}\\n\\n{"q": 2}\\n')
    >>> read_jsonl(p)
    [(1, {'q': 1}), (3, {'q': 2})]
    >>> _ = open(p, "w").write('{"q": 1}\\n{"q": \\n')
    >>> read_jsonl(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lab.errors.TaskDataError: ...x.jsonl line 2: not valid JSON (Expecting value at column 7)
    >>> _ = open(p, "wb").write(b'{"q": 1}\\n{"q": "\\xff"}\\n')
    >>> read_jsonl(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lab.errors.TaskDataError: ...x.jsonl line 2: not valid UTF-8 (byte 8); re-save the file as UTF-8
    """
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`read_jsonl` one line at a time, so problems are met in line order."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a .jsonl file" if p.is_dir() else "not found" if not p.exists() else "is not a regular file"
        raise TaskFileNotFound(f"task file {p} {what} (pass path=... to the task)")
    with p.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(f"{p} line {i}: not valid UTF-8 (byte {e.start + 1}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line.rstrip("\r\n"), parse_constant=_Constant, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{p} line {i}: not valid JSON ({e.msg} at column {e.colno})") from None
            except _DuplicateKey as e:
                raise TaskDataError(f"{p} line {i}: key {e.args[0]!r} appears twice in one object; keep one") from None
            except RecursionError:
                key = _deep_key(line)
                what = f"field {key!r} is" if key is not None else "the JSON is"
                raise TaskDataError(f"{p} line {i}: {what} nested too deeply to read") from None
            except ValueError as e:  # e.g. an integer with more digits than Python converts
                raise TaskDataError(f"{p} line {i}: not valid JSON ({reason(e, 100)})") from None
            if not isinstance(rec, dict):
                raise TaskDataError(f"{p} line {i}: expected a JSON object, got {_json_type(rec)}")
            yield i, rec


def _deep_key(text: str, limit: int = 200) -> str | None:
    """The top-level key whose value nests deeper than ``limit`` in one JSON object's text
    (a linear scan, for the error message when ``json`` runs out of recursion), or None.

    >>> _deep_key('{"a": 1, "b": ' + "[" * 300 + "]" * 300 + "}")
    'b'
    """
    depth, in_str, esc, key, last, cur = 0, False, False, None, None, []
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str, last = False, "".join(cur)
            elif depth == 1:
                cur.append(ch)
            continue
        if ch == '"':
            in_str, cur = True, []
        elif ch == ":" and depth == 1:
            key = last
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return key
        elif ch in "]}":
            depth -= 1
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, _Constant):
        return f"{value.name} (not a JSON value)"
    names = {type(None): "null", bool: "a boolean", list: "a list", dict: "an object", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def field_text(value: Any) -> str | None:
    """The text of a record field, or None if it has none: strings as they are, finite
    numbers as JSON writes them; ``null``, booleans, lists, objects, NaN/Infinity have none.

    >>> field_text("Paris"), field_text(42), field_text(2.5), field_text(None), field_text([1]), field_text(True)
    ('Paris', '42', '2.5', None, None, None)
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return json.dumps(value)


def check_template(template: Any) -> list[str]:
    """The field names of a ``str.format`` template, after checking it renders within bounds.

    Raises :class:`~lab.errors.TaskDataError` (``template: ...``) for a template that is not a
    string, has a positional (``{}``, ``{0}``), attribute (``{a.b}``) or index (``{a[0]}``)
    field, a nested spec (``{a:{w}}``), a width or precision above :data:`MAX_FORMAT_NUMBER`,
    or a spec a string cannot take (``{a:d}``).

    >>> check_template("Question: {question}\\nAnswer: {{literal}} {question:>10}")
    ['question', 'question']
    >>> check_template("{q:>999999999}")
    Traceback (most recent call last):
    ...
    lab.errors.TaskDataError: template: field {q:>999999999} asks for a width or precision of 999999999, more than 1000
    """
    if not isinstance(template, str):
        raise TaskDataError(f"template: must be a string, got {_json_type(template)}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TaskDataError(f"template: {e} (use {{{{ and }}}} for literal braces)") from None
    fields = []
    for _, name, spec, conv in parts:
        if name is None:
            continue
        shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        if name == "" or name.isdigit():
            raise TaskDataError(f"template: positional field {shown}; name a record field, e.g. {{question}}")
        if any(c in name for c in ".["):
            raise TaskDataError(f"template: field {shown} reads an attribute or index; use the plain field name")
        if spec and "{" in spec:
            raise TaskDataError(f"template: field {shown} has a nested format spec; write the spec out")
        big = max((int(n) for n in re.findall(r"\d+", spec or "")), default=0)
        if big > MAX_FORMAT_NUMBER:
            raise TaskDataError(f"template: field {shown} asks for a width or precision of {big}, more than {MAX_FORMAT_NUMBER}")
        fields.append(name)
    try:
        template.format_map({f: "" for f in fields})
    except (ValueError, IndexError, KeyError, TypeError) as e:
        raise TaskDataError(f"template: {template!r} does not format text fields ({e})") from None
    return fields


def gsm8k_final_answer(answer: str) -> str | None:
    """The normalised number after GSM8K's final ``#### `` marker, or None.

    >>> gsm8k_final_answer("She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 1,007")
    '1007'
    >>> gsm8k_final_answer("no marker") is None
    True
    """
    found = extract_hash(answer)
    if found is None:
        return None
    return normalize_number(found) or found or None


def template_fields(template: str) -> list[str]:
    """The field names a ``str.format`` template refers to (each once, in order; checked by
    :func:`check_template`).

    >>> template_fields("Question: {question}\\nAnswer: {{literal}} {question}")
    ['question']
    """
    return list(dict.fromkeys(check_template(template)))


class JsonlTask(TaskBase):
    """Records from JSONL files; see the module docstring and :func:`JsonlTask.reward`.

    Args:
        path: a ``.jsonl`` file (hash split), a directory with ``train.jsonl``/``test.jsonl``,
            or a ``{"train": ..., "test": ...}`` mapping.
        prompt_field: record field holding the prompt (used when ``template`` is None).
        answer_field: record field holding the reference answer.
        template: ``str.format`` template over the record's fields; None = the prompt field as is.
        answer_extraction: how to read the reference from the answer field: ``"none"`` (the
            value, stripped), ``"gsm8k"`` (the number after the final ``####``) or ``"auto"``
            (:func:`~lab.tasks.extract.extract_answer`: boxed, ####, else last number).
        test_fraction: share of a single file's records put in the test split, in [0, 1]
            (some records must stay in train).
        shuffle: shuffle each split's records by ``seed`` (else file order).
    """

    name = "jsonl"
    stop: tuple[str, ...] = ()

    def __init__(
        self,
        path: str | Mapping[str, str] | None = None,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        template: str | None = None,
        answer_extraction: str = "none",
        test_fraction: float = 0.2,
        shuffle: bool = True,
    ):
        if path is None or path == "":
            raise TaskDataError(f"task {self.name!r} needs path=... (a .jsonl file, a directory, or a split->file mapping)")
        if not isinstance(path, (str, os.PathLike, Mapping)):
            raise TaskDataError(f"path: must be a file or folder path or a split->file mapping, got {_json_type(path)}")
        for pname, value in (("prompt_field", prompt_field), ("answer_field", answer_field)):
            if not isinstance(value, str) or not value or any(c in value for c in "{}.[]:!"):
                raise TaskDataError(f"{pname}: must be a plain field name (a non-empty string without {{}}.[]:!), got {value!r}")
        if answer_extraction not in EXTRACTIONS:
            raise TaskDataError(f"answer_extraction: must be one of {', '.join(EXTRACTIONS)}, got {answer_extraction!r}")
        if isinstance(test_fraction, bool) or not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction <= 1.0):
            raise TaskDataError(f"test_fraction: must be a number in [0, 1], got {test_fraction!r}")
        if not isinstance(shuffle, bool):
            raise TaskDataError(f"shuffle: must be true or false, got {shuffle!r}")
        self.template = template if template is not None else "{" + prompt_field + "}"
        self._fields = template_fields(self.template)
        self.prompt_field, self.answer_field = prompt_field, answer_field
        self.answer_extraction, self.test_fraction, self.shuffle = answer_extraction, float(test_fraction), bool(shuffle)
        self.params = {
            "path": {k: str(v) for k, v in path.items()} if isinstance(path, Mapping) else str(path), "prompt_field": prompt_field,
            "answer_field": answer_field, "template": template, "answer_extraction": answer_extraction,
            "test_fraction": self.test_fraction, "shuffle": self.shuffle,
        }
        self.duplicates: list[str] = []
        """``"file line N"`` of each record skipped as a repeat of an earlier prompt and answer."""
        self._splits = self._load(path)

    # -- loading --------------------------------------------------------------------------------
    def _files(self, path: str | Mapping[str, str]) -> dict[str, Path] | Path:
        if isinstance(path, Mapping):
            unknown = set(path) - set(SPLITS)
            if unknown:
                raise TaskDataError(f"path: mapping has unknown split(s) {sorted(map(str, unknown))}; use {', '.join(SPLITS)}")
            bad = [s for s, p in path.items() if not isinstance(p, (str, os.PathLike)) or p == ""]
            if bad:
                raise TaskDataError(f"path: the {bad[0]!r} entry must be a file path, got {path[bad[0]]!r}")
            if "train" not in path:
                raise TaskDataError("path: the mapping has no 'train' file; a task needs training examples")
            return {s: Path(p) for s, p in path.items()}
        p = Path(path)
        if p.is_dir():
            files = {s: p / f"{s}.jsonl" for s in SPLITS}
            if not files["train"].is_file():
                raise TaskFileNotFound(f"directory {p} has no train.jsonl; a task needs training examples")
            return {s: f for s, f in files.items() if f.is_file()}
        return p

    def _load(self, path) -> dict[str, list[Example]]:
        files = self._files(path)
        out: dict[str, list[Example]] = {s: [] for s in SPLITS}
        seen: dict[str, tuple[str, str, str]] = {}  # prompt -> (answer, split, "file line N")
        pairs = [(None, files)] if isinstance(files, Path) else list(files.items())
        for given_split, f in pairs:
            records = 0
            for ex in self._examples_of(f):  # a generator: problems are met in line order
                records += 1
                split = given_split or hash_split(ex.prompt, self.test_fraction)
                where = f"{f} line {ex.meta['line']}"
                if ex.prompt in seen:
                    answer, first_split, first = seen[ex.prompt]
                    if not answers_match(ex.answer, answer):
                        raise TaskDataError(f"{where}: field {self.answer_field!r}: the prompt of {first} again with another "
                                            f"answer ({ex.answer!r}, there {answer!r}); one prompt needs one answer: fix or drop one")
                    if split == first_split:
                        self.duplicates.append(where)
                        continue
                else:
                    seen[ex.prompt] = (ex.answer, split, where)
                out[split].append(ex)
            if isinstance(files, Path) and not out["train"]:
                if not records:
                    raise TaskDataError(f"{f}: no records (the file is empty or holds only blank lines); a task needs training examples")
                raise TaskDataError(f"{f}: no training examples: all {records} records fall in the test split with "
                                    f"test_fraction={self.test_fraction:g}; lower test_fraction")
            if given_split == "train" and not out["train"]:
                raise TaskDataError(f"{f}: no records (the file is empty or holds only blank lines); a task needs training examples")
        return out

    def _text(self, path: Path, line: int, rec: dict, f: str) -> str:
        if f not in rec:
            raise TaskDataError(f"{path} line {line}: missing field {f!r} (has: {', '.join(rec) or 'none'})")
        text = field_text(rec[f])
        if text is None:
            raise TaskDataError(f"{path} line {line}: field {f!r} is {_json_type(rec[f])}; it must be a string or a finite number")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TaskDataError(f"{path} line {line}: field {f!r} holds an unpaired surrogate ({text[e.start]!r}); "
                                "not valid Unicode text") from None
        return text

    def _examples_of(self, path: Path) -> Iterator[Example]:
        for line, rec in iter_jsonl(path):
            values = {f: self._text(path, line, rec, f) for f in dict.fromkeys([*self._fields, self.answer_field])}
            raw = values[self.answer_field]
            if not raw.strip():
                raise TaskDataError(f"{path} line {line}: field {self.answer_field!r} is empty; every record needs a reference answer")
            prompt = self.template.format_map({f: values[f] for f in self._fields})
            if not prompt.strip():
                raise TaskDataError(f"{path} line {line}: field {', '.join(map(repr, self._fields)) or 'template'}: the prompt is empty")
            answer = self.reference(raw)
            if answer is None or not answer.strip():
                raise TaskDataError(f"{path} line {line}: field {self.answer_field!r} has no answer ({self.answer_extraction} extraction)")
            meta = {"file": path.name, "line": line, "solution": raw}
            yield Example(stable_prompt_id(self.name, prompt), prompt, answer, meta)

    def reference(self, raw: str) -> str | None:
        """The reference answer read from the answer field's text (see ``answer_extraction``)."""
        if self.answer_extraction == "gsm8k":
            return gsm8k_final_answer(raw)
        if self.answer_extraction == "auto":
            return extract_answer(raw)
        return raw.strip()

    # -- task interface -------------------------------------------------------------------------
    def examples(self, split: str = "train", seed: int = 0) -> Iterator[Example]:
        """That split's examples once each, shuffled by ``seed`` unless ``shuffle=False``."""
        exs = list(self._splits[check_split(split)])
        if self.shuffle:
            random.Random(f"{self.name}:{split}:{seed}").shuffle(exs)
        return iter(exs)

    def __len__(self) -> int:
        return sum(len(v) for v in self._splits.values())

    def reward(self, completion: str, example: Example) -> float:
        """1.0 if the completion's answer matches ``example.answer``, else 0.0.

        A numeric reference is compared with the number :func:`extract_answer` finds in the
        completion (boxed, ``####``, else last number; tolerance as in ``answers_match``).
        Any other reference is compared with the completion's last ``\\boxed{}`` or, failing
        that, its first line (stripped, whitespace collapsed, case-sensitive).
        """
        if parse_number(example.answer) is not None:
            return 1.0 if answers_match(extract_answer(completion), example.answer) else 0.0
        pred = extract_boxed(completion)
        if pred is None:
            pred = completion.split("\n", 1)[0].split("<|endoftext|>", 1)[0]
        return 1.0 if answers_match(pred, example.answer) else 0.0


TASKS.register("jsonl", JsonlTask)


@TASKS.register("gsm8k")
class Gsm8k(JsonlTask):
    """GSM8K-format JSONL (``question``; ``answer`` ending in ``#### N``).

    Args:
        path: file, directory (``train.jsonl``/``test.jsonl``) or split mapping; default: the
            shipped hand-made fixture ``data/tasks/gsm8k_fixture.jsonl``.
        template: ``str.format`` template over the record, default ``"Question: {question}\\nAnswer:"``.
        test_fraction: share of a single file's questions in the test split.
        shuffle: shuffle by seed (else file order).

    >>> task = Gsm8k()
    >>> len(task) >= 10
    True
    >>> ex = next(task.examples("train", seed=0))
    >>> ex.prompt.startswith("Question: "), task.reward("... so #### " + ex.answer, ex), task.reward("no idea", ex)
    (True, 1.0, 0.0)
    """

    name = "gsm8k"

    def __init__(
        self,
        path: str | Mapping[str, str] | None = None,
        template: str = GSM8K_TEMPLATE,
        test_fraction: float = 0.2,
        shuffle: bool = True,
    ):
        super().__init__(
            path=GSM8K_FIXTURE if path is None else path,
            prompt_field="question",
            answer_field="answer",
            template=template,
            answer_extraction="gsm8k",
            test_fraction=test_fraction,
            shuffle=shuffle,
        )
        self.params = {"path": self.params["path"], "template": template, "test_fraction": self.test_fraction, "shuffle": self.shuffle}
