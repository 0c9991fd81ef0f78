"""Rules about the ``teachers:`` and ``judge:`` sections that pydantic cannot state alone.

* the judge names a declared teacher (or declares its own provider block under a free name);
* every teacher, and the judge, has a price in ``costs.teachers``: an entry with prices, or an
  entry whose prices are all 0, which declares it free (a local model). Without this, a paid
  teacher would silently cost 0 in the ROI ledger.

Registered in :data:`harness.checks.experiment.RULES` on import (see ``harness/checks/__init__``).
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.checks.experiment import RULES
from harness.checks.registry import Context, problem
from harness.errors import Problem, did_you_mean
from harness.experiment.teachers import JUDGE_NAME

_FREE_HINT = ("add `costs.teachers.{name}: {{price_per_1k_prompt: ..., "
              "price_per_1k_completion: ...}}`, or all prices 0 to declare it free")


@RULES.rule("judge", "teachers")
def judge_names_a_teacher(s: Context) -> Iterator[Problem]:
    """``judge.teacher`` is a ``teachers:`` entry; an own-block judge does not shadow one."""
    judge, teachers = s["judge"], s["teachers"]
    if judge.teacher is not None and judge.teacher not in teachers:
        known = sorted(teachers)
        yield problem("judge.teacher", f"unknown teacher {judge.teacher!r}"
                      f"{did_you_mean(judge.teacher, known)} (declared: "
                      f"{', '.join(known) or 'none'})")
    if judge.config is not None and JUDGE_NAME in teachers:
        yield problem("judge.config", f"a judge with its own provider block is named "
                      f"{JUDGE_NAME!r}, which is also a teachers: entry; rename that teacher or "
                      f"use `judge.teacher: {JUDGE_NAME}`")


@RULES.rule("teachers", "costs")
def teachers_priced(s: Context) -> Iterator[Problem]:
    """Every teacher and the judge have an entry in ``costs.teachers`` (0 = declared free)."""
    priced = s["costs"].teachers
    for name in s["teachers"]:
        if name not in priced:
            yield problem(f"teachers.{name}", f"teacher {name!r} has no price: "
                          + _FREE_HINT.format(name=name))
    judge = s.sections.get("judge")
    if (judge is not None and judge.config is not None and JUDGE_NAME not in priced
            and not s["costs"].judge_cost_per_item):
        yield problem("judge.config", "the judge has no price: set `costs.judge_cost_per_item` "
                      "or " + _FREE_HINT.format(name=JUDGE_NAME))
