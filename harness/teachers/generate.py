"""The generate stage: prompts -> teachers -> parsed candidates -> judge -> sample repository.

:func:`generate` asks every teacher every prompt (one :meth:`Teacher.complete_many` per teacher,
with a progress bar showing tokens and cost so far), turns each completion into a candidate
(:mod:`harness.teachers.parse`), routes answers that contradict a gold reference to the failure
pool and has the LLM judge score the training records (:mod:`harness.teachers.judge`), then
writes ``data.samples`` and, when eval prompts are given, ``data.eval`` (teacher candidates for
the teacher audit), each atomically. A call that failed (rate limits, timeouts, 5xx, connection
or auth errors, a stopped teacher) is no answer: the prompt stays unanswered by that teacher
(:mod:`harness.teachers.unanswered`), with no candidate, no failure-pool record and nothing for
the judge or the audit, and :func:`write` refuses to write such a result unless asked for partial
data. The teachers it is given are expected to be cached (:mod:`harness.teachers.cache`): a
rerun, or a run after an interruption, pays only for what was never answered. Each teacher's
calls of this run are counted in one :class:`~harness.teachers.tally.TeacherTally` (by the cache
for a cached teacher, else here); the money is computed from ``costs.teachers`` here, where the
prices are known.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.models import Experiment
from harness.fsutil import atomic_write
from harness.teachers.base import Completion, Teacher
from harness.teachers.cache import CachedTeacher
from harness.teachers.inputs import PromptItem
from harness.teachers.judge import (
    SKIPPED_AGREE,
    JudgeItem,
    LLMJudge,
    agreement,
    agreement_verdict,
    apply_reference,
    reference_verdict,
)
from harness.teachers.judge_report import JudgeReport, judge_report
from harness.teachers.parse import Outcome, candidate_from
from harness.teachers.prompts import build_request
from harness.teachers.redact import redact
from harness.teachers.tally import TeacherTally
from harness.teachers.unanswered import (
    FileName,
    Unanswered,
    file_sha256,
    sidecar_path,
    write_sidecar,
)

#: A teacher's prices: per 1,000 prompt tokens and per 1,000 completion tokens (``costs.currency``).
Price = tuple[float, float]


@dataclass
class GenerateResult:
    """The records written and the per-teacher tallies (teachers first, then the judge)."""

    samples: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    stats: list[TeacherTally]
    prices: dict[str, Price] = field(default_factory=dict)  # by tally name (judge:<name> too)
    outcomes: Counter[str] = field(default_factory=Counter)  # "<teacher>:<pool or failure kind>"
    judge_asked: int = 0  # training records sent to the LLM judge
    judge_skipped: int = 0  # training records it skipped (judge.when: disagreement, agreement)
    unanswered: list[Unanswered] = field(default_factory=list)  # failed calls, per teacher
    dropped: list[str] = field(default_factory=list)  # training ids no teacher answered
    # the LLM judge measured over the run: position bias, self-preference, agreement with the
    # references (None without an LLM judge, or when it judged nothing)
    judge_report: JudgeReport | None = None

    @property
    def complete(self) -> bool:
        """Whether every teacher answered every prompt (a failed call leaves it unanswered)."""
        return not self.unanswered

    def cost(self, tally: TeacherTally) -> tuple[float, float]:
        """``(paid, total)`` of one of :attr:`stats`, in ``costs.currency``: ``paid`` counts only
        calls answered in this run (cache misses), ``total`` also the cached ones, i.e. what the
        written samples cost."""
        price = self.prices.get(tally.name, (0.0, 0.0))
        return tally.cost(*price), tally.cost(*price, with_cached=True)


def _price(exp: Experiment, name: str) -> Price:
    """The prices of teacher (or judge) ``name``: its batch prices when it sends its calls
    through the batch API (``batch: true``), else its synchronous ones."""
    cost = exp.costs.teachers.get(name)
    if cost is None:
        return (0.0, 0.0)
    spec = exp.teachers.get(name) or (exp.judge.config if exp.judge is not None
                                      and exp.judge.name == name else None)
    if getattr(spec, "batch", False):
        return cost.batch_prices()
    return (cost.price_per_1k_prompt, cost.price_per_1k_completion)


def ask(teacher: Teacher, name: str, requests: Sequence[Any], price: Price,
        tally: TeacherTally, *, progress: bool, currency: str = "USD") -> list[Completion]:
    """Every request answered by one teacher, counted in ``tally`` (a cached teacher counts
    into it itself; any other is counted here), with a progress bar (calls, tokens, cost so far,
    cache hits). Providers may call back from several threads, hence the lock."""
    from tqdm import tqdm

    counted = False  # a cached teacher counts its hits and misses itself
    if isinstance(teacher, CachedTeacher):
        teacher, counted = teacher.counting_into(tally), True
    out: list[Completion | None] = [None] * len(requests)
    lock = threading.Lock()
    t0 = time.perf_counter()
    with tqdm(total=len(requests), desc=name, unit="call", disable=not progress,
              dynamic_ncols=True) as bar:
        def done(i: int, c: Completion) -> None:
            with lock:
                out[i] = c
                if not counted:
                    tally.add(c)
                bar.update(1)
                tokens = tally.total_prompt_tokens + tally.total_completion_tokens
                bar.set_postfix_str(f"{tokens:,} tok, "
                                    f"{tally.cost(*price, with_cached=True):.4f} {currency}, "
                                    f"{tally.cache_hits} cached", refresh=False)

        teacher.complete_many(list(requests), done)
    tally.wall_seconds += time.perf_counter() - t0
    missing = [i for i, c in enumerate(out) if c is None]
    for i in missing:  # a provider that broke its contract: a failure, never a crash
        out[i] = Completion(text=None, error="error", error_detail="the provider gave no answer")
        tally.add(out[i])  # type: ignore[arg-type]
    return [c for c in out if c is not None]


def _record(item: PromptItem, outcomes: Mapping[str, Outcome], judge: dict[str, Any] | None,
            round_: int) -> dict[str, Any]:
    """One record of the data contract (failure details only for failure-pool candidates)."""
    rec: dict[str, Any] = {"id": item.id, "unit": item.unit, "prompt": item.prompt,
                           "reference": item.reference,
                           "candidates": [o.candidate for o in outcomes.values()],
                           "judge": judge,
                           "pools": {t: o.pool for t, o in outcomes.items()},
                           "failure": {t: o.failure for t, o in outcomes.items()
                                       if o.pool == "failure" and o.failure is not None},
                           "tags": item.tags, "round": round_}
    return rec


def generate(exp: Experiment, train: Sequence[PromptItem], evals: Sequence[PromptItem],
             teachers: Mapping[str, Teacher], judge: LLMJudge | None, *,
             progress: bool = True, partial: bool = False) -> GenerateResult:
    """Ask, parse, judge and assemble (nothing is written; see :func:`write`).

    A failed call leaves its prompt unanswered by that teacher (:attr:`GenerateResult.unanswered`):
    the record lists only the teachers that answered, and a training prompt no teacher answered
    has no record (:attr:`GenerateResult.dropped`). Without ``partial``, an incomplete result is
    not judged by the LLM judge (it will not be written, and a verdict over a record missing
    candidates would be paid again once they are there); the reference judge still applies.

    Args:
        exp: the experiment (units, ``generate:``, ``costs:``, judge scale).
        train: the training prompts; evals: the eval prompts (reference required).
        teachers: name -> teacher (cached), in the order candidates are listed.
        judge: the LLM judge of training records, or None (the reference judge alone).
        progress: show a progress bar per teacher.
        partial: the result will be written even when incomplete (``generate --partial``).
    """
    gen = exp.generate
    assert gen is not None, "the command checks that generate: is declared"
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    items = [*train, *evals]
    stats = [TeacherTally(name) for name in teachers]
    prices = {name: _price(exp, name) for name in teachers}
    per_item: list[dict[str, Outcome]] = [{} for _ in items]
    unanswered: list[Unanswered] = []
    seen_kinds: set[tuple[str, str]] = set()
    soft_top_k = gen.soft_labels.top_k if gen.soft_labels is not None else None
    for st, (name, teacher) in zip(stats, teachers.items(), strict=True):
        spec = exp.teachers.get(name)  # absent only for teachers built by a test
        answer_from = spec.answer_from if spec else "generation"
        reqs = [build_request(it.prompt, units[it.unit], gen.fields,
                              max_tokens=spec.max_tokens if spec else 256,
                              temperature=spec.temperature if spec else 0.0, seed=gen.seed,
                              answer_from=answer_from,
                              structured_output=getattr(spec, "structured_output", False),
                              soft_top_k=soft_top_k)
                for it in items]
        answers = ask(teacher, name, reqs, prices[name], st, progress=progress,
                      currency=exp.costs.currency)
        for k, (it, c) in enumerate(zip(items, answers, strict=True)):
            if c.error is not None or c.text is None:
                # the call failed: no answer to judge, audit or correct; a rerun asks again
                where: FileName = "samples" if k < len(train) else "eval"
                kind = c.error or "error"
                # one example detail per teacher and kind is shown; the rest need no memory
                first = (name, kind) not in seen_kinds
                seen_kinds.add((name, kind))
                unanswered.append(Unanswered(where, it.id, name, kind,
                                             redact(c.error_detail or "") if first else ""))
                continue
            per_item[k][name] = candidate_from(name, c, units[it.unit], gen.fields, it.reference,
                                               answer_from, getattr(spec, "reasoning_as", None),
                                               soft_top_k=soft_top_k)
    if unanswered and not partial:
        judge = None  # nothing will be written: no verdict is bought for records missing answers
    scale = exp.data.judge_scale
    verdicts: list[dict[str, Any] | None] = [None] * len(items)
    rights = [apply_reference(out, units[it.unit], it.reference)
              for it, out in zip(items, per_item, strict=True)]
    skipped: set[int] = set()
    report: JudgeReport | None = None
    on_eval = judge is not None and judge.on_eval and bool(evals)
    if judge is not None and (train or on_eval):
        jstats = TeacherTally(f"judge:{judge.name}")  # apart from the same model as teacher
        stats.append(jstats)
        prices[jstats.name] = _price(exp, judge.name)
        judge.teacher = _Counting(judge.teacher, jstats, prices[jstats.name],
                                  progress=progress, currency=exp.costs.currency)
        if judge.when == "disagreement":
            skipped = {k for k, it in enumerate(train)
                       if agreement(per_item[k], units[it.unit])}
        # eval records (judge.on_eval) are all judged: skipping agreement would bias the kappa
        todo = [k for k in range(len(items) if on_eval else len(train)) if k not in skipped]
        jitems = [JudgeItem(items[k].id, items[k].unit, units[items[k].unit], items[k].prompt,
                            items[k].reference,
                            [o.candidate for o in per_item[k].values() if o.answered])
                  for k in todo]
        for k, v in zip(todo, judge.judge_all(jitems), strict=True):
            verdicts[k] = v
        report = judge_report(judge, [verdicts[k] for k in todo], [rights[k] for k in todo],
                              ["training" if k < len(train) else "eval" for k in todo])
    for k in range(len(train)):
        right = rights[k]
        llm = verdicts[k]
        if llm is not None and right is not None and llm["winner"] is None and not llm["scores"]:
            # the LLM judge failed, was unreadable or flipped with the candidate order
            # (position-inconsistent): the reference judges, and says why
            fallback = reference_verdict(right, per_item[k], scale)
            fallback["reason_tags"] = [*llm["reason_tags"], *fallback["reason_tags"]]
            fallback["llm_judge"] = {key: llm[key] for key in
                                     ("judge", "order", "orders", "position_consistent")
                                     if key in llm}
            verdicts[k] = fallback
        elif llm is None and right is not None:
            verdict = reference_verdict(right, per_item[k], scale)
            if k in skipped:
                verdict["skipped"] = SKIPPED_AGREE
            verdicts[k] = verdict
        elif k in skipped:
            verdicts[k] = agreement_verdict(per_item[k])
    result = GenerateResult(samples=[], eval=[], stats=stats, prices=prices,
                            unanswered=unanswered, judge_skipped=len(skipped),
                            judge_report=report,
                            judge_asked=sum(1 for k in range(len(train))
                                            if k not in skipped and judge is not None
                                            and any(o.answered for o in per_item[k].values())))
    for k, it in enumerate(items):
        if k < len(train) and not per_item[k]:
            result.dropped.append(it.id)  # the contract wants a candidate per training record
            continue
        rec = _record(it, per_item[k], verdicts[k], gen.round)
        (result.samples if k < len(train) else result.eval).append(rec)
        for t, o in per_item[k].items():
            result.outcomes[f"{t}:{o.failure['kind'] if o.failure else o.pool}"] += 1
    return result


class _Counting:
    """A teacher wrapper that counts the judge's calls in its :class:`TeacherTally` (with a
    progress bar), so the summary shows the judge like a teacher."""

    def __init__(self, inner: Teacher, tally: TeacherTally, price: Price, *,
                 progress: bool, currency: str) -> None:
        self.inner, self.tally, self.price = inner, tally, price
        self.progress, self.currency = progress, currency
        self.name = tally.name

    def config_key(self) -> str:
        return self.inner.config_key()

    def check(self) -> None:
        self.inner.check()

    def complete_many(self, requests: Sequence[Any], on_done: Any) -> None:
        answers = ask(self.inner, self.name, requests, self.price, self.tally,
                      progress=self.progress, currency=self.currency)
        for i, c in enumerate(answers):
            on_done(i, c)


def write(exp: Experiment, result: GenerateResult, *, write_eval: bool,
          partial: bool = False) -> list[Path]:
    """Write ``data.samples`` (and ``data.eval``) as JSON Lines, each atomically; returns the
    paths written.

    A complete result removes a sidecar of unanswered prompts an earlier ``--partial`` run left
    (after the data is in place, so partial data is never left unmarked). An incomplete result
    is written only with ``partial``, and then the sidecar is written first (marking whatever
    file is there) and again with the new files' SHA-256 once they are in place
    (:mod:`harness.teachers.unanswered`).

    Raises:
        ValueError: an incomplete result without ``partial`` (the caller reports it instead).
    """
    if not result.complete and not partial:
        raise ValueError("an incomplete result is written only as partial data")

    def jsonl(records: Sequence[dict[str, Any]]) -> Callable[[Path], None]:
        def write_lines(tmp: Path) -> None:  # a line at a time: no second copy of the data
            with tmp.open("w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        return write_lines

    files: dict[FileName, Path] = {"samples": exp.data.samples}
    if write_eval:
        files["eval"] = exp.data.eval
    sidecar = sidecar_path(exp.data.samples)
    if not result.complete:
        write_sidecar(sidecar, result.unanswered, files, result.dropped,
                      dict.fromkeys(files, None))
    atomic_write(exp.data.samples, jsonl(result.samples))
    if write_eval:
        atomic_write(exp.data.eval, jsonl(result.eval))
    written = list(files.values())
    if result.complete:
        sidecar.unlink(missing_ok=True)
    else:
        write_sidecar(sidecar, result.unanswered, files, result.dropped,
                      {name: file_sha256(p) for name, p in files.items()})
        written.append(sidecar)
    return written
