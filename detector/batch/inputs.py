"""What to analyse: files, folders (recursively), globs, or a text file listing paths.

The order is the order given (folders and globs sorted inside), duplicates dropped, so
the same command always names and orders its inputs the same way: resume relies on it.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

from detector.errors import UserError

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}  # a file with one of these names lists inputs, one path a line
_GLOB_CHARS = set("*?[")
#: Bytes of a file name kept in a result folder's name: room under the 255-byte limit of
#: ext4/NTFS/APFS for the store's "-<8 hex>" and ".old-" additions and a ".tmp" suffix.
MAX_STEM_BYTES = 200


def collect_inputs(specs: list[str]) -> list[str]:
    """Input paths as the user spelt them (a folder's files joined onto the folder as given).

    Raises UserError for a path that does not exist, a glob or folder with no videos in it,
    or an empty list: a typo should stop the batch before it starts, not become a failure row.
    """
    found: list[str] = []
    for spec in specs:
        found.extend(_expand(spec))
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UserError("no inputs given")
    return unique


def _expand(spec: str) -> list[str]:
    if _GLOB_CHARS & set(spec) and not Path(spec).exists():
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise UserError(f"no file matches {spec}")
        return [m for m in matches if Path(m).is_file()] + [v for m in matches if Path(m).is_dir() for v in _folder(m)]
    path = Path(spec)
    if path.is_dir():
        videos = _folder(spec)
        if not videos:
            raise UserError(f"no videos in folder {spec} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        return videos
    if not path.exists():
        raise UserError(f"input not found: {spec}")
    if path.suffix.lower() in LIST_SUFFIXES:
        return _listed(path)
    return [spec]


def _folder(folder: str) -> list[str]:
    """Every file with a video suffix under ``folder``, at any depth, sorted by path."""
    root = Path(folder)
    return [str(root / p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]


def _listed(list_file: Path) -> list[str]:
    """One path a line; blank lines and lines starting with # are skipped; a relative path
    is relative to the list file's folder, so a list works from any current directory."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read input list {list_file}: {error}") from None
    paths = []
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#"):
            path = Path(line)
            paths.extend(_expand(str(path if path.is_absolute() else list_file.parent / path)))
    return paths


def result_names(inputs: list[str]) -> dict[str, str]:
    """Input -> the name of its result folder: :func:`safe_stem` of the file name, or, where
    two inputs share it (compared casefolded: ``Clip.mp4`` and ``clip.mp4`` are one folder on
    Windows and macOS), :func:`hashed_name` (stable across runs, so resume finds the folder again)."""
    stems: dict[str, int] = {}
    for item in inputs:
        key = safe_stem(item).casefold()
        stems[key] = stems.get(key, 0) + 1
    return {item: hashed_name(item) if stems[safe_stem(item).casefold()] > 1 else safe_stem(item) for item in inputs}


def safe_stem(item: str) -> str:
    """The file name without suffix and without leading dots, or ``input`` if nothing is left:
    never empty, ``.``, ``..`` or a hidden name such as the store's ``.staging``, so a result
    folder is always a child of ``--out`` that no other part of the store uses. Cut to
    :data:`MAX_STEM_BYTES` of UTF-8 (at a character boundary), so every name made from it fits."""
    stem = Path(item).stem.lstrip(".")
    cut = stem.encode("utf-8", "surrogateescape")[:MAX_STEM_BYTES].decode("utf-8", "ignore")
    return cut.rstrip(" .") or "input"


def hashed_name(item: str) -> str:
    """:func:`safe_stem` plus 8 hex digits of the input's absolute path: the name of an input
    whose stem another input (of this run or, see ``ResultStore.owned_name``, an earlier one) has."""
    return safe_stem(item) + "-" + hashlib.sha1(str(Path(item).resolve()).encode()).hexdigest()[:8]
