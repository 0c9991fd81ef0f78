"""The documentation: generated pages up to date, every key and option in them, links that
resolve, a README a newcomer finishes."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser
from harness.docs import (
    PAGES,
    REGENERATE,
    _cell,
    _prose,
    main,
    render_cli_reference,
    render_yaml_reference,
    stale_pages,
)
from harness.experiment import json_schema

ROOT = Path(__file__).resolve().parents[1]
#: README.md and every hand-written or generated page of docs/.
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("rel", sorted(PAGES))
def test_generated_page_is_up_to_date(rel: str) -> None:
    path = ROOT / rel
    assert path.is_file(), f"{rel} is missing: run `{REGENERATE}` and commit it"
    assert path.read_text(encoding="utf-8") == PAGES[rel](), (
        f"{rel} is out of date with the code: run `{REGENERATE}` "
        f"(python -m harness.docs --write) and commit it")


def test_check_fails_on_a_missing_or_edited_page_and_write_repairs_it(tmp_path: Path,
                                                                      capsys: Any) -> None:
    assert main(["--check", "--root", str(tmp_path)]) == 1  # nothing written yet
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "cli-reference.md"
    page.write_text(page.read_text(encoding="utf-8") + "a hand edit\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert f"docs/cli-reference.md is out of date: run `{REGENERATE}`" in capsys.readouterr().err
    assert stale_pages(tmp_path) == ["docs/cli-reference.md"]


def _properties(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, key, property schema) of the top level and of every model in ``$defs``."""
    models = [("Experiment", schema), *schema["$defs"].items()]
    return [(name, key, prop) for name, model in models
            for key, prop in model.get("properties", {}).items()]


def _enums(prop: Any) -> list[Any]:
    if isinstance(prop, dict):
        return list(prop.get("enum", [])) + [v for sub in prop.values() for v in _enums(sub)]
    if isinstance(prop, list):
        return [v for sub in prop for v in _enums(sub)]
    return []


def test_yaml_reference_has_every_section_key_default_and_enum_value() -> None:
    schema = json_schema()
    text = render_yaml_reference()
    sections = re.split(r"\n## ", text)
    by_name = {s.splitlines()[0].split(" ")[0]: s for s in sections[1:]}
    assert set(schema["$defs"]) <= set(by_name), "a model without its section"
    for name, key, prop in _properties(schema):
        section = by_name["Experiment" if name == "Experiment" else name]
        row = next((line for line in section.splitlines() if line.startswith(f"| `{key}` |")),
                   None)
        assert row is not None, f"{name}.{key} has no row"
        if "description" in prop:
            assert _cell(_prose(prop["description"])) in row, f"{name}.{key}: description"
        for value in _enums(prop):
            assert f"`{value}`" in row, f"{name}.{key}: enum value {value!r}"
        model = schema if name == "Experiment" else schema["$defs"][name]
        required = key in model.get("required", [])
        assert ("**required**" in row) == required, f"{name}.{key}: required is {required}"
    for name in schema["$defs"]:
        assert f"[{name}](#{name.lower()})" in text, f"no link to {name}"


def test_yaml_reference_renders_a_default_a_bound_and_a_nested_model() -> None:
    schema = {"description": "Top.", "type": "object", "additionalProperties": False,
              "required": ["a"],
              "properties": {"a": {"type": "integer", "minimum": 1, "description": "An A."},
                             "b": {"$ref": "#/$defs/B", "default": {"c": "x"}},
                             "d": {"anyOf": [{"enum": ["p", "q"], "type": "string"},
                                             {"type": "null"}], "default": None}},
              "$defs": {"B": {"type": "object", "additionalProperties": False,
                              "description": "A B.",
                              "properties": {"c": {"type": "string", "default": "x"},
                                             "e": {"type": "array", "items": {"type": "number"}}}}}}
    text = render_yaml_reference(schema)
    assert "| `a` | integer (≥ 1) | **required** | An A. |" in text
    assert "| `b` | [B](#b) | its keys' defaults |  |" in text
    assert "| `d` | one of `p` / `q` or null | `null` |  |" in text
    assert "## B\n\nUsed at: `b`.\n\nA B." in text
    assert "| `e` | list of number | optional |  |" in text


def test_cli_reference_has_every_command_and_option() -> None:
    text = render_cli_reference()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert isinstance(sub.choices, dict)
    for name, command in sub.choices.items():
        assert f"\n## harness {name}\n" in text
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in text, f"harness {name} {option}"


@pytest.mark.parametrize("render", [render_yaml_reference, render_cli_reference])
def test_generated_pages_hold_nothing_of_this_machine(render: Any) -> None:
    text = render()
    assert str(ROOT) not in text and str(Path.home()) not in text
    assert datetime.date.today().isoformat() not in text, "today's date in a generated page"
    assert render() == text, "two renders differ"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a '#' in a code block is no heading
    out = {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    return out | set(re.findall(r'<a id="([^"]+)"', text))


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.is_relative_to(ROOT):  # ../shared/: beside the repository, not in a clone
            continue
        assert dest.exists(), f"{page.relative_to(ROOT)}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.relative_to(ROOT)}: no anchor {target}"


#: Repository paths the pages name in code spans (``harness/run.py``, ``tests/...``); a path
#: with a placeholder (``<name>``, ``*``) or under a folder the commands write is not checked.
_PATH = re.compile(r"`((?:harness|tests|benchmarks|experiments|docs)/[\w./-]*)`")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page: Path) -> None:
    """A module, test or script the pages name was not moved or deleted without them."""
    missing = [p for p in _PATH.findall(page.read_text(encoding="utf-8"))
               if not (ROOT / p.rstrip("/")).exists() and "/data/" not in p]
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_readme_is_short_enough_to_finish() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
