"""The docs' numbers agree with the JSON files their commands wrote (tools/docs_numbers.py)."""

from __future__ import annotations

import json

import pytest

from tools.docs_numbers import BLOCKS, REPO, VALUES, documents, render, stale


def test_every_number_in_the_docs_matches_its_json():
    assert stale() == [], "run: python tools/docs_numbers.py"


def test_a_retyped_number_is_caught(tmp_path):
    text = (REPO / "docs" / "FLICKER.md").read_text(encoding="utf-8")
    marker = "<!-- n:flicker.tau -->"
    assert marker in text
    start = text.index(marker) + len(marker)
    doc = tmp_path / "FLICKER.md"
    doc.write_text(text[:start] + "9.99" + text[text.index("<!-- /n -->", start):], encoding="utf-8")
    assert stale([doc]) == [f"{doc}: flicker.tau"]


def test_an_edited_table_is_caught(tmp_path):
    text = (REPO / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text(text.replace("<!-- bench:begin -->\n", "<!-- bench:begin -->\n| a row typed by hand |\n"), encoding="utf-8")
    assert stale([doc]) == [f"{doc}: bench"]


def test_an_unknown_marker_is_an_error():
    with pytest.raises(KeyError, match="int8.acuracy"):
        render("<!-- n:int8.acuracy -->66.9%<!-- /n -->")


def test_the_int8_accuracy_in_the_docs_is_the_measured_one():
    """README and MODELS.md quote the shipped int8 model's PrivateTest accuracy from the quantization run."""
    variants = json.loads((REPO / "docs" / "quantization.json").read_text())["variants"]
    accuracy = next(v["accuracy"] for v in variants if v["variant"] == "int8 static")
    quoted = f"<!-- n:int8.accuracy -->{100 * accuracy:.1f}%<!-- /n -->"
    for name in ("README.md", "docs/MODELS.md"):
        assert quoted in (REPO / name).read_text(encoding="utf-8"), name


def test_every_generated_number_is_used_somewhere():
    """A name no doc uses is a number measured for nothing, or a doc that retypes it by hand."""
    text = "".join(path.read_text(encoding="utf-8") for path in documents())
    unused = [name for name in BLOCKS if f"<!-- {name}:begin" not in text]
    unused += [name for name in VALUES if f"<!-- n:{name} -->" not in text]
    assert unused == []
