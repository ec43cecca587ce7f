"""JSONL-backed tasks: ``gsm8k`` (GSM8K format) and the generic ``jsonl``.

A JSONL file holds one JSON object per line; blank lines are skipped. Errors name the
file and the 1-based line: a missing file (``FileNotFoundError``), a line that is not
valid JSON or not an object, a record without a needed field (``ValueError``).

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
import random
import string
from pathlib import Path
from typing import Any, Iterator, Mapping

from lab.tasks.base import SPLITS, TASKS, Example, TaskBase, check_split, hash_split, stable_prompt_id
from lab.tasks.extract import answers_match, extract_answer, extract_boxed, extract_hash, normalize_number, parse_number

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "tasks"
GSM8K_FIXTURE = DATA_DIR / "gsm8k_fixture.jsonl"
GSM8K_TEMPLATE = "Question: {question}\nAnswer:"
EXTRACTIONS = ("none", "gsm8k", "auto")


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
    ValueError: ...x.jsonl line 2: not valid JSON (Expecting value at column 7)
    >>> _ = open(p, "wb").write(b'{"q": 1}\\n{"q": "\\xff"}\\n')
    >>> read_jsonl(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...x.jsonl line 2: not valid UTF-8 (byte 8); re-save the file as UTF-8
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"task file not found: {p} (pass path=... to the task)")
    out = []
    with p.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{p} line {i}: not valid UTF-8 (byte {e.start + 1}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p} line {i}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{p} line {i}: expected a JSON object, got {type(rec).__name__}")
            out.append((i, rec))
    return out


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
    """The field names a ``str.format`` template refers to.

    >>> template_fields("Question: {question}\\nAnswer: {{literal}}")
    ['question']
    """
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


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
        test_fraction: share of a single file's records put in the test split, in [0, 1].
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
            raise ValueError(f"task {self.name!r} needs path=... (a .jsonl file, a directory, or a split->file mapping)")
        if answer_extraction not in EXTRACTIONS:
            raise ValueError(f"answer_extraction must be one of {', '.join(EXTRACTIONS)}, got {answer_extraction!r}")
        if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction <= 1.0):
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction!r}")
        self.template = template if template is not None else "{" + prompt_field + "}"
        try:
            self.template.format_map({f: "" for f in template_fields(self.template)})
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(f"bad template {self.template!r}: {e}") from None
        self.prompt_field, self.answer_field = prompt_field, answer_field
        self.answer_extraction, self.test_fraction, self.shuffle = answer_extraction, float(test_fraction), bool(shuffle)
        self.params = {
            "path": dict(path) if isinstance(path, Mapping) else str(path), "prompt_field": prompt_field,
            "answer_field": answer_field, "template": template, "answer_extraction": answer_extraction,
            "test_fraction": self.test_fraction, "shuffle": self.shuffle,
        }
        self._splits = self._load(path)

    # -- loading --------------------------------------------------------------------------------
    def _files(self, path: str | Mapping[str, str]) -> dict[str, Path] | Path:
        if isinstance(path, Mapping):
            unknown = set(path) - set(SPLITS)
            if unknown:
                raise ValueError(f"path mapping has unknown split(s) {sorted(unknown)}; use {', '.join(SPLITS)}")
            return {s: Path(p) for s, p in path.items()}
        p = Path(path)
        if p.is_dir():
            files = {s: p / f"{s}.jsonl" for s in SPLITS}
            if not any(f.is_file() for f in files.values()):
                raise FileNotFoundError(f"directory {p} has neither train.jsonl nor test.jsonl")
            return {s: f for s, f in files.items() if f.is_file()}
        return p

    def _load(self, path) -> dict[str, list[Example]]:
        files = self._files(path)
        out: dict[str, list[Example]] = {s: [] for s in SPLITS}
        if isinstance(files, Path):
            for ex in self._examples_of(files):
                out[hash_split(ex.prompt, self.test_fraction)].append(ex)
        else:
            for split, f in files.items():
                out[split] = self._examples_of(f)
        return out

    def _examples_of(self, path: Path) -> list[Example]:
        fields = template_fields(self.template)
        exs = []
        for line, rec in read_jsonl(path):
            for f in dict.fromkeys([*fields, self.answer_field]):
                if f not in rec:
                    raise ValueError(f"{path} line {line}: missing field {f!r} (has: {', '.join(rec) or 'none'})")
            prompt = self.template.format_map({f: _as_text(rec[f]) for f in fields})
            raw = _as_text(rec[self.answer_field])
            answer = self.reference(raw)
            if answer is None:
                raise ValueError(f"{path} line {line}: field {self.answer_field!r} has no answer ({self.answer_extraction} extraction)")
            meta = {"file": path.name, "line": line, "solution": raw}
            exs.append(Example(stable_prompt_id(self.name, prompt), prompt, answer, meta))
        return exs

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
