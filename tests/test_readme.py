"""The README's reference lists every flag the parsers have, as tools/cli_reference.py prints them."""

from __future__ import annotations

import re

from conftest import REPO_ROOT
from tools.cli_reference import reference


def _readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- cli-reference -->\n```\n(.*?)\n```\n<!-- /cli-reference -->", text, re.S)
    assert match, "README.md has no <!-- cli-reference --> block"
    return match.group(1)


def test_readme_reference_is_what_the_parsers_say():
    assert _readme_block() == reference(), "README reference is stale: run `python tools/cli_reference.py --write`"


def test_every_flag_of_the_app_parser_is_in_the_readme():
    """Straight from run_parser()'s actions, not from the help text the generator reads."""
    from detector.cli import run_parser

    app_section = _readme_block().split("main.py train", 1)[0]
    flags = {option for action in run_parser()._actions for option in action.option_strings if option.startswith("--")}
    missing = sorted(flag for flag in flags - {"--help"} if not re.search(rf"{re.escape(flag)}(?![\w-])", app_section))
    assert not missing, f"README reference lacks {missing}"
