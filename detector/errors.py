"""User-facing errors: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix: a bad path, an absent camera, an unusable model."""


class SourceError(UserError):
    """The frame source cannot be opened or read."""


class ModelError(UserError):
    """The model folder or file is missing, corrupt, or does not describe itself."""


class SettingsError(UserError, ValueError):
    """A setting out of range or unknown: raised by the settings dataclasses' ``__post_init__``
    (and the registries), so the CLI shows it as one line whichever front end filled it."""


def run_tool(work: Callable[[], object]) -> int:
    """A ``python -m`` tool's body, run as the app runs: INFO logging, a :class:`UserError`
    as one ``error:`` line on stderr and exit code :data:`EXIT_USER_ERROR`, else 0."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        work()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def check_settings(*problems: str) -> None:
    """Raise one :class:`SettingsError` listing every non-empty ``problems`` entry (empty ones
    are checks that passed), so a user with three bad flags learns of all three at once."""
    found = [problem for problem in problems if problem]
    if found:
        raise SettingsError("; ".join(found))


@contextmanager
def quiet_native_stderr():
    """Silence what native code writes straight to file descriptor 2 (TensorFlow's C++
    start-up chatter, which ``TF_CPP_MIN_LOG_LEVEL`` does not stop; OpenCV's capture
    backends probing a camera), so user errors stay one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
