"""User-facing errors: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix: a bad path, an absent camera, an unusable model."""


class SourceError(UserError):
    """The frame source cannot be opened or read."""


class ModelError(UserError):
    """The model folder or file is missing, corrupt, or does not describe itself."""
