"""How far the LLM judge can be trusted, measured over a run: position bias, self-preference and
agreement with the reference judge (Cohen's κ). :func:`judge_report` reads the verdicts
:meth:`~harness.teachers.judge.LLMJudge.judge_all` gave (both orders recorded) and the reference
judge's rights; the ``generate`` summary prints :meth:`JudgeReport.lines`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.teachers.judge import failed_reading

if TYPE_CHECKING:
    from harness.teachers.judge import LLMJudge


@dataclass
class Agreement:
    """The LLM judge against the reference judge on records with a reference.

    Each answered candidate of a record whose LLM verdict was kept (position-consistent) and
    whose unit kind checks answers against references is one pair of ratings:

    * the judge *accepts* the candidate when its score (averaged over the orders) lies above
      the middle of the scale, ``score > (low + high) / 2``; a candidate the judge gave no
      score is accepted when it is the judge's winner;
    * the reference *accepts* it when the unit kind scores it right against the reference.

    ``kappa`` is Cohen's κ of the two (:func:`sklearn.metrics.cohen_kappa_score`), None when it
    is undefined (no pair, or both raters gave one and the same rating to every pair).
    """

    pairs: int = 0  # candidates rated by both
    agree: int = 0  # of them, rated alike
    kappa: float | None = None
    winners: int = 0  # kept verdicts with a winner, on records with a reference
    winners_right: int = 0  # of them, a winner the reference calls right
    inconsistent: int = 0  # records with a reference left out: position-inconsistent verdict


@dataclass
class JudgeReport:
    """What a run says about the LLM judge (see :func:`judge_report`).

    Position bias counts only records judged in two orders whose both readings were usable.
    Self-preference is measured when the judge's model is one of the teachers
    (``self_teacher``): how often the judge's kept verdict picks that teacher among the records
    where it is a candidate, against the other teachers' rate; and, where a reference exists,
    how often it picks that teacher's answer when the reference calls it wrong, against the
    same rate for the other teachers.
    """

    judge: str
    self_teacher: str | None = None
    eval_records: int = 0  # eval records the LLM judge gave a verdict (judge.on_eval)
    judged: int = 0  # records judged in two orders, both readings usable
    flipped: int = 0  # of them, winners differ between the orders (counted as ties)
    readings_decided: int = 0  # usable readings that named a winner
    first_won: int = 0  # of them, the winner was shown first
    first_expected: float = 0.0  # sum of 1/candidates over those readings: no position bias
    self_records: int = 0
    self_wins: int = 0
    other_records: int = 0  # candidate places of the other teachers
    other_wins: int = 0
    self_wrong: int = 0  # self's answers the reference calls wrong
    self_wrong_wins: int = 0
    other_wrong: int = 0
    other_wrong_wins: int = 0
    agreement: dict[str, Agreement] = field(default_factory=dict)  # "training" / "eval"

    @property
    def flip_rate(self) -> float | None:
        """Share of :attr:`judged` records whose verdict flipped with the order."""
        return self.flipped / self.judged if self.judged else None

    def lines(self) -> list[str]:
        """The report as lines for the ``generate`` summary."""
        out: list[str] = []
        if self.judged:
            out.append(f"position bias: {self.flipped} of {self.judged} record(s) judged in both "
                       f"orders flipped their winner ({_pct(self.flipped, self.judged)}; kept as "
                       f"ties, no winner); the first candidate won {self.first_won} of "
                       f"{self.readings_decided} decided reading(s) "
                       f"({_pct(self.first_won, self.readings_decided)}, "
                       f"{_pct(self.first_expected, self.readings_decided)} without bias)")
        if self.self_teacher is not None and self.self_records:
            line = (f"self-preference (the judge is teacher {self.self_teacher}): picks it in "
                    f"{_pct(self.self_wins, self.self_records)} of its {self.self_records} "
                    f"record(s), the other teachers in "
                    f"{_pct(self.other_wins, self.other_records)}")
            if self.self_wrong or self.other_wrong:
                line += (f"; answers the reference calls wrong: picks its own in "
                         f"{_pct(self.self_wrong_wins, self.self_wrong)} "
                         f"({self.self_wrong_wins} of {self.self_wrong}), the others' in "
                         f"{_pct(self.other_wrong_wins, self.other_wrong)} "
                         f"({self.other_wrong_wins} of {self.other_wrong})")
            out.append(line)
        elif self.self_teacher is not None and self.judged:
            out.append(f"self-preference (the judge is teacher {self.self_teacher}): no kept "
                       "verdict over its answer and another to measure it on")
        for split, a in self.agreement.items():
            if not a.pairs and not a.inconsistent:
                continue
            kappa = f"{a.kappa:.2f}" if a.kappa is not None else "undefined"
            out.append(f"agreement with the reference ({split} records): Cohen's kappa {kappa} "
                       f"over {a.pairs} candidate(s), {_pct(a.agree, a.pairs)} alike (accepted: "
                       f"score above the scale's middle); the winner is right in "
                       f"{a.winners_right} of {a.winners}; {a.inconsistent} position-"
                       "inconsistent record(s) left out")
        return out


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def judge_report(judge: LLMJudge, verdicts: Sequence[Mapping[str, Any] | None],
                 rights: Sequence[Mapping[str, bool] | None],
                 splits: Sequence[str]) -> JudgeReport:
    """Measure the LLM judge over a run.

    Args:
        judge: the judge (its name, scale and ``self_teacher``).
        verdicts: the LLM judge's verdict per record (:meth:`LLMJudge.judge_all`; None where it
            did not judge), before any fallback to the reference judge.
        rights: per record, teacher -> whether the reference judge calls its answer right
            (:func:`apply_reference`), or None without a checked reference.
        splits: per record, ``"training"`` or ``"eval"`` (agreement is reported per split).
    """
    from sklearn.metrics import cohen_kappa_score

    rep = JudgeReport(judge=judge.name, self_teacher=judge.self_teacher)
    low, high = judge.scale
    middle = (low + high) / 2
    ratings: dict[str, tuple[list[bool], list[bool]]] = {}
    for v, right, split in zip(verdicts, rights, splits, strict=True):
        if v is None:
            continue
        rep.eval_records += split == "eval"
        readings = v.get("orders") or []
        if len(readings) > 1 and v.get("position_consistent") is not None:
            rep.judged += 1
            rep.flipped += v["position_consistent"] is False
            for r in readings:
                if r["winner"] is not None:
                    rep.readings_decided += 1
                    rep.first_won += r["winner"] == r["order"][0]
                    rep.first_expected += 1 / len(r["order"])
        kept = v.get("position_consistent") is not False and not failed_reading(v)
        candidates = v["order"]
        if kept and len(candidates) > 1 and rep.self_teacher in candidates:
            for t in candidates:
                mine = t == rep.self_teacher
                won = v["winner"] == t
                if mine:
                    rep.self_records, rep.self_wins = rep.self_records + 1, rep.self_wins + won
                else:
                    rep.other_records, rep.other_wins = rep.other_records + 1, rep.other_wins + won
                if right is not None and right.get(t) is False:
                    if mine:
                        rep.self_wrong += 1
                        rep.self_wrong_wins += won
                    else:
                        rep.other_wrong += 1
                        rep.other_wrong_wins += won
        if right is None or not right:
            continue
        agr = rep.agreement.setdefault(split, Agreement())
        if not kept or failed_reading(v):
            agr.inconsistent += v.get("position_consistent") is False
            continue
        judge_says, ref_says = ratings.setdefault(split, ([], []))
        for t, ok in right.items():
            score = v["scores"].get(t)
            judge_says.append(score > middle if score is not None else v["winner"] == t)
            ref_says.append(ok)
        if v["winner"] is not None:
            agr.winners += 1
            agr.winners_right += bool(right.get(v["winner"]))
    for split, (judge_says, ref_says) in ratings.items():
        agr = rep.agreement[split]
        agr.pairs = len(judge_says)
        agr.agree = sum(a == b for a, b in zip(judge_says, ref_says, strict=True))
        if len(set(judge_says) | set(ref_says)) > 1:
            with warnings.catch_warnings():  # an undefined kappa (0/0) warns: reported as None
                warnings.simplefilter("ignore")
                kappa = float(cohen_kappa_score(ref_says, judge_says, labels=[False, True]))
            agr.kappa = kappa if math.isfinite(kappa) else None
    return rep
