"""The lab's own error types: mistakes a user can make, reported in one or two lines.

Every error the lab raises for bad *input* (a config value, a file, a run directory, a
model folder, a device) derives from :class:`LabError`. ``lab.cli.main`` catches exactly
these and prints ``lab <command>: error: <message>`` with exit code 2; anything else is a
bug in the lab and keeps its traceback. Each subclass is also a ``ValueError`` (or the
built-in type code already caught before), so existing ``except ValueError`` keeps working.

>>> issubclass(UsageError, ValueError) and issubclass(UsageError, LabError)
True
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every user-facing lab error (the CLI prints these without a traceback)."""


class UsageError(LabError, ValueError):
    """A bad argument, flag combination, file or path given by the user; the message says the fix."""
