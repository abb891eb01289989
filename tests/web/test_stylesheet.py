"""The stylesheet read by a real CSS parser (tinycss2, CSS Syntax Level 3): every block closed, no syntax errors,
and width queries that hold only their own rules. An unclosed ``@media (max-width: 600px) {`` once made every
rule after it apply on phones only: on a desktop the Images page drew its face boxes below the photo (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tinycss2

import emotion_detector.web

STYLESHEET = Path(emotion_detector.web.__file__).parent / "static" / "style.css"


@pytest.fixture(scope="module")
def source() -> str:
    return STYLESHEET.read_text()


def rules(nodes: list) -> list:
    return [node for node in nodes if node.type not in ("whitespace", "comment")]


def test_every_block_is_closed(source):
    # The parser closes an unclosed block at the end of the file: serialising it back then adds the "}" missing.
    written_back = tinycss2.serialize(tinycss2.parse_component_value_list(source))
    assert written_back == source, f"unclosed block: the parser added {written_back[len(source.rstrip()) :]!r} at the end"


def test_no_syntax_errors_in_rules_or_declarations(source):
    errors = []
    for rule in rules(tinycss2.parse_stylesheet(source)):
        inner = rules(tinycss2.parse_rule_list(rule.content)) if rule.type == "at-rule" and rule.content is not None else [rule]
        for node in inner:
            if node.type == "error":
                errors.append(f"line {node.source_line}: {node.message}")
                continue
            for declaration in tinycss2.parse_declaration_list(node.content, skip_whitespace=True, skip_comments=True):
                if declaration.type == "error":
                    errors.append(f"line {declaration.source_line}: {declaration.message}")
    assert errors == []


def test_width_queries_hold_only_style_rules_and_the_pages_layout_applies_at_every_width(source):
    top_level = rules(tinycss2.parse_stylesheet(source))
    for rule in top_level:
        if rule.type == "at-rule" and rule.lower_at_keyword == "media":
            inner = rules(tinycss2.parse_rule_list(rule.content))
            nested = [tinycss2.serialize(node.prelude).strip() for node in inner if node.type != "qualified-rule"]
            assert nested == [], f"@media{tinycss2.serialize(rule.prelude)} (line {rule.source_line}) swallows {nested}"
    selectors = {tinycss2.serialize(rule.prelude).strip() for rule in top_level if rule.type == "qualified-rule"}
    # The overlays drawn on pictures and on the live video, and the live page's summary, are styled at every width.
    assert {".picture", ".picture canvas", ".stage video, .stage canvas", ".summary"} <= selectors
