"""``arithmetic``: integer addition, subtraction and multiplication, generated from a seed.

Prompt and answer are compact so that a tiny character-level model can learn them::

    prompt  "12+7="     answer "19"
    prompt  "3-45="     answer "-42"    (negative results are allowed)
    prompt  "23*4="     answer "92"

The model writes the answer, then a newline or end-of-text. **Reward rule**: the
completion is read up to its first newline (or a literal ``<|endoftext|>``), surrounding
spaces are stripped, and the rest must be an integer (``[+-]?digits``, at most 40 chars)
equal to the true result: 1.0 if so, else 0.0. So ``"19"``, ``" 19 "``, ``"19\\nanything"``
score 1; ``"19 apples"``, ``"1 9"``, ``"19.0"``, ``""`` score 0.

**Difficulty**: each operand independently gets a digit count drawn uniformly from
``[min_digits, max_digits]`` (a 1-digit operand is 0-9, a d-digit one 10^(d-1) .. 10^d - 1)
and the operator uniformly from ``ops``. The default mix (1-2 digits, ``+-*``) holds easy
prompts (``3+4=``) next to hard ones (``87*56=``), so a tiny model's per-prompt success
probabilities spread across (0, 1). ``meta`` records ``op``, ``digits`` ([da, db]),
``difficulty`` (max of the two digit counts) and the operands.

**Splits**: a problem is in "test" iff ``hash_fraction(prompt) < test_fraction``, so a
problem is never in both splits whatever the seed. ``examples(split, seed)`` is an infinite
deterministic stream (a problem may repeat); ``dataset(split, n, seed)`` gives n distinct ones.
"""

from __future__ import annotations

import random
import re
from typing import Iterator

from lab.tasks.base import TASKS, Example, TaskBase, check_split, hash_split, stable_prompt_id

OPS = "+-*"
MAX_DIGITS = 9
_INT = re.compile(r"[+-]?\d{1,39}")
_END = "<|endoftext|>"


def first_line(completion: str) -> str:
    """The completion up to its first newline or literal ``<|endoftext|>``, stripped.

    >>> first_line(" 19\\n7+7=14")
    '19'
    >>> first_line("-3<|endoftext|>junk")
    '-3'
    """
    return completion.split("\n", 1)[0].split(_END, 1)[0].strip()


def operand(rng: random.Random, digits: int) -> int:
    """A uniformly random integer with exactly ``digits`` digits (0-9 for one digit).

    >>> rng = random.Random(0)
    >>> all(10 <= operand(rng, 2) <= 99 for _ in range(100))
    True
    """
    if digits == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def solve(a: int, op: str, b: int) -> int:
    """The exact result of ``a op b``.

    >>> solve(3, "-", 45), solve(23, "*", 4)
    (-42, 92)
    """
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}; use some of {OPS!r}")


@TASKS.register("arithmetic")
class Arithmetic(TaskBase):
    """n-digit ``+ - *`` problems, ``"12+7="`` -> ``"19"``; see the module docstring.

    Args:
        min_digits: fewest digits of an operand (>= 1).
        max_digits: most digits of an operand (<= 9); each operand's count is uniform in between.
        ops: operators to draw from, any non-empty subset of ``"+-*"``.
        test_fraction: share of all problems that belong to the test split, in (0, 1).

    >>> task = Arithmetic(min_digits=1, max_digits=2)
    >>> ex = task.sample(1, "train", seed=0)[0]
    >>> ex.prompt.endswith("="), task.reward(ex.answer + "\\n", ex), task.reward("x", ex)
    (True, 1.0, 0.0)
    >>> ex == task.sample(1, "train", seed=0)[0]
    True
    """

    name = "arithmetic"
    stop = ("\n",)

    def __init__(self, min_digits: int = 1, max_digits: int = 2, ops: str = OPS, test_fraction: float = 0.1):
        for k, v in (("min_digits", min_digits), ("max_digits", max_digits)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_DIGITS:
                raise ValueError(f"{k} must be an int in [1, {MAX_DIGITS}], got {v!r}")
        if min_digits > max_digits:
            raise ValueError(f"min_digits ({min_digits}) must be <= max_digits ({max_digits})")
        if not isinstance(ops, str) or not ops or set(ops) - set(OPS) or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be a non-empty string of distinct operators from {OPS!r}, got {ops!r}")
        if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        self.min_digits, self.max_digits, self.ops, self.test_fraction = min_digits, max_digits, ops, float(test_fraction)
        self.params = {"min_digits": min_digits, "max_digits": max_digits, "ops": ops, "test_fraction": self.test_fraction}

    def make(self, a: int, op: str, b: int) -> Example:
        """The example for ``a op b`` (whichever split it belongs to).

        >>> ex = Arithmetic().make(12, "+", 7)
        >>> ex.prompt, ex.answer, ex.meta["digits"], ex.meta["difficulty"]
        ('12+7=', '19', [2, 1], 2)
        >>> Arithmetic().make(3, "-", 45).answer
        '-42'
        """
        prompt = f"{a}{op}{b}="
        da, db = len(str(a)), len(str(b))
        meta = {"op": op, "a": a, "b": b, "digits": [da, db], "difficulty": max(da, db)}
        return Example(stable_prompt_id(self.name, prompt), prompt, str(solve(a, op, b)), meta)

    def split_of(self, prompt: str) -> str:
        """``"train"`` or ``"test"``, decided by a hash of the problem text alone."""
        return hash_split(prompt, self.test_fraction)

    def examples(self, split: str = "train", seed: int = 0) -> Iterator[Example]:
        """An infinite stream of problems of ``split``, the same for the same ``seed``.

        Raises ``ValueError`` if 100,000 draws in a row find no problem of this split
        (only possible for a tiny problem space with an extreme ``test_fraction``).
        """
        check_split(split)
        rng = random.Random(f"{self.name}:{split}:{seed}")
        misses = 0
        while True:
            op = rng.choice(self.ops)
            a = operand(rng, rng.randint(self.min_digits, self.max_digits))
            b = operand(rng, rng.randint(self.min_digits, self.max_digits))
            prompt = f"{a}{op}{b}="
            if self.split_of(prompt) != split:
                misses += 1
                if misses >= 100_000:
                    raise ValueError(f"no {split!r} problems found for {self!r}; change test_fraction or the digits")
                continue
            misses = 0
            yield self.make(a, op, b)

    def reward(self, completion: str, example: Example) -> float:
        """1.0 if the first line of ``completion`` is the integer ``example.answer``, else 0.0.

        >>> ex = Arithmetic().make(3, "-", 45)
        >>> [Arithmetic().reward(c, ex) for c in ["-42", " -42\\n9", "-42 ", "-42.0", "42", "-4 2", ""]]
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        """
        line = first_line(completion)
        if not _INT.fullmatch(line):
            return 0.0
        return 1.0 if int(line) == int(example.answer) else 0.0
