"""``countdown``: combine the given numbers with ``+ - * /`` to reach a target.

Prompt and answer::

    prompt  "3,5,7>22:"       (the numbers, ">", the target, ":")
    answer  "3*5+7"           (one reference solution; any valid one scores 1)

**Reward rule** (:meth:`Countdown.reward`): the expression is taken from the completion by
:func:`expression_of` (the last ``<answer>...</answer>`` if present, else the first line;
then the part before the first ``=``, so ``"3*5+7=22"`` reads as ``"3*5+7"``). It scores
1.0 if it is a valid expression that uses each given number at most once (a number given
twice may be used twice), uses no other number, and equals the target exactly; else
``format_reward`` (default 0) if it is a valid expression over the given numbers with the
wrong value; else 0.

**Safety**: the completion is never passed to ``eval``/``exec``/``compile``.
:func:`parse_expression` checks the text against an allowed alphabet (digits, spaces,
``+ - * / ( )``), bounds its length (``MAX_CHARS``), parses it with
``ast.parse(mode="eval")`` and walks the tree accepting only ``BinOp`` with ``Add``,
``Sub``, ``Mult``, ``Div`` over non-negative ``int`` constants written in plain decimal
(no unary minus, no ``**``, ``//``, ``%``, names, calls, attributes, subscripts,
strings, floats), with at most ``MAX_NODES`` nodes and ``MAX_DEPTH`` nesting. Values
are computed with exact ``fractions.Fraction`` arithmetic; division by zero makes the
expression invalid (reward 0).

**Generation**: ``n_numbers`` numbers uniform in ``[1, max_number]`` (with repeats), combined
in a random order by random operators (``ops``) keeping every intermediate a non-negative
integer (divisions only when exact); the target must be in ``[1, max_target]``. Splits by a
hash of the prompt (``test_fraction``), as in ``arithmetic``.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

from lab.tasks.base import TASKS, Example, TaskBase, check_split, hash_split, stable_prompt_id

MAX_CHARS = 200
MAX_NODES = 64
MAX_DEPTH = 16
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/() \t]*")
_OPEN, _CLOSE = "<answer>", "</answer>"
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class UnsafeExpression(ValueError):
    """The text is not an allowed countdown expression; the message says why."""


@dataclass(frozen=True)
class Parsed:
    """A checked expression: its exact ``value`` and the integer literals it uses, in order."""

    value: Fraction
    numbers: tuple[int, ...]


def expression_of(completion: str) -> str:
    """The expression part of a completion (see the module docstring).

    >>> expression_of("3*5+7\\nbecause...")
    '3*5+7'
    >>> expression_of("Thinking. <answer> (3+5)*7 = 56 </answer>")
    '(3+5)*7'
    """
    tag = last_answer_tag(completion)
    text = tag if tag is not None else completion.split("\n", 1)[0]
    text = text.split("<|endoftext|>", 1)[0]
    return text.split("=", 1)[0].strip()


def last_answer_tag(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>`` (pairs taken left to right, as a lazy
    regex would), or None. Linear in ``len(text)``: the regex ``<answer>(.*?)</answer>`` rescans
    the rest of the text for every unclosed ``<answer>``, which is quadratic.

    >>> last_answer_tag("<answer>1</answer> <answer><answer>2</answer> <answer>3")
    '<answer>2'
    >>> last_answer_tag("<answer>open") is None
    True
    """
    found, pos = None, 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            return found
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            return found
        found, pos = text[start + len(_OPEN):end], end + len(_CLOSE)


def parse_expression(text: str, *, max_chars: int = MAX_CHARS, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Parsed:
    """Check ``text`` against the whitelist and compute its exact value; never executes it.

    Raises :class:`UnsafeExpression` naming the first problem found.

    >>> parse_expression("(3+5)*7/2")
    Parsed(value=Fraction(28, 1), numbers=(3, 5, 7, 2))
    >>> parse_expression("__import__('os')")
    Traceback (most recent call last):
    ...
    lab.tasks.countdown.UnsafeExpression: character '_' is not allowed (digits, spaces, + - * / ( ) only)
    >>> parse_expression("2**9")
    Traceback (most recent call last):
    ...
    lab.tasks.countdown.UnsafeExpression: operator Pow is not allowed
    """
    if not isinstance(text, str):
        raise UnsafeExpression(f"expected a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise UnsafeExpression(f"expression longer than {max_chars} characters")
    if not text.strip():
        raise UnsafeExpression("empty expression")
    if not _ALLOWED_CHARS.fullmatch(text):
        bad = next(c for c in text if not _ALLOWED_CHARS.fullmatch(c))
        raise UnsafeExpression(f"character {bad!r} is not allowed (digits, spaces, + - * / ( ) only)")
    if text.count("(") > max_depth:
        raise UnsafeExpression(f"more than {max_depth} parentheses")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise UnsafeExpression(f"not a valid expression ({type(e).__name__})") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > max_nodes:
        raise UnsafeExpression(f"expression has {nodes} nodes, more than {max_nodes}")
    numbers: list[int] = []
    value = _value(tree.body, text.strip(), numbers, 0, max_depth)
    return Parsed(value, tuple(numbers))


def _value(node: ast.AST, src: str, numbers: list[int], depth: int, max_depth: int) -> Fraction:
    """Exact value of a whitelisted node; raises UnsafeExpression on anything else."""
    if depth > max_depth:
        raise UnsafeExpression(f"expression nested deeper than {max_depth}")
    if isinstance(node, ast.Constant):
        v = node.value
        if type(v) is not int:
            raise UnsafeExpression(f"constant {v!r} is not an integer")
        literal = ast.get_source_segment(src, node)
        if literal is None or not literal.isdigit() or (len(literal) > 1 and literal[0] == "0"):
            raise UnsafeExpression(f"number {literal!r} is not written in plain decimal")
        numbers.append(v)
        return Fraction(v)
    if isinstance(node, ast.BinOp):
        op = _OPS.get(type(node.op))
        if op is None:
            raise UnsafeExpression(f"operator {type(node.op).__name__} is not allowed")
        a = _value(node.left, src, numbers, depth + 1, max_depth)
        b = _value(node.right, src, numbers, depth + 1, max_depth)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise UnsafeExpression("division by zero")
        return a / b
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def uses_only(used: tuple[int, ...], given: list[int]) -> bool:
    """Whether ``used`` takes each given number at most as often as it is given.

    >>> uses_only((3, 5), [3, 5, 7]), uses_only((3, 3), [3, 5]), uses_only((4,), [3, 5])
    (True, False, False)
    """
    have = Counter(given)
    return all(have[n] >= k for n, k in Counter(used).items())


@TASKS.register("countdown")
class Countdown(TaskBase):
    """Reach ``target`` with the given numbers; see the module docstring.

    Args:
        n_numbers: how many numbers are given (2..6).
        max_number: numbers are drawn from 1..max_number.
        max_target: largest allowed target (targets are >= 1).
        ops: operators used to build targets, a subset of ``"+-*/"`` (answers may use all four).
        format_reward: reward for a valid expression over the given numbers with the wrong value.
        test_fraction: share of all problems in the test split, in (0, 1).

    >>> task = Countdown()
    >>> ex = task.make([3, 5, 7], 22, "3*5+7")
    >>> ex.prompt, ex.answer
    ('3,5,7>22:', '3*5+7')
    >>> [task.reward(c, ex) for c in ["3*5+7", "7+5*3=22", "(3+5)*7", "3*5+7+7", "22", "__import__('os')"]]
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """

    name = "countdown"
    stop = ("\n",)

    def __init__(
        self,
        n_numbers: int = 3,
        max_number: int = 10,
        max_target: int = 100,
        ops: str = "+-*/",
        format_reward: float = 0.0,
        test_fraction: float = 0.1,
    ):
        if not isinstance(n_numbers, int) or not 2 <= n_numbers <= 6:
            raise ValueError(f"n_numbers must be an int in [2, 6], got {n_numbers!r}")
        if not isinstance(max_number, int) or not 1 <= max_number <= 1000:
            raise ValueError(f"max_number must be an int in [1, 1000], got {max_number!r}")
        if not isinstance(max_target, int) or max_target < 1:
            raise ValueError(f"max_target must be an int >= 1, got {max_target!r}")
        if not isinstance(ops, str) or not ops or set(ops) - set("+-*/") or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be a non-empty string of distinct operators from '+-*/', got {ops!r}")
        if not (isinstance(format_reward, (int, float)) and 0.0 <= format_reward < 1.0):
            raise ValueError(f"format_reward must be in [0, 1), got {format_reward!r}")
        if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        self.n_numbers, self.max_number, self.max_target, self.ops = n_numbers, max_number, max_target, ops
        self.format_reward, self.test_fraction = float(format_reward), float(test_fraction)
        self.params = {
            "n_numbers": n_numbers, "max_number": max_number, "max_target": max_target, "ops": ops,
            "format_reward": self.format_reward, "test_fraction": self.test_fraction,
        }

    def make(self, numbers: list[int], target: int, solution: str = "") -> Example:
        """The example for ``numbers`` and ``target``; ``solution`` becomes the reference answer."""
        prompt = f"{','.join(map(str, numbers))}>{target}:"
        meta = {"numbers": list(numbers), "target": target, "n_numbers": len(numbers)}
        return Example(stable_prompt_id(self.name, prompt), prompt, solution, meta)

    def _draw(self, rng: random.Random) -> tuple[list[int], int, str] | None:
        numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
        order = rng.sample(numbers, len(numbers))
        value, expr, prec = order[0], str(order[0]), 3
        for n in order[1:]:
            op = rng.choice(self.ops)
            if op == "+":
                value, expr, prec = value + n, f"{expr}+{n}", 1
            elif op == "-":
                if value - n < 0:
                    return None
                value, expr, prec = value - n, f"{expr}-{n}", 1
            elif op == "*":
                left = f"({expr})" if prec < 2 else expr
                value, expr, prec = value * n, f"{left}*{n}", 2
            else:
                if value % n:
                    return None
                left = f"({expr})" if prec < 2 else expr
                value, expr, prec = value // n, f"{left}/{n}", 2
        if not 1 <= value <= self.max_target:
            return None
        return sorted(numbers), value, expr

    def examples(self, split: str = "train", seed: int = 0) -> Iterator[Example]:
        """An infinite stream of solvable problems of ``split``, the same for the same ``seed``."""
        check_split(split)
        rng = random.Random(f"{self.name}:{split}:{seed}")
        misses = 0
        while True:
            drawn = self._draw(rng)
            if drawn is not None:
                ex = self.make(*drawn)
                if hash_split(ex.prompt, self.test_fraction) == split:
                    misses = 0
                    yield ex
                    continue
            misses += 1
            if misses >= 100_000:
                raise ValueError(f"no {split!r} problems found for {self!r}; loosen max_target or test_fraction")

    def reward(self, completion: str, example: Example) -> float:
        """1.0 for a correct expression, ``format_reward`` for a valid but wrong one, else 0.0."""
        numbers, target = example.meta["numbers"], example.meta["target"]
        try:
            parsed = parse_expression(expression_of(completion))
        except UnsafeExpression:
            return 0.0
        if not uses_only(parsed.numbers, numbers):
            return 0.0
        return 1.0 if parsed.value == target else self.format_reward
