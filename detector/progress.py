"""The progress bar of long headless runs (tqdm, a well-kept library, not our own)."""

from __future__ import annotations

import sys


def progress(total: int, description: str = "frames"):
    """A tqdm bar on stderr for ``total`` items (0: unknown); silent when stderr is not a
    terminal (logs, CI, pipes), so captured output stays the run's own lines."""
    from tqdm import tqdm

    return tqdm(total=total or None, desc=description, unit=description.removesuffix("s"), dynamic_ncols=True, disable=not sys.stderr.isatty())
