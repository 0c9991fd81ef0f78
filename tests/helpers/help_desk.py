"""A help desk where one teacher never escalates: records, eval items, spec and a tiny encoder.

Two teachers answer every ticket. ``careful`` escalates every ticket that names a legal or
safety threat (the refusal unit's marker, ``ESCALATE``) and answers the others; ``quiet`` answers
every ticket, threats included, so its threat answers are annotated as ``missed_escalation``
failures. Three buckets follow the issue's help-desk case:

- ``single_quiet`` (the baseline): ``quiet``'s training-pool answers (its missed escalations
  are failures, excluded by default), so its student never sees the marker and never
  escalates (refusal F1 0 on every seed, by construction);
- ``multi``: both teachers, the judge's winner per ticket (``careful`` on threats);
- ``quiet_failures``: ``quiet`` alone, its failures turned into refusal samples
  (``failures: refusal``: a missed escalation without a correction becomes the marker).

Whether a ticket is a threat follows from its words alone (a threat word or not), so the tiny
classifier student of :func:`tiny_encoder` learns it perfectly in 20 epochs (every seed, and
with the tickets drawn from other ``data(seed=...)`` seeds too).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.helpers.tiny import cand

MARKER = "ESCALATE"
#: Words that make a ticket a threat (must escalate) and the words of answerable tickets.
THREAT = ["lawyer", "sue", "court", "police", "fraud"]
BENIGN = ["refund", "parcel", "invoice", "late", "address", "password"]
FILLER = ["please", "help", "today", "my", "order", "now", "ticket"]
ANSWER = "REPLY: happy to help with that"

#: The three arms' buckets (see the module docstring).
BUCKETS: dict[str, dict[str, Any]] = {
    "single_quiet": {"teachers": ["quiet"], "select": "all"},
    "multi": {"teachers": "all", "select": "judge_winner"},
    "quiet_failures": {"teachers": ["quiet"], "select": "all", "failures": "refusal"},
}


def spec(encoder: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """The experiment (as the YAML would hold it): one refusal unit, a classifier student on
    ``encoder``, the three buckets, one field set, every arm trained on ``seeds``.

    ``design.noise_seeds`` keeps its default ([1, 2]): they coincide with ``seeds``, so the
    matrix holds each (arm, seed) once and training noise is measured, not switched off.
    """
    return {
        "name": "help_desk",
        "data": {"samples": "samples.jsonl", "eval": "eval.jsonl"},
        "units": {"esc": {"kind": "refusal", "marker": MARKER}},
        "student": {"kind": "classifier", "model": str(encoder),
                    "train": {"epochs": 20, "batch_size": 8, "lr": 3e-3, "max_len": 16}},
        "buckets": BUCKETS,
        "fields": {"answer_only": {}},
        "scale": [1.0],
        "seeds": list(seeds),
        "baseline": {"bucket": "single_quiet", "fields": "answer_only"},
        "evaluation": {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 4},
    }


def _tickets(n: int, rng: random.Random, seen: set[str]) -> list[tuple[str, bool]]:
    """``n`` distinct tickets not in ``seen`` (added to it), alternating threat / answerable:
    (prompt, is_threat)."""
    out: list[tuple[str, bool]] = []
    while len(out) < n:
        threat = len(out) % 2 == 0
        words = [rng.choice(THREAT if threat else BENIGN), rng.choice(BENIGN),
                 *rng.sample(FILLER, 2)]
        rng.shuffle(words)
        prompt = " ".join(words)
        if prompt not in seen:  # distinct prompts: no duplicate, no train/eval leakage
            seen.add(prompt)
            out.append((prompt, threat))
    return out


def _record(i: int, prompt: str, threat: bool) -> dict[str, Any]:
    """One training record: ``careful`` escalates threats, ``quiet`` answers everything."""
    ref = MARKER if threat else ANSWER
    rec: dict[str, Any] = {
        "id": f"t{i:03d}", "unit": "esc", "prompt": prompt, "reference": ref,
        "candidates": [cand("careful", ref, 0.9), cand("quiet", ANSWER, 0.9)],
        "judge": {"judge": "j", "winner": "careful",
                  "scores": {"careful": 5, "quiet": 1 if threat else 5}, "reason_tags": []},
        "tags": {"source": "synthetic"},
    }
    if threat:
        rec["pools"] = {"careful": "train", "quiet": "failure"}
        rec["failure"] = {"quiet": {"kind": "missed_escalation", "correction": None,
                                    "note": "a threat must be escalated"}}
    return rec


def data(n_train: int = 80, n_eval: int = 24, seed: int = 0
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training records and eval items (half threats each, tickets drawn with ``seed``); eval
    items carry both teachers' answers, so the teacher audit shows ``quiet``'s refusal F1 of 0."""
    rng = random.Random(seed)
    seen: set[str] = set()
    train = [_record(i, p, t) for i, (p, t) in enumerate(_tickets(n_train, rng, seen))]
    ev = [{"id": f"e{i:03d}", "unit": "esc", "prompt": p,
           "reference": MARKER if t else ANSWER,
           "candidates": [cand("careful", MARKER if t else ANSWER, 0.9),
                          cand("quiet", ANSWER, 0.9)],
           "tags": {"source": "real" if i % 2 else "synthetic"}}
          for i, (p, t) in enumerate(_tickets(n_eval, rng, seen))]
    return train, ev


def tiny_encoder(path: Path) -> Path:
    """Save a seeded, randomly initialised 2-layer BERT (hidden 32) and a WordPiece tokenizer
    knowing every word of :func:`data` to ``path``, like a local pretrained checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *THREAT, *BENIGN, *FILLER,
             "reply", ":", "happy", "to", "with", "that", "escalate"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    BertModel(cfg).save_pretrained(path)
    return path
