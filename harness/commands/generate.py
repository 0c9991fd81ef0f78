"""``harness generate EXP.yaml``: send the prompts to the teachers, judge, write the samples.

Everything that can be wrong with the input is refused before the first call (exit 2): the
experiment, a missing ``generate:`` section, the prompts files (every problem at ``file:line``),
eval prompts leaking into training, unknown teacher names, and each teacher's own check (missing
API key, unreachable endpoint, unknown model, missing file). The calls go through the on-disk
cache, so a rerun, or a run after Ctrl-C or SIGKILL, pays only for what was never answered.

A prompt left unanswered by a failed call (rate limits, timeouts, 5xx, connection, auth) makes
the run incomplete: exit 5 with a summary per teacher of what is missing and why, and nothing
written (``--partial`` writes the answered records with the unanswered ones listed beside them,
which ``validate`` refuses unless ``--allow-partial``). Running the same command again asks only
the unanswered prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.common import EXIT_INCOMPLETE, EXIT_OK, text_table
from harness.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from harness.experiment.models import Experiment
    from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
    from harness.teachers.base import Teacher
    from harness.teachers.generate import GenerateResult
    from harness.teachers.judge import LLMJudge

#: Builds the (cached) teachers to ask and the judge: ``(exp, names, cache_path)``.
Build = Callable[["Experiment", list[str], Path], "tuple[dict[str, Teacher], LLMJudge | None]"]


def cache_path(exp: Experiment) -> Path:
    """Where the call cache lives: ``generate.cache``, else ``runs/<name>/teacher_cache.sqlite``
    (relative to the current folder, like ``harness run``'s run folders)."""
    assert exp.generate is not None
    return exp.generate.cache or Path("runs") / exp.name / "teacher_cache.sqlite"


def build_providers(exp: Experiment, names: list[str], cache: Path
                    ) -> tuple[dict[str, Teacher], LLMJudge | None]:
    """The real teachers (:mod:`harness.teachers.providers`), each behind the call cache and
    checked before any call (missing key, unreachable endpoint, unknown model: exit 2); and the
    judge of the ``judge:`` section, if any (a judge naming a teacher runs that teacher's model
    as its own provider instance: :func:`judge_model_spec`)."""
    from harness.teachers.cache import CachedTeacher, CallCache
    from harness.teachers.judge import LLMJudge
    from harness.teachers.providers import build_teacher

    spec = exp.judge
    rubric, where = (spec.rubric, "judge.rubric") if spec is not None else (None, "")
    if spec is not None and spec.rubric_file is not None:
        where = f"judge.rubric_file ({spec.rubric_file})"
        try:
            rubric = spec.rubric_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"judge.rubric_file: cannot read {spec.rubric_file} ({exc})"
                             ) from None
    store = CallCache(cache)
    raw: dict[str, Teacher] = {}
    for name in names:
        raw[name] = build_teacher(name, exp.teachers[name], store)
        raw[name].check()
    teachers: dict[str, Teacher] = {n: CachedTeacher(t, store) for n, t in raw.items()}
    if spec is None:
        return teachers, None
    jspec = judge_model_spec(exp)
    jraw = build_teacher(spec.name, jspec, store)  # its own instance, even on a teacher's model
    if spec.name not in raw:
        jraw.check()  # a teacher's endpoint was checked above
    self_teacher = next((n for n in names if n == spec.teacher
                         or _same_model(exp.teachers[n], jspec)), None)
    judge = LLMJudge(spec.name, CachedTeacher(jraw, store), spec.scale or exp.data.judge_scale,
                     spec.seed, rubric=rubric, max_tokens=jspec.max_tokens, when=spec.when,
                     where=where, system=jspec.system,
                     temperature=None if jspec.temperature is None else 0.0,
                     self_teacher=self_teacher, on_eval=spec.on_eval)
    judge.check(len(names))
    return teachers, judge


#: Keys of a teacher's ``extra_body`` that constrain its answer to the unit's format (vLLM's
#: guided decoding, SGLang's regex / EBNF, structured outputs): a judge reusing the teacher's
#: model must write its verdict JSON, so a judge built from the teacher's entry drops them.
_ANSWER_CONSTRAINTS = ("guided_choice", "guided_json", "guided_regex", "guided_grammar",
                       "guided_decoding_backend", "structured_outputs", "response_format",
                       "json_schema", "regex", "ebnf", "grammar")


def judge_model_spec(exp: Experiment) -> OpenAITeacherSpec | HFTeacherSpec:
    """The provider block the judge runs with: its own ``config``, or a copy of the teacher's
    entry it names with the judge's own system prompt and answer budget, so the judge never
    inherits the teacher's prompt style (a different config key: its own cache entries).

    System prompt: ``judge.system``, else ``config.system``, else the built-in grader prompt
    (:data:`~harness.teachers.judge.DEFAULT_SYSTEM`). Budget (tokens): ``judge.max_tokens``,
    else ``config.max_tokens``, else the larger of 256 and the teacher's (a reasoning model's
    budget also pays its hidden reasoning). A copied teacher entry also loses what shapes a
    unit answer: log-probabilities, ``answer_from: label_scores``, ``stop`` strings and the
    answer constraints of ``extra_body`` (:data:`_ANSWER_CONSTRAINTS`).
    """
    from harness.teachers.judge import DEFAULT_MAX_TOKENS, DEFAULT_SYSTEM

    spec = exp.judge
    assert spec is not None
    if spec.config is not None:
        base = spec.config
        system = spec.system if spec.system is not None else base.system or DEFAULT_SYSTEM
        budget = spec.max_tokens or base.max_tokens
        update: dict[str, object] = {}
    else:
        assert spec.teacher is not None
        base = exp.teachers[spec.teacher]
        system = spec.system if spec.system is not None else DEFAULT_SYSTEM
        budget = spec.max_tokens or max(DEFAULT_MAX_TOKENS, base.max_tokens)
        extra = getattr(base, "extra_body", None)
        update = {"answer_from": "generation", "logprobs": False, "stop": None,
                  "extra_body": ({k: v for k, v in extra.items() if k not in _ANSWER_CONSTRAINTS}
                                 or None) if extra else None}
    update.update(system=system or None, max_tokens=budget)
    fields = type(base).model_fields
    return base.model_copy(update={k: v for k, v in update.items() if k in fields})


def _same_model(a: OpenAITeacherSpec | HFTeacherSpec, b: OpenAITeacherSpec | HFTeacherSpec
                ) -> bool:
    """Whether two provider blocks run the same model (the judge grading its own answers)."""
    if a.provider != b.provider:
        return False
    keys = ("base_url", "model") if a.provider == "openai" else (
        "model", "gguf_file", "package_file")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def run_generate(path: str, *, limit: int | None = None, progress: bool = True,
                 build: Build | None = None, partial: bool = False
                 ) -> tuple[Experiment, GenerateResult, list[Path]]:
    """Load, check, ask, judge and write (the command without its printing).

    An incomplete result (:attr:`GenerateResult.complete` False: a prompt a teacher did not
    answer) is written only with ``partial``; otherwise nothing is written (the files already
    there stay as they were) and the returned list is empty.

    Args:
        path: the experiment YAML.
        limit: only the first N prompts of each file (overrides ``generate.limit``).
        progress: show a progress bar per teacher.
        build: builds the teachers and the judge (default :func:`build_providers`).
        partial: write an incomplete result, with its unanswered prompts in a sidecar.
    """
    from harness.checks import load_experiment
    from harness.teachers.generate import generate, write
    from harness.teachers.inputs import check_overlap, read_prompts

    loaded = load_experiment(path, check_files=False)  # generate writes the data files
    exp = loaded.spec
    gen = exp.generate
    if gen is None:
        raise InputError(f"{loaded.path}: the experiment has no generate: section (prompts, "
                         "eval_prompts, fields...): nothing to generate")
    targets = {"data.samples": exp.data.samples,
               **({"data.eval": exp.data.eval} if gen.eval_prompts else {})}
    for field, target in targets.items():
        if target.suffix != ".jsonl":
            raise InputError(f"{loaded.path}: {field}: generate writes JSON Lines; name the "
                             f"file *.jsonl (got {target.name})")
        _check_writable(loaded.path, field, target)
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    limit = limit or gen.limit
    train = read_prompts(gen.prompts, units, limit=limit)
    evals = (read_prompts(gen.eval_prompts, units, need_reference=True, limit=limit)
             if gen.eval_prompts else [])
    if evals and exp.data.leakage == "error":
        check_overlap(train, evals, gen.prompts, gen.eval_prompts)  # type: ignore[arg-type]
    names = _teacher_names(exp)
    teachers, judge = (build or build_providers)(exp, names, cache_path(exp))
    result = generate(exp, train, evals, teachers, judge, progress=progress, partial=partial)
    if not result.complete and not partial:
        return exp, result, []
    try:
        written = write(exp, result, write_eval=bool(gen.eval_prompts), partial=partial)
    except OSError as exc:  # the disk filled up, or the folder changed during the calls
        raise InputError(f"{loaded.path}: cannot write {exc.filename or exp.data.samples} "
                         f"({exc.strerror or exc}); every answer is in the call cache "
                         f"({cache_path(exp)}): fix it and run again to pay nothing twice"
                         ) from None
    return exp, result, written


def _check_writable(yaml_path: Path, field: str, target: Path) -> None:
    """Refuse, before any call, an output path that cannot become a file: a folder, a path
    under a file, or a folder this user may not write into."""
    if target.is_dir():
        raise InputError(f"{yaml_path}: {field}: {target} is a folder; name a .jsonl file")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # generate creates the missing folders
    if not parent.is_dir():
        raise InputError(f"{yaml_path}: {field}: cannot create {target}: {parent} is a file, "
                         "not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{yaml_path}: {field}: cannot write into {parent} (permission "
                         "denied)")


def _teacher_names(exp: Experiment) -> list[str]:
    """The teachers to ask: ``generate.teachers``, else every entry of ``teachers:``."""
    declared: Mapping[str, object] = exp.teachers
    assert exp.generate is not None
    names = exp.generate.teachers or list(declared)
    unknown = [n for n in names if n not in declared]
    if unknown or not names:
        what = (", ".join(f"{n!r}{did_you_mean(n, declared)}" for n in unknown)
                or "no teacher")
        raise InputError(f"generate.teachers: {what} is not declared in teachers: "
                         f"(declared: {', '.join(declared) or 'none'})")
    return names


def summary_rows(result: GenerateResult) -> tuple[list[str], list[list[object]]]:
    """The summary table: per teacher (and the judge) calls, cache hits, tokens, cost paid
    now and in all, failed calls, requests never sent (the teacher was stopped), and answers
    per pool / failure kind."""
    headers = ["teacher", "calls", "cache_hits", "prompt_tok", "completion_tok", "cost_paid",
               "cost_total", "seconds", "failed_calls", "not_sent", "outcomes"]
    rows: list[list[object]] = []
    for st in result.stats:
        outs = sorted((k.split(":", 1)[1], v) for k, v in result.outcomes.items()
                      if k.split(":", 1)[0] == st.name)
        paid, total = result.cost(st)
        # tokens of every answer (cached ones too), like cost_total; seconds: time waited
        rows.append([st.name, st.calls, st.cache_hits, st.total_prompt_tokens,
                     st.total_completion_tokens, paid, total, round(st.wall_seconds, 1),
                     st.failed, st.not_sent, " ".join(f"{k}={v}" for k, v in outs) or "-"])
    return headers, rows


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate the sample repository (and eval set) from the teachers; print the summary.
    Exit 0 when every teacher answered every prompt, else 5 (:data:`EXIT_INCOMPLETE`) with what
    is missing on stderr."""
    partial = bool(getattr(args, "partial", False))
    exp, result, written = run_generate(args.experiment, limit=args.limit,
                                        progress=not args.quiet, partial=partial)
    for p in written:
        if p in (exp.data.samples, exp.data.eval):
            n = len(result.samples) if p == exp.data.samples else len(result.eval)
            print(f"wrote {p} ({n:,} records{'' if result.complete else ', partial'})")
        else:
            print(f"wrote {p} (the unanswered prompts)")
    headers, rows = summary_rows(result)
    print()
    print(text_table(headers, rows))
    if exp.judge is not None and (result.complete or partial):
        report = result.judge_report
        evals = (f" and {report.eval_records} eval record(s) (judge.on_eval)"
                 if report is not None and report.eval_records else "")
        print(f"\nLLM judge: {result.judge_asked} training record(s){evals} judged (with "
              f"several answers: in both candidate orders), {result.judge_skipped} skipped "
              f"(judge.when: {exp.judge.when}; teachers agree)")
        for line in report.lines() if report is not None else []:
            print(f"  {line}")
    print(f"\nmoney in {exp.costs.currency} (costs.teachers); cost_paid: calls answered now, "
          "cost_total: with the cached ones."
          + (f" Next: harness validate {args.experiment}" if result.complete else ""))
    if result.complete:
        return EXIT_OK
    print(incomplete_message(exp, result, written, args.experiment), file=sys.stderr)
    return EXIT_INCOMPLETE


def incomplete_message(exp: Experiment, result: GenerateResult, written: list[Path],
                       yaml_path: str) -> str:
    """What an incomplete run tells the user: per teacher how many prompts are unanswered and
    why (error kinds, one redacted example each), what was (not) written, how to finish."""
    from harness.teachers.redact import redact
    from harness.teachers.unanswered import gaps, sidecar_path

    prompts = len({(u.file, u.id) for u in result.unanswered})
    lines = [f"incomplete: {prompts:,} prompt(s) lack an answer from a teacher "
             f"({len(result.unanswered):,} failed call(s); a failed call is not an answer):"]
    lines += [f"  {redact(g.line())}" for g in gaps(result.unanswered)]  # provider text
    sidecar = sidecar_path(exp.data.samples)
    cache = cache_path(exp)
    if written:
        lines.append(f"partial data: {', '.join(str(p) for p in written if p != sidecar)} "
                     f"hold only the answered prompts ({len(result.dropped):,} training "
                     f"prompt(s) with no answer at all left out); {sidecar} lists the "
                     "unanswered ones, and harness validate refuses this data unless "
                     "--allow-partial.")
    else:
        targets = [exp.data.samples, *([exp.data.eval] if exp.generate and
                                       exp.generate.eval_prompts else [])]
        kept = ", ".join(f"{p} ({'the earlier file kept as it was' if p.exists() else 'absent'})"
                         for p in targets)
        lines.append(f"nothing written: {kept}"
                     + ("; the LLM judge was not asked" if exp.judge is not None else "") + ".")
    lines.append(f"Run `harness generate {yaml_path}` again to ask only the unanswered prompts "
                 f"(every answered call is in the call cache, {cache})"
                 + ("" if written else "; or add --partial to write the answered ones now, "
                    f"listing the unanswered in {sidecar}") + ".")
    return "\n".join(lines)
