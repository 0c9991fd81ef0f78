"""The tiny hand-written experiment whose every number can be checked by hand.

Its records (``tiny_samples``, ``tiny_eval``), its spec (``BASE_SPEC``), the trainable routing
data of the run tests (``route_data`` with ``TINY_STUDENT``) and the JSONL writer and reader
they share.
The ``tiny`` fixture in ``tests/conftest.py`` writes them to a test's folder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

#: The repository root (tests/helpers/tiny.py -> ../../).
REPO = Path(__file__).resolve().parents[2]


def cand(teacher: str, final: str, confidence: float | None = 0.9, **kw: Any) -> dict[str, Any]:
    """One teacher's candidate answer of a sample record."""
    return {"teacher": teacher, "final": final, "confidence": confidence, **kw}


def label_record(i: int, prompt: str, reference: str | None, finals: dict[str, str],
                 scores: dict[str, int] | None = None, winner: str | None = None,
                 pools: dict[str, str] | None = None, failure: dict[str, Any] | None = None,
                 confidences: dict[str, float] | None = None, unit: str = "route",
                 **extra: Any) -> dict[str, Any]:
    """A sample record with one candidate per teacher in ``finals`` (and judge, pools, failure
    annotations when given)."""
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
    # One seed per cell keeps the pipeline tests small; training noise (default noise_seeds
    # [1, 2]) has its own tests (tests/test_matrix.py, tests/analysis/test_training_noise.py).
    "design": {"noise_seeds": []},
}


def tiny_samples() -> list[dict[str, Any]]:
    """Five training records, one or two per unit kind."""
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
    """Two evaluation records (a real and a synthetic source)."""
    return [
        {"id": "e1", "unit": "route", "prompt": "refund my money", "reference": "billing",
         "candidates": [cand("a", "billing", 0.8), cand("b", "shipping", 0.6)],
         "tags": {"source": "real"}},
        {"id": "e2", "unit": "esc", "prompt": "lawyer now", "reference": "ESCALATE",
         "tags": {"source": "synthetic"}},
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON lines to ``path`` and return it."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON object on each line of ``path`` (UTF-8), in file order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


#: The smallest causal student that still learns ``route_data`` in two epochs.
TINY_STUDENT: dict[str, Any] = {
    "config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300, "max_position": 96},
    "train": {"epochs": 2, "batch_size": 8, "lr": 5e-3, "max_len": 96}}
#: Billing words, shipping words and filler: ``route_data``'s vocabulary.
WORDS = ["invoice", "charge", "refund", "parcel", "courier", "late", "please", "help"]


def route_data(n_train: int = 40, n_eval: int = 30
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records whose label follows the words (billing words vs shipping words)."""
    rng = random.Random(0)

    def prompt(i: int) -> tuple[str, str]:
        words = rng.sample(WORDS, 4)
        bill = sum(w in ("invoice", "charge", "refund") for w in words)
        ship = sum(w in ("parcel", "courier", "late") for w in words)
        return f"ticket {i}: " + " ".join(words), "billing" if bill >= ship else "shipping"

    train: list[dict[str, Any]] = []
    for i in range(n_train):
        p, ref = prompt(i)
        other = "shipping" if ref == "billing" else "billing"
        train.append(label_record(i, p, ref, {"a": ref, "b": other}, scores={"a": 5, "b": 1},
                                  winner="a", pools={"a": "train", "b": "failure"},
                                  failure={"b": {"kind": "wrong_label", "correction": ref}}))
    ev: list[dict[str, Any]] = []
    for i in range(n_eval):
        p, ref = prompt(1000 + i)
        ev.append({"id": f"e{i}", "unit": "route", "prompt": p, "reference": ref,
                   "candidates": [{"teacher": "a", "final": ref, "confidence": 0.9},
                                  {"teacher": "b", "final": "billing", "confidence": 0.6}],
                   "tags": {"source": "real" if i % 3 == 0 else "synthetic"}})
    return train, ev
