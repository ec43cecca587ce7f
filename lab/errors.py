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
