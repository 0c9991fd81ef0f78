"""``harness generate EXP.yaml``: send the prompts to the teachers, judge, write the samples.

Everything that can be wrong with the input is refused before the first call (exit 2): the
experiment, a missing ``generate:`` section, the prompts files (every problem at ``file:line``),
eval prompts leaking into training, unknown teacher names, and each teacher's own check (missing
API key, unreachable endpoint, unknown model, missing file). The calls go through the on-disk
cache, so a rerun, or a run after Ctrl-C or SIGKILL, pays only for what was never answered.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.common import EXIT_OK, text_table
from harness.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from harness.spec.models import Experiment
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
    judge of the ``judge:`` section, if any (a judge naming a teacher shares its model)."""
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
        raw[name] = build_teacher(name, exp.teachers[name])
        raw[name].check()
    teachers: dict[str, Teacher] = {n: CachedTeacher(t, store) for n, t in raw.items()}
    if spec is None:
        return teachers, None
    jspec = spec.config if spec.config is not None else exp.teachers[spec.name]
    jraw = raw.get(spec.name)
    if jraw is None:
        jraw = build_teacher(spec.name, jspec)
        jraw.check()
    judge = LLMJudge(spec.name, CachedTeacher(jraw, store), spec.scale or exp.data.judge_scale,
                     spec.seed, rubric=rubric, max_tokens=jspec.max_tokens, when=spec.when,
                     where=where)
    judge.check(len(names))
    return teachers, judge


def run_generate(path: str, *, limit: int | None = None, progress: bool = True,
                 build: Build | None = None) -> tuple[Experiment, GenerateResult, list[Path]]:
    """Load, check, ask, judge and write (the command without its printing).

    Args:
        path: the experiment YAML.
        limit: only the first N prompts of each file (overrides ``generate.limit``).
        progress: show a progress bar per teacher.
        build: builds the teachers and the judge (default :func:`build_providers`).
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
    result = generate(exp, train, evals, teachers, judge, progress=progress)
    try:
        written = write(exp, result, write_eval=bool(gen.eval_prompts))
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
    now and in all, failed calls, and answers per pool / failure kind."""
    headers = ["teacher", "calls", "cache_hits", "prompt_tok", "completion_tok", "cost_paid",
               "cost_total", "seconds", "failed_calls", "outcomes"]
    rows: list[list[object]] = []
    for st in result.stats:
        outs = sorted((k.split(":", 1)[1], v) for k, v in result.outcomes.items()
                      if k.split(":", 1)[0] == st.name)
        paid, total = result.cost(st)
        # tokens of every answer (cached ones too), like cost_total; seconds: time waited
        rows.append([st.name, st.calls, st.cache_hits, st.total_prompt_tokens,
                     st.total_completion_tokens, paid, total, round(st.wall_seconds, 1),
                     st.failed, " ".join(f"{k}={v}" for k, v in outs) or "-"])
    return headers, rows


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate the sample repository (and eval set) from the teachers; print the summary."""
    exp, result, written = run_generate(args.experiment, limit=args.limit,
                                        progress=not args.quiet)
    for p in written:
        n = len(result.samples) if p == exp.data.samples else len(result.eval)
        print(f"wrote {p} ({n:,} records)")
    headers, rows = summary_rows(result)
    print()
    print(text_table(headers, rows))
    if exp.judge is not None:
        print(f"\nLLM judge: {result.judge_asked} training record(s) judged, "
              f"{result.judge_skipped} skipped (judge.when: {exp.judge.when}; teachers agree)")
    print(f"\nmoney in {exp.costs.currency} (costs.teachers); cost_paid: calls answered now, "
          "cost_total: with the cached ones. Next: harness validate " + args.experiment)
    return EXIT_OK
