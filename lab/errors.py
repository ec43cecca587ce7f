"""The lab's own error types, and which exit code the command line gives each.

* :class:`LabError`: a mistake a user can make in *input* (a config value, a file, a run
  directory, a model folder, a device, a task file). Raised before anything is written;
  ``lab.cli.main`` prints ``lab <command>: error: <message>`` and exits 2 ("refused"). Each
  subclass is also a ``ValueError`` (or the built-in type code already caught before), so
  existing ``except ValueError`` keeps working.
* :class:`RunFailed`: a run that started and then failed (its status says ``failed``);
  exit 1. :class:`RewardCrashed` is one: a reward function raised a ``BaseException`` that
  is not an ``Exception`` (``SystemExit``, ``GeneratorExit``, ...) or killed its worker.

Everything else that escapes a command is also reported in one line by ``lab.cli.main``
(exit 1; ``LAB_TRACEBACK=1`` shows the traceback), see ``lab.cli.describe_failure``.

>>> issubclass(UsageError, ValueError) and issubclass(UsageError, LabError)
True
>>> issubclass(TaskDataError, LabError), issubclass(TaskFileNotFound, FileNotFoundError)
(True, True)
>>> issubclass(RewardCrashed, RunFailed) and not issubclass(RewardCrashed, LabError)
True

:func:`reason` is the one way a message quotes an exception it caught (one line, cut at a word).
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every user-facing lab error (the CLI prints these without a traceback)."""


class UsageError(LabError, ValueError):
    """A bad argument, flag combination, file or path given by the user; the message says the fix."""


class TaskDataError(UsageError):
    """A task's data or parameters cannot make a usable task: the message names the file,
    the 1-based line and the field (or the parameter) and what is wrong there."""


class TaskFileNotFound(LabError, FileNotFoundError):
    """A task file or folder that does not exist (``path=...`` of a JSONL task)."""


class RunFailed(RuntimeError):
    """A run that started and then failed; its status on disk is ``failed``. CLI exit code 1."""


class RewardCrashed(RunFailed):
    """A reward function raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``GeneratorExit``, a custom ``BaseException``; Ctrl-C excepted), or its worker process died.
    The message names the exception (or the exit signal), the sample index and its prompt_id."""


def reason(e: BaseException | str, limit: int = 160, *, join: bool = False) -> str:
    """An exception (or a text) as one line for a message: its first non-empty line (``join``:
    all its lines joined by spaces), cut at a word boundary and ended with "…" when longer than
    ``limit`` characters. The exception's type name when its text is empty or its ``__str__``
    itself raises (user code can raise anything).

    >>> reason(ValueError("bad value\\n  traceback line"))
    'bad value'
    >>> reason(KeyError())
    'KeyError'
    >>> reason("Parquet magic bytes not found in footer. Either the file is corrupted", 41)
    'Parquet magic bytes not found in footer…'
    """
    try:
        text = e if isinstance(e, str) else str(e)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    text = (" ".join(lines) if join else lines[0]) if lines else ("" if isinstance(e, str) else type(e).__name__)
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)]
    space = len(cut) if text[len(cut)] == " " else cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:(-") + "…"
