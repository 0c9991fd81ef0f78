"""Rules that span several sections of the experiment (run after pydantic validation).

Each returns problems whose ``field`` is the dotted YAML path; the loader adds file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from harness.errors import Problem, did_you_mean
from harness.spec.models import CellPattern, CellRef, Experiment, costs_declared
from harness.units import classifier_kinds, get, known_metrics


def _p(path: str, message: str) -> Problem:
    return Problem("", path, message)


Names = dict[str, set[str]]


def _check_ref(exp: Experiment, names: Names, ref: CellRef | CellPattern, path: str
               ) -> Iterator[Problem]:
    if ref.bucket is not None and ref.bucket not in names["buckets"]:
        yield _p(f"{path}.bucket",
                 f"unknown bucket {ref.bucket!r}{did_you_mean(ref.bucket, names['buckets'])}")
    if ref.fields is not None and ref.fields not in names["fields"]:
        yield _p(f"{path}.fields",
                 f"unknown field set {ref.fields!r}{did_you_mean(ref.fields, names['fields'])}")
    if ref.seed is not None and ref.seed not in exp.seeds:
        yield _p(f"{path}.seed", f"seed {ref.seed} is not among seeds {exp.seeds}")


def _check_buckets(exp: Experiment) -> Iterator[Problem]:
    from harness.compose.registry import FAILURE_MODES, SELECTORS

    low, high = exp.data.judge_scale if exp.data is not None else (float("-inf"), float("inf"))
    for name, b in exp.buckets.items():
        path = f"buckets.{name}"
        if b.select not in SELECTORS:
            yield _p(f"{path}.select", f"unknown selector {b.select!r}"
                     f"{did_you_mean(b.select, SELECTORS.names())} (known: "
                     f"{', '.join(SELECTORS.names())})")
        if b.failures not in FAILURE_MODES:
            yield _p(f"{path}.failures", f"unknown failure mode {b.failures!r}"
                     f"{did_you_mean(b.failures, FAILURE_MODES.names())} (known: "
                     f"{', '.join(FAILURE_MODES.names())})")
        if b.min_score is not None and not low <= b.min_score <= high:
            yield _p(f"{path}.min_score", f"{b.min_score:g} is outside the judge scale "
                     f"({low:g}-{high:g})")
        if isinstance(b.teachers, list) and not b.teachers:
            yield _p(f"{path}.teachers", "the teacher list is empty")
        if "failure" in b.pools:
            yield _p(f"{path}.pools", "the failure pool is not a training pool: use "
                     "'failures: refusal' or 'failures: contrastive' to train on it")


def _check_fields(exp: Experiment) -> Iterator[Problem]:
    from harness.compose.registry import CONFIDENCE_RULES

    for name, f in exp.fields.items():
        if f.confidence not in CONFIDENCE_RULES:
            yield _p(f"fields.{name}.confidence", f"unknown confidence rule {f.confidence!r}"
                     f"{did_you_mean(f.confidence, CONFIDENCE_RULES.names())} (known: "
                     f"{', '.join(CONFIDENCE_RULES.names())})")


def _check_design(exp: Experiment, names: Names) -> Iterator[Problem]:
    d = exp.design
    if d.base is not None:
        yield from _check_ref(exp, names, d.base, "design.base")
        if d.base.scale not in exp.scale:
            yield _p("design.base.scale", f"{d.base.scale:g} is not among scale {exp.scale}")
    for i, ref in enumerate(d.include):
        yield from _check_ref(exp, names, ref, f"design.include.{i}")
    for i, pat in enumerate(d.exclude):
        yield from _check_ref(exp, names, pat, f"design.exclude.{i}")
    if getattr(exp, "baseline", None) is not None:
        yield from _check_ref(exp, names, exp.baseline, "baseline")


def _check_policies(exp: Experiment, names: Names) -> Iterator[Problem]:
    units = names["units"]
    for unit, mins in exp.gate.min_metric.items():
        if unit not in units:
            yield _p(f"gate.min_metric.{unit}", f"unknown unit {unit!r}{did_you_mean(unit, units)}")
            continue
        spec = exp.units.get(unit)
        if spec is None:
            continue
        known = known_metrics(spec)
        for metric in mins:
            if metric not in known:
                yield _p(f"gate.min_metric.{unit}.{metric}",
                         f"unit {unit!r} ({spec.kind}) has no metric {metric!r}"
                         f"{did_you_mean(metric, known)} (known: {', '.join(known)})")
    for i, unit in enumerate(exp.stop.units or []):
        if unit not in units:
            yield _p(f"stop.units.{i}", f"unknown unit {unit!r}{did_you_mean(unit, units)}")
    costs = getattr(exp, "costs", None)
    if (exp.gate.min_roi is not None and costs is not None
            and not costs_declared(costs.model_dump(mode="json"))):
        yield _p("gate.min_roi", "a minimum ROI needs prices: `costs:` declares none, so "
                 "every cost and saving would be 0 (declare teacher/student prices per 1k "
                 "tokens, or remove min_roi)")


def _check_templates(exp: Experiment) -> Iterator[Problem]:
    from harness.compose.templates import TemplateProblem, compile_target_template

    for name, unit in exp.units.items():
        try:
            compile_target_template(unit)
        except TemplateProblem as exc:
            yield _p(f"units.{name}.template", str(exc))


def _check_files(exp: Experiment) -> Iterator[Problem]:
    if getattr(exp, "data", None) is None:
        return
    for key in ("samples", "eval"):
        p = getattr(exp.data, key)
        kind = _file_kind(p)
        if kind == "missing":
            yield _p(f"data.{key}", f"file not found: {p}")
        elif kind != "file":  # a device, FIFO or folder: reading it would hang or never end
            yield _p(f"data.{key}", f"not a regular file ({kind}): {p}")
        elif p.suffix.lower() not in (".jsonl", ".parquet", ".json", ".ndjson"):
            yield _p(f"data.{key}", f"unsupported file type {p.suffix!r}: use .jsonl or .parquet")
    student = getattr(exp, "student", None)
    if (student is not None and student.model is not None
            and _file_kind(student.model) != "folder"):
        yield _p("student.model", f"checkpoint folder not found: {exp.student.model}")


def _file_kind(p: Path) -> str:
    """``file``, ``folder``, ``missing`` or the kind of special file; never raises."""
    import stat

    try:
        mode = p.stat().st_mode
    except (OSError, ValueError):  # missing, too long a name, a NUL byte, no permission
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a device or other special file"


def _check_student(exp: Experiment) -> Iterator[Problem]:
    student = getattr(exp, "student", None)
    units = getattr(exp, "units", None) or {}
    if student is None or student.kind != "classifier":
        return
    for name, unit in units.items():
        if get(unit.kind).classifier_classes(unit.model_dump(mode="json")) is None:
            yield _p("student.kind", f"a classifier student cannot answer unit {name!r} of "
                     f"kind {unit.kind!r} (only {' and '.join(classifier_kinds())} units): use "
                     "kind: causal_lm, or move that unit to another experiment")


def check_student_switches(exp: Experiment) -> Iterator[Problem]:
    """The performance switches of ``student.train`` the student kind cannot honour (its
    training objective declares the ones it can: :mod:`harness.students.base`)."""
    from harness.students.base import get as student_kind
    from harness.students.base import unsupported_switches

    student = getattr(exp, "student", None)
    if student is None:
        return
    honoured = sorted(student_kind(student.kind).switches())
    for switch in unsupported_switches(student.kind, student.train.model_dump()):
        yield _p(f"student.train.{switch}",
                 f"a {student.kind} student cannot honour {switch}: true (it honours: "
                 f"{', '.join(honoured) or 'none'}); remove it")


def check_cross_rules(exp: Experiment, names: Names | None = None, *, check_files: bool = True
                      ) -> list[Problem]:
    """Every cross-section problem.

    Args:
        exp: a validated experiment, or a partial one (``model_construct``) holding only the
            sections that validated; missing sections are skipped.
        names: the declared names per section (``units``, ``buckets``, ``fields``), including
            entries that failed validation, so references to them are not reported twice.
    """
    if names is None:
        names = {k: set(getattr(exp, k)) for k in ("units", "buckets", "fields")}
    out = [*_check_buckets(exp), *_check_fields(exp), *_check_design(exp, names),
           *_check_policies(exp, names), *_check_templates(exp), *_check_student(exp),
           *check_student_switches(exp)]
    if check_files:
        out += list(_check_files(exp))
    return out
