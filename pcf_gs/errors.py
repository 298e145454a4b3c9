"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a missing file, a bad
value). The CLI prints it as one line and exits with code 2, without a
traceback unless ``--debug`` is given. Everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with the user's input; printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DataError(UserError):
    """A scene folder or file that cannot be read as the format says."""
