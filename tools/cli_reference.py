"""The README's "Reference" block, generated from the parsers' own ``--help``, so it lists every
flag of ``main.py`` and its commands and cannot drift (tests/test_readme.py compares them).

    python tools/cli_reference.py          # prints the block
    python tools/cli_reference.py --write  # puts it between the README's <!-- cli-reference --> markers
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector.cli import COMMANDS as _COMMANDS  # noqa: E402  (one owner of the command names)

COMMANDS = ("", *_COMMANDS)  # "" is the app itself
OPTION = re.compile(r"^  (-[^ ].*?)(?:  +\S.*)?$")  # "  --flag METAVAR    help" (help may wrap to later lines)
WIDTH = 100


def help_text(command: str) -> str:
    """``main.py [command] --help`` as a user sees it, captured in-process."""
    from detector.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([command, "--help"] if command else ["--help"])
    return out.getvalue()


def groups(text: str) -> list[tuple[str, list[str]]]:
    """(group title, ["--flag METAVAR", ...]) in help order; ``-h/--help`` left out."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            found.append((line[:-1], []))
            continue
        match = OPTION.match(line)
        if match and found:
            spelling = match.group(1).split(", ")[-1].strip() if match.group(1).startswith("-h") else match.group(1).strip()
            if spelling not in ("--help", "-h"):
                found[-1][1].append(spelling)
    return [(title, flags) for title, flags in found if flags]


def reference() -> str:
    lines = []
    for command in COMMANDS:
        lines.append(f"main.py {command}".rstrip())
        for title, flags in groups(help_text(command)):
            body = "  ".join(flag.replace(" ", "\0") for flag in flags)  # a flag and its metavar stay on one line
            wrapped = textwrap.wrap(body, WIDTH, initial_indent=f"  {title + ':':<25}", subsequent_indent=" " * 27,
                                    break_on_hyphens=False, break_long_words=False)
            lines += [line.replace("\0", " ") for line in wrapped]
    return "\n".join(lines)


def write_readme(readme: Path = REPO / "README.md") -> None:
    """Replace the README's reference block with :func:`reference`."""
    text = readme.read_text(encoding="utf-8")
    block = re.compile(r"(<!-- cli-reference -->\n```\n).*?(\n```\n<!-- /cli-reference -->)", re.S)
    readme.write_text(block.sub(lambda match: match.group(1) + reference() + match.group(2), text), encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_readme()
    else:
        print(reference())
