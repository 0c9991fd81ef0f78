"""The decision's one-sentence reason and next action (``gate.summary``), checked on simulated
runs whose truth is known: students at chance (with teachers that know the task, and with
teachers that do not), a chosen arm at chance on a unit another arm learns, saturated students,
identical students, a real-vs-synthetic gap that scale does not close, evidence too thin to
decide, agreement with the teacher rising while quality does not, and a unit that does not
matter. Each test asserts the decision, what decided it, that the sentences name the right
unit / arm / kind of action, and that every number the reason quotes is one the analysis
computed (rounded as quoted)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.analyse import analyse
from harness.cli import main
from harness.evaluate.units import PER_ITEM, teacher_audit
from harness.store.folder import RunFolder
from tests.helpers.synth import spec_dict, write_run

INTENTS = ["billing", "shipping", "technical", "account"]
TOPICS = ["orders", "returns", "payments", "other"]
#: Two 4-label units: every constant answer and uniform guessing score exactly 0.25 on items
#: whose references cycle through the labels (synth.write_run), so "at chance" is 0.25.
UNITS = {"intent": {"kind": "label", "labels": INTENTS, "answer_marker": "Answer:"},
         "topic": {"kind": "label", "labels": TOPICS, "answer_marker": "Answer:"}}
#: Eval items per unit: with one seed, the one-sided 1 % upper bound of a 0.25-vs-0.25 margin
#: is ~+0.05, so ``chance_margin`` 0.1 can be decided (the default 0.05 cannot: undecided).
N = 400
DECIDABLE = {"chance_margin": 0.1}
#: Small bootstraps: the scenarios are far from every threshold, and the file must stay fast.
BOOT = {"n_boot": 50, "curve_boot": 20}
#: Words that would claim an effect of one arm over another.
EFFECT_WORDS = re.compile(r"\b(better|beats?|outperform\w*|improv\w*|higher|gains? over)\b",
                          re.I)


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    """Exactly ``round(p * n)`` ones, shuffled: a metric value without sampling noise."""
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def split(p_syn: float, p_real: float, seed: int) -> np.ndarray:
    """Correctness with accuracy exactly ``p_syn`` on synthetic (even) items and ``p_real`` on
    real (odd) ones."""
    out = np.empty(N, dtype=int)
    out[0::2], out[1::2] = exact(p_syn, N // 2, seed), exact(p_real, N // 2, seed + 1)
    return out


def write_audit(run_dir: Path, spec: dict[str, Any], answers: dict[str, np.ndarray]) -> None:
    """``teacher_audit.json`` for teacher ``t`` answering each unit's items right where
    ``answers`` is 1 (else the next label, as synth.write_run scores its candidates), scored by
    the same function the run stage uses; synth.write_run itself writes an empty audit."""
    audit = {}
    for unit, correct in answers.items():
        labels = spec["units"][unit]["labels"]
        items = [{"id": f"e{k:04d}", "unit": unit, "reference": labels[k % len(labels)],
                  "tags": {"source": "synthetic"},
                  "candidates": [{"teacher": "t", "confidence": 0.9,
                                  "final": labels[(k + (0 if ok else 1)) % len(labels)]}]}
                 for k, ok in enumerate(correct)]
        reports = teacher_audit(spec["units"][unit], items, ["source"])
        for rep in reports.values():
            for key in PER_ITEM:
                rep.pop(key, None)
        audit[unit] = reports
    RunFolder(run_dir).write_teacher_audit(audit)


def run_of(tmp_path: Path, name: str, buckets: list[str], scales: list[float],
           cells: dict[tuple[Any, ...], dict[str, np.ndarray]], units: dict[str, Any] | None = None,
           teacher: float | None = None, **kw: Any) -> Path:
    """A run folder: ``kw`` goes to spec_dict (stop, gate) and write_run (tags); ``teacher``:
    teacher ``t``'s exact accuracy on every unit (recorded as candidates and audited)."""
    spec_kw = {k: kw.pop(k) for k in ("stop", "gate") if k in kw}
    spec = spec_dict(buckets, ["plain"], scales, units=units or UNITS, **spec_kw)
    spec["name"] = name
    answers = ({u: exact(teacher, N, 70 + i) for i, u in enumerate(spec["units"])}
               if teacher is not None else None)
    run_dir = write_run(tmp_path, spec, cells, **kw,
                        teacher_answers={u: a.tolist() for u, a in answers.items()}
                        if answers else None)
    if answers:
        write_audit(run_dir, spec, answers)
    return run_dir


def numbers(text: str) -> list[str]:
    """The decimal numbers a sentence quotes (not the scales inside arm labels like x0.5)."""
    return re.findall(r"(?<![\w.])[-+]?\d+\.\d+", text)


def assert_quoted_from(text: str, computed: Iterable[str]) -> None:
    """Every decimal number in ``text`` is one of ``computed`` (the analysis' values, formatted
    as the summary formats them); and the text quotes at least one."""
    allowed = set(computed)
    found = numbers(text)
    assert found, text
    assert set(found) <= allowed, (found, sorted(allowed), text)


def chance_numbers(out: dict[str, Any]) -> set[str]:
    """The against-chance rows' values, chance levels and audited teacher scores, to 2 d.p."""
    rows = out["gate"]["vs_chance"]
    return ({f"{r['value']:.2f}" for r in rows} | {f"{r['chance']:.2f}" for r in rows}
            | {f"{v:.2f}" for r in rows for v in r["teachers"].values()})


def signal(out: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in out["signals"] if s["signal"] == name)


def at_chance_run(tmp_path: Path, teacher: float) -> Path:
    """Three arms, every one exactly at chance (0.25) on both units, on N items."""
    cells = {(b, "plain", 1.0): {"intent": exact(0.25, N, i), "topic": exact(0.25, N, 5 + i)}
             for i, b in enumerate(["base", "b1", "b2"])}
    return run_of(tmp_path, "chance", ["base", "b1", "b2"], [1.0], cells, teacher=teacher,
                  stop=DECIDABLE)


# -- at chance -------------------------------------------------------------------------------

def test_students_at_chance_with_able_teachers_point_at_the_student(tmp_path):
    out = analyse(at_chance_run(tmp_path, teacher=0.9), **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["decision"] == "STOP" and summary["decided_by"] == "at_chance"
    assert signal(out, "at_chance")["fires"]
    arm = gate["cell"]["arm"]
    assert summary["reason"].startswith(f"The chosen student {arm} learned nothing measurable")
    assert "intent (accuracy 0.25 vs chance 0.25)" in summary["reason"]
    assert "topic (accuracy 0.25 vs chance 0.25)" in summary["reason"]
    assert_quoted_from(summary["reason"], chance_numbers(out))
    # no arm learns either unit and the teacher scores 0.90: the student is the limit, one
    # clause for both units, and the teachers are not blamed
    nxt = summary["next_action"]
    assert "larger or pretrained student" in nxt and "intent or topic" in nxt
    assert "teachers" not in nxt and "compose" not in nxt
    assert all(r["teachers"] == {"t": 0.9} for r in gate["vs_chance"])


def test_teachers_at_chance_are_blamed_before_the_student(tmp_path):
    out = analyse(at_chance_run(tmp_path, teacher=0.27), **BOOT)
    summary = out["gate"]["summary"]
    assert out["gate"]["decision"] == "STOP" and summary["decided_by"] == "at_chance"
    nxt = summary["next_action"]
    assert "fix the teachers or prompts" in nxt and "larger or pretrained" not in nxt
    for unit in UNITS:
        assert f"the teachers themselves score 0.27 on {unit} (chance 0.25)" in nxt.lower()
    assert_quoted_from(nxt, chance_numbers(out))


def test_the_arm_that_learns_the_chosen_arms_chance_unit_is_named(tmp_path):
    # A: intent saturated, topic at chance (mean 0.625); B: intent 0.5, topic 0.7 (mean 0.6):
    # the gate chooses A on the mean, and A learned nothing on topic, which B learns
    cells = {("A", "plain", 1.0): {"intent": np.ones(N, dtype=int),
                                   "topic": exact(0.25, N, 1)},
             ("B", "plain", 1.0): {"intent": exact(0.5, N, 2), "topic": exact(0.7, N, 3)}}
    out = analyse(run_of(tmp_path, "compose", ["A", "B"], [1.0], cells, stop=DECIDABLE),
                  **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["cell"]["arm"] == "A/plain/x1"
    assert gate["decision"] == "STOP" and summary["decided_by"] == "at_chance"
    assert "A/plain/x1" in summary["reason"] and "topic" in summary["reason"]
    assert "intent" not in summary["reason"]  # A learned intent
    assert summary["next_action"] == ("Arm B/plain/x1 does learn topic (0.70): compose the next "
                                      "round from its bucket and fields.")
    assert_quoted_from(summary["reason"] + " " + summary["next_action"], chance_numbers(out))


def test_a_unit_that_does_not_matter_is_not_named(tmp_path):
    # stop.units = intent: A is at chance on intent (no arm learns it) and on topic (B does),
    # but only intent decides, and only intent is named
    cells = {("A", "plain", 1.0): {"intent": exact(0.25, N, 1), "topic": exact(0.25, N, 2)},
             ("B", "plain", 1.0): {"intent": exact(0.25, N, 3), "topic": exact(0.9, N, 4)}}
    out = analyse(run_of(tmp_path, "units", ["A", "B"], [1.0], cells,
                         stop={**DECIDABLE, "units": ["intent"]}), **BOOT)
    summary = out["gate"]["summary"]
    assert out["gate"]["decision"] == "STOP" and summary["decided_by"] == "at_chance"
    assert "intent" in summary["reason"] and "topic" not in summary["reason"]
    assert "topic" not in summary["next_action"] and "B/plain" not in summary["next_action"]
    assert "larger or pretrained student" in summary["next_action"]


# -- saturated and identical students ----------------------------------------------------------

def saturated_run(tmp_path: Path, gate: dict[str, Any] | None) -> Path:
    """Three seeds each: the baseline at 0.70 / 0.72, ``best`` right on every item of every
    seed."""
    cells: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for s in range(3):
        cells[("base", "plain", 1.0, s)] = {"intent": exact(0.7, N, s),
                                            "topic": exact(0.72, N, 10 + s)}
        cells[("best", "plain", 1.0, s)] = {"intent": np.ones(N, dtype=int),
                                            "topic": np.ones(N, dtype=int)}
    return run_of(tmp_path, "saturated", ["base", "best"], [1.0], cells, gate=gate)


def test_a_saturated_student_without_minimums_asks_for_them(tmp_path):
    out = analyse(saturated_run(tmp_path, None), **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["cell"]["arm"] == "best/plain/x1" and gate["decision"] == "CONTINUE"
    assert summary["decided_by"] == "none"
    assert summary["reason"] == ("best/plain/x1 learns every unit that matters and nothing says "
                                 "stop.")
    assert "gate.min_metric" in summary["next_action"] and "Ship" not in summary["next_action"]


def test_a_saturated_student_meeting_its_minimums_is_shipped(tmp_path):
    out = analyse(saturated_run(tmp_path, {"min_metric": {"intent": {"accuracy": 0.9}}}),
                  **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["decision"] == "CONTINUE" and summary["decided_by"] == "none"
    assert gate["reasons"][-1] == "quality minimums met: intent.accuracy = 1.000 >= 0.9"
    assert summary["reason"].startswith("best/plain/x1 meets the quality minimums")
    assert summary["next_action"].startswith("Ship best/plain/x1")


@pytest.mark.parametrize("minimum", [None, 0.7])
def test_identical_students_claim_no_effect(tmp_path, minimum):
    intent, topic = exact(0.8, N, 1), exact(0.75, N, 2)
    cells = {(b, "plain", 1.0): {"intent": intent, "topic": topic}
             for b in ["base", "b1", "b2"]}
    gate_spec = {"min_metric": {"intent": {"accuracy": minimum}}} if minimum else None
    out = analyse(run_of(tmp_path, "same", ["base", "b1", "b2"], [1.0], cells, gate=gate_spec),
                  **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["decision"] == "CONTINUE" and summary["decided_by"] == "none"
    chosen = gate["cell"]["arm"]
    others = sorted({"base/plain/x1", "b1/plain/x1", "b2/plain/x1"} - {chosen})
    assert sorted(gate["selection"]["tied"]) == others
    # the reason names the tie as a tie: which of them was chosen is run order
    assert f"it ties with {', '.join(gate['selection']['tied'])}" in summary["reason"]
    assert "run order, not evidence" in summary["reason"]
    for text in summary.values():
        assert not EFFECT_WORDS.search(text), text
    assert numbers(summary["reason"]) == []  # no gain, delta or curve to quote
    if minimum:
        assert summary["next_action"].startswith(f"Ship {chosen}")
    else:
        assert "gate.min_metric" in summary["next_action"]


# -- unmet minimums: the learning curve says whether to buy more -------------------------------

@pytest.mark.parametrize(("values", "min_gain", "state"), [
    ((0.55, 0.70, 0.82), 0.01, "quiet"),      # rising: +0.07 predicted, surely above 0.01
    ((0.80, 0.84, 0.85), 0.03, "fires"),      # flat, surely below 0.03
    ((0.80, 0.84, 0.85), 0.01, "undecided"),  # flat, but 400 items cannot exclude 0.01
])
def test_unmet_minimums_buy_more_only_while_the_curve_rises(tmp_path, values, min_gain, state):
    # diminishing_returns is not blocking here, so a flat curve CONTINUEs: the summary must not
    # then say "the curves still rise"
    scales = [0.25, 0.5, 1.0]
    cells = {("judged", "plain", s): {"intent": exact(v, N, i)}
             for i, (s, v) in enumerate(zip(scales, values, strict=True))}
    out = analyse(run_of(tmp_path, "curve", ["judged"], scales, cells,
                         units={"intent": UNITS["intent"]},
                         stop={"min_gain_next_doubling": min_gain},
                         gate={"min_metric": {"intent": {"accuracy": 0.95}},
                               "blocking_signals": ["cost"]}), **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    returns = signal(out, "diminishing_returns")
    assert returns["state"] == state, returns
    assert gate["decision"] == "CONTINUE" and summary["decided_by"] == "none"
    assert gate["cell"]["unmet"] and "quality minimums are not met yet" in summary["reason"]
    fit = next(c for c in out["learning_curves"] if c["unit"] == "intent")["fit"]
    assert_quoted_from(summary["reason"], [f"{fit['next_doubling_gain']:+.3f}"])
    nxt = summary["next_action"]
    if state == "quiet":
        assert nxt == ("Buy the next doubling of judged/plain samples and rerun; the curves "
                       "still rise.")
        return
    assert "still rise" not in nxt and "Buy the next doubling" not in nxt
    if state == "fires":
        assert nxt.startswith("More samples of this kind will not reach the minimums")
    else:
        assert nxt.startswith("The learning curve cannot tell yet") and returns["action"]
        assert returns["action"] in nxt


# -- distribution gap, teacher bias, inconclusive ---------------------------------------------

def test_a_gap_that_scale_does_not_close_asks_for_real_prompts(tmp_path):
    # intent: synthetic rises with scale, real stays at 0.45 (a gap at every scale); topic: a
    # small gap whose interval covers 0
    tags = [{"source": "real" if k % 2 else "synthetic"} for k in range(N)]
    scales = [0.25, 0.5, 1.0]
    cells = {("judged", "plain", s): {"intent": split(0.6 + 0.3 * s, 0.45, i),
                                      "topic": split(0.85, 0.8, 20 + i)}
             for i, s in enumerate(scales)}
    out = analyse(run_of(tmp_path, "gap", ["judged"], scales, cells, tags=tags), **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["decision"] == "SHIFT_TO_REAL_DATA"
    assert summary["decided_by"] == "distribution_gap"
    per = signal(out, "distribution_gap")["per_unit"]
    assert per["intent"]["closes"] is False and per["topic"]["closes"] is None
    g = per["intent"]
    assert (f"intent ({g['metric']} {g['gap']:.2f} lower, 95% CI {g['ci_low']:.2f} to "
            f"{g['ci_high']:.2f})") in summary["reason"]
    assert summary["reason"].count("0.45 lower") == 1  # 0.9 synthetic vs 0.45 real at x1
    assert "topic" not in summary["reason"]
    assert_quoted_from(summary["reason"],
                       [f"{g[k]:.2f}" for k in ("gap", "ci_low", "ci_high")])
    assert summary["next_action"].startswith("Collect real prompts for intent (tag them "
                                             "source=real)")
    assert "topic" not in summary["next_action"]


def test_agreement_rising_without_quality_is_not_called_copying(tmp_path):
    # teacher_bias blocking; the student's accuracy is 0.80 at both scales, while its errors
    # move from disjoint with the teacher's to half of them: agreement 0.60 -> 0.80, and no
    # copied-error excess (it repeats half of the teacher's errors, under chance)
    teacher = np.ones(N, dtype=int)
    teacher[:80] = 0
    small, large = np.ones(N, dtype=int), np.ones(N, dtype=int)
    small[80:160] = 0
    large[40:120] = 0
    spec = spec_dict(["judged"], ["plain"], [0.5, 1.0], units={"intent": UNITS["intent"]},
                     gate={"blocking_signals": ["teacher_bias"]})
    run_dir = write_run(tmp_path, spec, {("judged", "plain", 0.5): {"intent": small},
                                         ("judged", "plain", 1.0): {"intent": large}},
                        teacher_answers={"intent": teacher.tolist()})
    out = analyse(run_dir, **BOOT)
    bias, summary = signal(out, "teacher_bias"), out["gate"]["summary"]
    assert bias["fires"] and bias["copiers"] == []
    assert out["gate"]["decision"] == "STOP" and summary["decided_by"] == "teacher_bias"
    assert summary["reason"].startswith("The student grows more like its teachers with scale, "
                                        "not more correct: judged/plain intent vs t: "
                                        "agreement 0.60 -> 0.80")
    assert "no arm copies" not in summary["reason"]
    for x in numbers(summary["reason"]):
        assert x in bias["evidence"], (x, bias["evidence"])


def test_inconclusive_says_what_would_decide(tmp_path):
    # 100 items, one seed, the default chance_margin 0.05: intent at 0.30 against chance 0.25
    # can be told neither above chance nor within the margin
    cells = {(b, "plain", 1.0): {"intent": exact(0.3, 100, i), "topic": exact(0.9, 100, 4 + i)}
             for i, b in enumerate(["base", "b1"])}
    out = analyse(run_of(tmp_path, "thin", ["base", "b1"], [1.0], cells), **BOOT)
    gate, summary = out["gate"], out["gate"]["summary"]
    assert gate["decision"] == "INCONCLUSIVE" and summary["decided_by"] == "inconclusive"
    assert signal(out, "at_chance")["state"] == "undecided"
    assert summary["reason"] == ("Nothing says stop, but the evidence cannot tell yet whether "
                                 "at_chance would.")
    assert summary["next_action"].startswith("To decide: ")
    assert gate["actions"] and gate["actions"][0] in summary["next_action"]
    assert "unit intent" in summary["next_action"] and "eval items" in summary["next_action"]


# -- harness gate ---------------------------------------------------------------------------

def test_harness_gate_prints_why_and_next(tmp_path, capsys):
    run_dir = at_chance_run(tmp_path, teacher=0.9)
    assert main(["gate", str(run_dir)]) == 3
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(RunFolder(run_dir).analysis.read_text())["gate"]["summary"]
    assert lines[0] == "DECISION: STOP"
    assert lines[1] == f"  why: {summary['reason']}"
    assert lines[2] == f"  next: {summary['next_action']}"
    assert main(["gate", str(run_dir), "--json"]) == 3
    record = json.loads(capsys.readouterr().out)
    assert record["summary"] == summary and record["summary"]["decided_by"] == "at_chance"
