"""Shared fixtures: a tiny hand-written experiment whose every number can be checked by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def cand(teacher: str, final: str, confidence: float | None = 0.9, **kw: Any) -> dict[str, Any]:
    return {"teacher": teacher, "final": final, "confidence": confidence, **kw}


def label_record(i: int, prompt: str, reference: str | None, finals: dict[str, str],
                 scores: dict[str, int] | None = None, winner: str | None = None,
                 pools: dict[str, str] | None = None, failure: dict[str, Any] | None = None,
                 confidences: dict[str, float] | None = None, unit: str = "route",
                 **extra: Any) -> dict[str, Any]:
    confidences = confidences or {}
    rec: dict[str, Any] = {
        "id": f"r{i}", "unit": unit, "prompt": prompt, "reference": reference,
        "candidates": [cand(t, f, confidences.get(t, 0.9), rationale=f"because {f}",
                            limits="unless unclear") for t, f in finals.items()],
    }
    if scores is not None:
        rec["judge"] = {"judge": "j", "winner": winner, "scores": scores, "reason_tags": []}
    if pools is not None:
        rec["pools"] = pools
    if failure is not None:
        rec["failure"] = failure
    rec.update(extra)
    return rec


BASE_SPEC: dict[str, Any] = {
    "name": "tiny",
    "data": {"samples": "samples.jsonl", "eval": "eval.jsonl"},
    "units": {
        "route": {"kind": "label", "labels": ["billing", "shipping"]},
        "esc": {"kind": "refusal", "marker": "ESCALATE"},
        "fields": {"kind": "json_fields", "fields": ["order_id"]},
        "tool": {"kind": "tool_call", "tools": ["lookup_order"]},
    },
    "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
    "buckets": {
        "single_a": {"teachers": ["a"], "select": "all"},
        "judged": {"select": "judge_winner"},
    },
    "fields": {"answer_only": {}, "full": {"rationale": True, "limits": True}},
    "scale": [1.0],
    "seeds": [0],
    "baseline": {"bucket": "single_a", "fields": "answer_only"},
}


def tiny_samples() -> list[dict[str, Any]]:
    return [
        label_record(1, "charged twice", "billing", {"a": "billing", "b": "shipping"},
                     scores={"a": 5, "b": 2}, winner="a", pools={"a": "train", "b": "failure"},
                     failure={"b": {"kind": "wrong_label", "correction": "billing",
                                    "note": "a charge"}}),
        label_record(2, "parcel late", "shipping", {"a": "billing", "b": "shipping"},
                     scores={"a": 1, "b": 4}, winner="b", pools={"a": "failure", "b": "train"},
                     failure={"a": {"kind": "wrong_label", "correction": "shipping",
                                    "note": None}}),
        label_record(3, "i will sue you", "ESCALATE", {"a": "REPLY: sorry", "b": "ESCALATE"},
                     scores={"a": 2, "b": 5}, winner="b", pools={"a": "failure", "b": "train"},
                     failure={"a": {"kind": "missed_escalation", "correction": None,
                                    "note": "legal threat"}}, unit="esc"),
        label_record(4, "order 77 please", '{"order_id":"77"}',
                     {"a": '{"order_id": "77"}', "b": '{"order_id":"7"}'},
                     scores={"a": 5, "b": 1}, winner="a", pools={"a": "train", "b": "failure"},
                     failure={"b": {"kind": "wrong_field", "correction": '{"order_id":"77"}'}},
                     unit="fields"),
        label_record(5, "where is 88", '{"name":"lookup_order","arguments":{"order_id":"88"}}',
                     {"a": '{"name":"lookup_order","arguments":{"order_id":"88"}}', "b": "null"},
                     scores={"a": 4, "b": 2}, winner="a", unit="tool"),
    ]


def tiny_eval() -> list[dict[str, Any]]:
    return [
        {"id": "e1", "unit": "route", "prompt": "refund my money", "reference": "billing",
         "candidates": [cand("a", "billing", 0.8), cand("b", "shipping", 0.6)],
         "tags": {"source": "real"}},
        {"id": "e2", "unit": "esc", "prompt": "lawyer now", "reference": "ESCALATE",
         "tags": {"source": "synthetic"}},
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Callable[..., Path]:
    """Write the tiny experiment to tmp_path and return its YAML path.

    Call with ``spec=`` (deep-merged top-level overrides), ``samples=`` and ``eval=`` lists.
    """

    def make(spec: dict[str, Any] | None = None, samples: list[dict[str, Any]] | None = None,
             eval: list[dict[str, Any]] | None = None) -> Path:
        doc = json.loads(json.dumps(BASE_SPEC))
        doc.update(spec or {})
        write_jsonl(tmp_path / "samples.jsonl", tiny_samples() if samples is None else samples)
        write_jsonl(tmp_path / "eval.jsonl", tiny_eval() if eval is None else eval)
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                    ) -> None:
    """Each test gets its own table cache, so no test sees another's cached tables."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
