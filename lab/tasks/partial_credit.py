"""``arithmetic-partial``: the arithmetic task with partial-credit rewards {1, 0.5, 0.01, 0} (KRPO's regime).

KRPO's reference code (github billhhh/KRPO_LLMs_RL) trains with G = 12 and graded rewards, not
0/1 ones; this task gives the lab that reward scale on its own problems. Prompts, answers and
splits are :class:`~lab.tasks.arithmetic.Arithmetic`'s; the reward of a completion reads its
first line:

- **1.0**: exactly the integer answer (surrounding spaces allowed), as ``arithmetic`` scores 1;
- **0.5**: the right integer is on the line but with other text around it (right answer, wrong format);
- **0.01**: a well-formed integer, but the wrong one (the format is right);
- **0.0**: anything else.

>>> task = PartialCredit()
>>> ex = task.make(3, "-", 45)
>>> [task.reward(c, ex) for c in ["-42", "-42 is it", "17", "x"]]
[1.0, 0.5, 0.01, 0.0]
"""

from __future__ import annotations

import re

from lab.tasks.arithmetic import _INT, Arithmetic, first_line
from lab.tasks.base import TASKS, Example

REWARDS = (1.0, 0.5, 0.01, 0.0)
"""The reward levels, best first."""
_ANY_INT = re.compile(r"-?\d+")


@TASKS.register("arithmetic-partial")
class PartialCredit(Arithmetic):
    """``arithmetic`` with the graded reward of the module docstring (same parameters, prompts and splits).

    >>> ex = PartialCredit(max_digits=1).sample(1, "train", seed=0)[0]
    >>> PartialCredit(max_digits=1).reward(ex.answer, ex)
    1.0
    """

    name = "arithmetic-partial"

    def reward(self, completion: str, example: Example) -> float:
        line = first_line(completion)
        want = int(example.answer)
        if _INT.fullmatch(line):
            return REWARDS[0] if int(line) == want else REWARDS[2]
        if any(int(m) == want for m in _ANY_INT.findall(line)):
            return REWARDS[1]
        return REWARDS[3]
