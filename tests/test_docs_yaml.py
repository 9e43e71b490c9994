"""Every ```yaml block in docs/*.md parses as YAML (a reader copies them into mapping files and
configs; `field: position[2]` inside {...} is a YAML syntax error and must be quoted)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```", re.M | re.S)


def yaml_blocks() -> list[tuple[str, int, str]]:
    out = []
    for md in sorted(DOCS.glob("*.md")):
        text = md.read_text()
        for m in BLOCK.finditer(text):
            out.append((md.name, text.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def test_docs_have_yaml_blocks():
    assert any(name == "bag_conversion.md" for name, _, _ in yaml_blocks())


@pytest.mark.parametrize("name, line, block", yaml_blocks(), ids=lambda v: str(v)[:40] if isinstance(v, str) else str(v))
def test_yaml_block_parses(name, line, block):
    from ruamel.yaml import YAML, YAMLError
    from lara_policy.formats.rosbag import yaml_error_line
    try:
        YAML(typ="safe").load(block)
    except YAMLError as exc:
        pytest.fail(f"docs/{name}, block at line {line}: {yaml_error_line(exc)}")


def test_the_error_line_of_an_unquoted_field_path():
    """The rule the docs follow, shown on the mistake it prevents."""
    from ruamel.yaml import YAML, YAMLError
    from lara_policy.formats.rosbag import yaml_error_line
    with pytest.raises(YAMLError) as info:
        YAML(typ="safe").load("state:\n  - {name: g, topic: /js, field: position[2]}\n")
    line = yaml_error_line(info.value)
    assert line.startswith("not valid YAML at line 2, column") and "\n" not in line and "quoted" in line
    assert YAML(typ="safe").load('state:\n  - {name: g, topic: /js, field: "position[2]"}\n')


def test_the_documented_mapping_is_a_valid_mapping():
    """The full mapping example of docs/bag_conversion.md is accepted by the mapping parser."""
    from ruamel.yaml import YAML
    from lara_policy.formats.rosbag import parse_mapping
    blocks = [b for name, _, b in yaml_blocks() if name == "bag_conversion.md" and "cameras:" in b]
    assert blocks
    for b in blocks:
        m = parse_mapping(YAML(typ="safe").load(b))
        assert m.state and m.action is not None
        assert ("wrist", "position[5]") in [(n, s.field) for n, s in m.state]
        assert any(s.tf == ("base_link", "tool0") for _, s in m.state)
