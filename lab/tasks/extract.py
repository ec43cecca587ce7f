r"""Answer extraction and comparison: the conventions users of GSM8K/MATH-style rewards expect.

:func:`extract_answer` looks, in order, for

1. the **last** ``\boxed{...}`` (nested braces handled: ``\boxed{\frac{3}{4}}``);
2. the **last** ``#### ...`` marker (GSM8K's final-answer line), the rest of that line;
3. else the **final number** in the text.

A found answer that is a number is normalised (:func:`normalize_number`): thousands commas,
a leading ``$``, a trailing ``.`` and surrounding spaces go, ``+5`` becomes ``5``,
``\frac{a}{b}`` becomes ``a/b``. Anything else is returned stripped, as written.

:func:`answers_match` compares numerically when both sides parse as numbers (integers,
decimals, fractions ``3/4``), with ``math.isclose(rel_tol=1e-6, abs_tol=1e-9)``: GSM8K
answers are integers and a model writing ``18.0`` or ``18.0000001`` meant 18. Otherwise it
compares the stripped strings with whitespace collapsed.

>>> extract_answer(r"so the total is \boxed{1,234}.")
'1234'
>>> extract_answer("She pays 5 + 13 = 18 dollars.\n#### 18")
'18'
>>> extract_answer("It costs $1,250.50 in total.")
'1250.50'
>>> answers_match(extract_answer("the answer is 18.0"), "18")
True
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

REL_TOL = 1e-6
ABS_TOL = 1e-9
MAX_NUMBER_CHARS = 100

# A number as people write it: sign, digits with optional thousands commas, optional decimals,
# or a fraction a/b. Commas only count in groups of three ("1,234" but not "1,2").
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|[-+]?\.\d+"
_NUMBER = re.compile(rf"(?<![\w.])(?:{_NUM})(?![\d])")
_FULL_NUMBER = re.compile(rf"(?:{_NUM})")
_FRAC = re.compile(r"^\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}$")
_HASH = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")


def extract_boxed(text: str) -> str | None:
    r"""The content of the last ``\boxed{...}`` (or ``\fbox{...}``), braces balanced; None if absent.

    >>> extract_boxed(r"\boxed{1} then \boxed{\frac{3}{4}}")
    '\\frac{3}{4}'
    >>> extract_boxed(r"\boxed{unclosed") is None
    True
    """
    starts = [m.end() - 1 for m in _BOXED.finditer(text)]  # index of each opening brace
    if not starts:
        return None
    close = matching_braces(text)
    for start in reversed(starts):
        end = close.get(start)
        if end is not None:
            return text[start + 1:end].strip()
    return None


def matching_braces(text: str) -> dict[int, int]:
    """``{index of "{": index of its matching "}"}`` for every balanced pair, in one pass.

    Linear in ``len(text)`` whatever the text (an earlier version rescanned the rest of the
    text for every ``\\boxed{``: 8,000 unclosed ones took 23 s).

    >>> matching_braces("{a{b}}{")
    {2: 4, 0: 5}
    """
    stack: list[int] = []
    out: dict[int, int] = {}
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            out[stack.pop()] = m.start()
    return out


def extract_hash(text: str) -> str | None:
    """The rest of the line after the last ``####`` (GSM8K's answer marker); None if absent.

    >>> extract_hash("work...\\n#### 1,234\\n")
    '1,234'
    >>> extract_hash("no marker") is None
    True
    """
    found = _HASH.findall(text)
    return found[-1].strip() if found else None


def extract_last_number(text: str) -> str | None:
    """The final number in ``text``, normalised; None if there is none.

    >>> extract_last_number("3 apples and -1,250.5 pears.")
    '-1250.5'
    >>> extract_last_number("a ratio of 3/4")
    '3/4'
    >>> extract_last_number("no digits") is None
    True
    """
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def normalize_number(s: str) -> str | None:
    r"""``s`` as a canonical number string, or None if it is not a single number.

    Drops surrounding spaces, a leading ``$``, thousands commas, a trailing ``.`` and a
    leading ``+``; turns ``\frac{a}{b}`` into ``a/b``. Keeps decimals as written (``2.50``).

    >>> [normalize_number(s) for s in ["1,234", "+5", "$18.", " -3 ", r"\frac{3}{4}", "2.50", "12a"]]
    ['1234', '5', '18', '-3', '3/4', '2.50', None]
    """
    t = s.strip()
    m = _FRAC.match(t)
    if m:
        t = f"{m.group(1).strip()}/{m.group(2).strip()}"
    t = t.replace(" ", "")
    if t.startswith("$"):
        t = t[1:]
    elif t[:2] in ("-$", "+$"):
        t = t[0] + t[2:]
    t = t.rstrip(".")
    if len(t) > MAX_NUMBER_CHARS or not _FULL_NUMBER.fullmatch(t):
        return None
    t = t.replace(",", "")
    return t[1:] if t.startswith("+") else t


def extract_answer(text: str) -> str | None:
    r"""The answer in ``text``: last ``\boxed{}``, else last ``####`` line, else final number.

    A boxed or ``####`` answer that is a number comes back normalised; one that is not
    (``\boxed{x+1}``) comes back as written. None if nothing is found.

    >>> extract_answer(r"\boxed{\boxed{7}} or rather \boxed{-2.5}")
    '-2.5'
    >>> extract_answer("#### 1,000,000")
    '1000000'
    >>> extract_answer("The answer is 42.")
    '42'
    >>> extract_answer("I don't know") is None
    True
    """
    for found in (extract_boxed(text), extract_hash(text)):
        if found:
            n = normalize_number(found)
            return n if n is not None else found
    return extract_last_number(text)


def parse_number(s: str | None) -> Fraction | None:
    """``s`` as an exact ``Fraction`` (integers, decimals, ``a/b``, commas, ``$``), else None.

    >>> parse_number("1,234.5"), parse_number("-3/4"), parse_number("1/0"), parse_number("x")
    (Fraction(2469, 2), Fraction(-3, 4), None, None)
    """
    if s is None:
        return None
    t = normalize_number(s)
    if t is None:
        return None
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            d = Fraction(den)
            return None if d == 0 else Fraction(num) / d
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(pred: str | None, ref: str | None, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    """Whether a predicted answer equals the reference.

    Numerically (``math.isclose`` with ``rel_tol=1e-6``, ``abs_tol=1e-9``) when both parse
    as numbers; else as strings, stripped and with runs of whitespace collapsed. ``None``
    and empty or whitespace-only text never match (not even each other), so an empty
    completion can never score against an empty reference.

    >>> answers_match("18.0", "18"), answers_match("1,234", "1234"), answers_match("0.75", "3/4")
    (True, True, True)
    >>> answers_match("18.001", "18"), answers_match(None, "18"), answers_match("Paris ", "Paris"), answers_match("", " ")
    (False, False, True, False)
    """
    if pred is None or ref is None or not pred.strip() or not ref.strip():
        return False
    a, b = parse_number(pred), parse_number(ref)
    if a is not None and b is not None:
        if a == b:
            return True
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    return " ".join(pred.split()) == " ".join(ref.split())
