"""The bounded YAML reader: same data as PyYAML's safe loader on valid input, on both the libyaml
and the pure-Python parser; bombs and deep nesting refused on both."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.experiment import safe_yaml
from harness.experiment.safe_yaml import MAX_DEPTH, load_text
from tests.helpers.hostile import BASE, BOMBS, flow, merge_bomb

REPO = Path(__file__).resolve().parents[2]
VALID = [p.read_text(encoding="utf-8") for p in sorted((REPO / "experiments").glob("*.yaml"))]
VALID += [BASE, "a: &x {k: 1}\nb: *x\n", "", "- 1\n- [2, {3: 4}]\n",
          "t: 2020-01-02\nb: !!binary aGk=\ns: !!set {a, b}\n"]


@pytest.mark.parametrize("pure_python", [False, True])
@pytest.mark.parametrize("text", VALID, ids=range(len(VALID)))
def test_valid_documents_load_exactly_as_safe_load(text: str, pure_python: bool) -> None:
    assert load_text(text, pure_python=pure_python)[0] == yaml.safe_load(text)


@pytest.mark.parametrize("pure_python", [False, True])
@pytest.mark.parametrize("name", ["laughs_9x10", "merge_bomb", "recursive_alias", "block_3000"])
def test_bombs_are_refused_by_both_parsers(name: str, pure_python: bool) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as exc:
        load_text(BOMBS[name], pure_python=pure_python)
    assert exc.value.problem_mark is not None


def test_pure_python_scanner_caps_flow_depth_before_going_quadratic() -> None:
    with pytest.raises(yaml.scanner.ScannerError, match=f"deeper than {MAX_DEPTH}"):
        load_text(flow(100_000), pure_python=True)


def test_depth_up_to_the_cap_loads() -> None:
    d = MAX_DEPTH - 1
    assert load_text("[" * d + "]" * d)[0] is not None


def test_alias_budget_allows_small_reuse_and_counts_expansion() -> None:
    ok = "a: &a [1, 2, 3]\n" + "".join(f"b{i}: *a\n" for i in range(100))
    assert len(load_text(ok)[0]) == 101
    with pytest.raises(yaml.composer.ComposerError, match="more than 100 aliases"):
        load_text(ok + "c: *a\n")
    with pytest.raises(yaml.composer.ComposerError, match="would expand"):
        load_text(merge_bomb(levels=6))


def test_merge_keys_stay_refused_as_before() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="merge"):
        load_text("a: &x {k: 1}\nc:\n  <<: *x\n  j: 2\n")


def test_without_libyaml_the_python_loader_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_yaml, "CLoader", None)
    assert load_text(BASE)[0] == yaml.safe_load(BASE)
