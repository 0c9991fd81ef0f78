"""Rules that span sections of the experiment, and :func:`load_experiment`, which runs them.

Each rule is a small function registered in :data:`RULES` with the sections it needs; it runs
only when those validated, on the validated sections (see :mod:`harness.checks.registry`). The
rules reach above the spec into the registries they check names against: compose's selectors,
failure modes and confidence rules, the target templates, the unit kinds' metrics and the student
kinds' training switches.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import harness.units as unit_kinds
from harness.checks.registry import Context, Rules, problem
from harness.compose.registry import CONFIDENCE_RULES, FAILURE_MODES, SELECTORS
from harness.compose.templates import TemplateProblem, compile_target_template
from harness.errors import Problem, did_you_mean, number
from harness.experiment import LoadedExperiment, parse_experiment
from harness.experiment.models import CellPattern, CellRef, costs_declared
from harness.students import base as student_kinds

#: The cross-section rules, in the order they report (the log is sorted by line afterwards).
RULES = Rules()
rule = RULES.rule


def load_experiment(path: str | Path, *, check_files: bool = True) -> LoadedExperiment:
    """Read, resolve and validate an experiment YAML: pydantic, then every rule of :data:`RULES`.

    Args:
        path: the YAML file.
        check_files: also require the data files and the student checkpoint to exist.

    Raises:
        InputError: with every problem found in the pass (pydantic's and the rules'), each at
            its ``file:line``, sorted by line.
    """
    parsed = parse_experiment(path)
    parsed.report(RULES.run(Context(parsed.sections, parsed.names), files=check_files))
    return parsed.finish()


# --------------------------------------------------------------------------- buckets and fields


def _known(kind: str, value: str, known: list[str]) -> str:
    return f"unknown {kind} {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})"


@rule("buckets")
def bucket_registries(s: Context) -> Iterator[Problem]:
    """A bucket's selector and failure mode are registered in compose."""
    for name, b in s["buckets"].items():
        if b.select not in SELECTORS:
            yield problem(f"buckets.{name}.select", _known("selector", b.select, SELECTORS.names()))
        if b.failures not in FAILURE_MODES:
            yield problem(f"buckets.{name}.failures",
                          _known("failure mode", b.failures, FAILURE_MODES.names()))


@rule("buckets", "data")
def bucket_min_score(s: Context) -> Iterator[Problem]:
    """``min_score`` lies on the judge scale the data declares."""
    low, high = s["data"].judge_scale
    for name, b in s["buckets"].items():
        if b.min_score is not None and not low <= b.min_score <= high:
            yield problem(f"buckets.{name}.min_score", f"{number(b.min_score)} is outside the "
                          f"judge scale ({number(low)}-{number(high)})")


@rule("buckets")
def bucket_pools(s: Context) -> Iterator[Problem]:
    """A teacher list is not empty; the failure pool is trained on through ``failures``."""
    for name, b in s["buckets"].items():
        if isinstance(b.teachers, list) and not b.teachers:
            yield problem(f"buckets.{name}.teachers", "the teacher list is empty")
        if "failure" in b.pools:
            yield problem(f"buckets.{name}.pools", "the failure pool is not a training pool: use "
                          "'failures: refusal' or 'failures: contrastive' to train on it")


@rule("fields")
def field_confidence(s: Context) -> Iterator[Problem]:
    """A field set's confidence rule is registered in compose."""
    for name, f in s["fields"].items():
        if f.confidence not in CONFIDENCE_RULES:
            yield problem(f"fields.{name}.confidence",
                          _known("confidence rule", f.confidence, CONFIDENCE_RULES.names()))


# --------------------------------------------------------------------------- cell references


def _ref_names(s: Context, ref: CellRef | CellPattern, path: str) -> Iterator[Problem]:
    buckets, fields = s.names["buckets"], s.names["fields"]
    if ref.bucket is not None and ref.bucket not in buckets:
        yield problem(f"{path}.bucket",
                      f"unknown bucket {ref.bucket!r}{did_you_mean(ref.bucket, buckets)}")
    if ref.fields is not None and ref.fields not in fields:
        yield problem(f"{path}.fields",
                      f"unknown field set {ref.fields!r}{did_you_mean(ref.fields, fields)}")


def _ref_seed(seeds: list[int], ref: CellRef | CellPattern, path: str) -> Iterator[Problem]:
    if ref.seed is not None and ref.seed not in seeds:
        yield problem(f"{path}.seed", f"seed {ref.seed} is not among seeds {seeds}")


def _design_refs(s: Context) -> Iterator[tuple[CellRef | CellPattern, str]]:
    d = s["design"]
    if d.base is not None:
        yield d.base, "design.base"
    yield from ((ref, f"design.include.{i}") for i, ref in enumerate(d.include))
    yield from ((pat, f"design.exclude.{i}") for i, pat in enumerate(d.exclude))


@rule("design")
def design_names(s: Context) -> Iterator[Problem]:
    """The design's base, includes and excludes name declared buckets and field sets."""
    for ref, path in _design_refs(s):
        yield from _ref_names(s, ref, path)


@rule("design", "seeds")
def design_seeds(s: Context) -> Iterator[Problem]:
    """The seeds the design names are among ``seeds``."""
    for ref, path in _design_refs(s):
        yield from _ref_seed(s["seeds"], ref, path)


@rule("design", "scale")
def design_base_scale(s: Context) -> Iterator[Problem]:
    """The design's base scale is among ``scale``."""
    base = s["design"].base
    if base is not None and base.scale not in s["scale"]:
        yield problem("design.base.scale", f"{base.scale:g} is not among scale {s['scale']}")


@rule("baseline")
def baseline_names(s: Context) -> Iterator[Problem]:
    """The baseline names a declared bucket and field set."""
    yield from _ref_names(s, s["baseline"], "baseline")


@rule("baseline", "seeds")
def baseline_seed(s: Context) -> Iterator[Problem]:
    """The baseline's seed is among ``seeds``."""
    yield from _ref_seed(s["seeds"], s["baseline"], "baseline")


# --------------------------------------------------------------------------- policies


@rule("gate")
def gate_units(s: Context) -> Iterator[Problem]:
    """``gate.min_metric`` names declared units."""
    units = s.names["units"]
    for unit in s["gate"].min_metric:
        if unit not in units:
            yield problem(f"gate.min_metric.{unit}",
                          f"unknown unit {unit!r}{did_you_mean(unit, units)}")


@rule("gate", "units")
def gate_metrics(s: Context) -> Iterator[Problem]:
    """``gate.min_metric`` names metrics the unit's kind scores, each minimum within the
    metric's range where it has one (a rate's [0, 1]): above it the minimum is never met, below
    it always, and either way the gate checks nothing."""
    for unit, mins in s["gate"].min_metric.items():
        spec = s["units"].get(unit)
        if spec is None:  # undeclared (gate_units) or failed validation (reported already)
            continue
        known = unit_kinds.known_metrics(spec)
        kind = unit_kinds.get(spec.kind)
        for metric, minimum in mins.items():
            path = f"gate.min_metric.{unit}.{metric}"
            if metric not in known:
                yield problem(path, f"unit {unit!r} ({spec.kind}) has no metric {metric!r}"
                              f"{did_you_mean(metric, known)} (known: {', '.join(known)})")
                continue
            try:
                bounds = kind.metric_def(metric).bounds
            except KeyError:  # a kind's known_metrics beyond its declared ones: no range known
                bounds = None
            if bounds is None or bounds[0] <= minimum <= bounds[1]:
                continue
            low, high = bounds
            fate = (f"a minimum above {number(high)} is never met" if minimum > high else
                    f"a minimum below {number(low)} is always met")
            yield problem(path, f"{number(minimum)} is outside the range of {metric} "
                          f"([{number(low)}, {number(high)}]): {fate}")


@rule("stop")
def stop_units(s: Context) -> Iterator[Problem]:
    """``stop.units`` names declared units."""
    units = s.names["units"]
    for i, unit in enumerate(s["stop"].units or []):
        if unit not in units:
            yield problem(f"stop.units.{i}", f"unknown unit {unit!r}{did_you_mean(unit, units)}")


@rule("gate", "costs")
def roi_needs_prices(s: Context) -> Iterator[Problem]:
    """A minimum ROI needs declared prices (else every cost and saving is 0)."""
    if s["gate"].min_roi is not None and not costs_declared(s["costs"].model_dump(mode="json")):
        yield problem("gate.min_roi", "a minimum ROI needs prices: `costs:` declares none, so "
                      "every cost and saving would be 0 (declare teacher/student prices per 1k "
                      "tokens, or remove min_roi)")


# --------------------------------------------------------------------------- units and student


@rule("units")
def unit_templates(s: Context) -> Iterator[Problem]:
    """Each unit's target template compiles and puts the final answer after its marker."""
    for name, unit in s["units"].items():
        try:
            compile_target_template(unit)
        except TemplateProblem as exc:
            yield problem(f"units.{name}.template", str(exc))


@rule("units")
def unit_markers(s: Context) -> Iterator[Problem]:
    """A unit's ``marker`` (the refusal kind's answer that means refuse / escalate) is one line
    of visible text without surrounding whitespace: answers are compared with it after their own
    whitespace is stripped, so a marker of spaces, a newline or " ESCALATE" is never matched."""
    for name, unit in s["units"].items():
        marker = getattr(unit, "marker", None)
        if not isinstance(marker, str):
            continue
        path = f"units.{name}.marker"
        if not marker.strip():
            yield problem(path, f"{marker!r} has no visible character: the marker is the "
                          "answer that means refuse (e.g. ESCALATE)")
        elif marker.splitlines() != [marker]:  # any line break Python knows
            yield problem(path, f"{marker!r} spans several lines: the marker is one line")
        elif marker != marker.strip():
            yield problem(path, f"{marker!r} has whitespace around it, and answers are compared "
                          f"with their own stripped: write {marker.strip()!r}")


@rule("student", "units")
def student_units(s: Context) -> Iterator[Problem]:
    """The student kind answers every unit's kind (a classifier only those with a closed label
    set): :meth:`harness.students.base.StudentKind.answers_unit_kind`."""
    student = s["student"]
    kind = student_kinds.get(student.kind)
    for name, unit in s["units"].items():
        if kind.answers_unit_kind(unit.kind):
            continue
        others = [n for n in student_kinds.names()
                  if student_kinds.get(n).answers_unit_kind(unit.kind)]
        yield problem("student.kind", f"a {student.kind} student cannot answer unit {name!r} of "
                      f"kind {unit.kind!r} (only {' and '.join(kind.answered_unit_kinds())} "
                      f"units): use kind: {' or '.join(others)}, or move that unit to another "
                      "experiment")


@rule("student")
def student_switches(s: Context) -> Iterator[Problem]:
    """The performance switches of ``student.train`` the student kind cannot honour (its
    training objective declares the ones it can: :mod:`harness.students.base`)."""
    student = s["student"]
    honoured = sorted(student_kinds.get(student.kind).switches())
    for switch in student_kinds.unsupported_switches(student.kind, student.train.model_dump()):
        yield problem(f"student.train.{switch}",
                      f"a {student.kind} student cannot honour {switch}: true (it honours: "
                      f"{', '.join(honoured) or 'none'}); remove it")


@rule("student")
def student_fast_path(s: Context) -> Iterator[Problem]:
    """``student.train.fast: on`` where the training objective has no fast path (a classifier
    student) or cannot use it (soft-target distillation needs the full logits): said at
    validate time, not after composing every cell."""
    student = s["student"]
    if student.train.fast != "on":
        return
    if not student_kinds.get(student.kind).fast_path():
        yield problem("student.train.fast", f"a {student.kind} student has no fast training "
                      "path; use fast: auto (or off)")
    elif student.distils_logits:
        yield problem("student.train.fast", "the fast path cannot train on soft targets "
                      "(student.distill needs the full logits); use fast: auto (or off)")


@rule("fields", "student")
def soft_targets_student(s: Context) -> Iterator[Problem]:
    """A field set with ``soft_targets: topk`` trains a causal LM student that shares the
    teacher's token ids (its pretrained ``student.model``), with the soft part of the loss
    given once (not also ``student.distill``) and on the plain training path (the fast path
    never forms the full logits a KL over the vocabulary needs). Each refusal is located at
    the field set's ``soft_targets``. Whether the tokenizers match is a data-fit rule
    (:func:`harness.checks.data_fit.soft_target_tokenizer`): it needs the stored soft labels.
    A ``soft_weight`` beside ``soft_targets: hard`` is not flagged: the key always holds its
    default after validation, so a given one cannot be told from it and changes nothing."""
    student = s["student"]
    for name, f in s["fields"].items():
        if f.soft_targets != "topk":
            continue
        path = f"fields.{name}.soft_targets"
        kind = student_kinds.get(student.kind)
        if not kind.token_soft_labels:
            # config, distill and fast: on are refused for such a kind elsewhere
            others = " or ".join(student_kinds.names_where(lambda k: k.token_soft_labels))
            why = kind.why_not.get("token_soft_labels",
                                   f"a {student.kind} student does not train on them")
            yield problem(path, f"token soft labels need a {others} student: {why}; use "
                          f"soft_targets: hard, or kind: {others}")
            continue
        if student.from_scratch:
            yield problem(path, "soft_targets: topk needs a student sharing the teacher's "
                          "tokenizer: a from-scratch student (student.config) trains its own "
                          "tokenizer on each cell's text, so its token ids never mean the "
                          "teacher's; give student.model (a checkpoint with the teacher's "
                          "tokenizer), or use soft_targets: hard")
        if student.distils_logits:
            yield problem(path, "soft_targets: topk and student.distill both set the soft part "
                          "of the loss (the stored top-k soft labels vs a white-box teacher's "
                          "full distribution); choose one: remove student.distill, or use "
                          "soft_targets: hard")
        if student.train.fast == "on":
            yield problem(path, "soft_targets: topk needs the full logits, which the fast "
                          "training path never forms (the plain path trains them); use "
                          "student.train.fast: auto (or off)")


# --------------------------------------------------------------------------- files


@rule("data", files=True)
def data_files(s: Context) -> Iterator[Problem]:
    """The sample and eval files exist, are regular files and have a readable type."""
    for key in ("samples", "eval"):
        p = getattr(s["data"], key)
        kind = _file_kind(p)
        if kind == "missing":
            yield problem(f"data.{key}", f"file not found: {p}")
        elif kind != "file":  # a device, FIFO or folder: reading it would hang or never end
            yield problem(f"data.{key}", f"not a regular file ({kind}): {p}")
        elif p.suffix.lower() not in (".jsonl", ".parquet", ".json", ".ndjson"):
            yield problem(f"data.{key}",
                          f"unsupported file type {p.suffix!r}: use .jsonl or .parquet")


@rule("student", files=True)
def student_checkpoint(s: Context) -> Iterator[Problem]:
    """The checkpoints the student reads (``student.model``, a causal LM's
    ``student.distill.teacher_model``: the kind's ``CHECKPOINTS``) are folders on this machine,
    and a ``config.json`` in one is a JSON object (see :func:`_checkpoint_problems`)."""
    for checkpoint in s["student"].checkpoints():
        yield from _checkpoint_problems(checkpoint.folder,
                                        ".".join(("student", *checkpoint.field)),
                                        checkpoint.what)


#: Largest config.json read (bytes); a model's is a few kB.
_MAX_CONFIG_BYTES = 16 * 2**20
#: Where a checkpoint path is looked for, said in every "not found" (a Ray cluster's nodes
#: read the same path, and validate cannot see them).
_WHERE_CHECKED = ("validate checks the path on this machine; with --executor ray every node "
                  "also reads it at this same path")


def _checkpoint_problems(folder: Path, field: str, what: str) -> Iterator[Problem]:
    """Why ``folder`` cannot be the checkpoint folder at ``field``: missing (a hub id or a
    path that exists only on a cluster's nodes), a plain file, a device, FIFO or socket, or a
    ``config.json`` that is not a readable JSON object. A folder without config.json is left
    to the loader (tests and from-scratch tools use bare folders)."""
    kind = _file_kind(folder)
    if kind == "missing":
        yield problem(field, f"{what} folder not found: {folder} (a local folder: models are "
                      "not downloaded from the Hugging Face hub, download it first; "
                      f"{_WHERE_CHECKED})")
        return
    if kind != "folder":
        shown = "a plain file" if kind == "file" else kind
        yield problem(field, f"not a folder ({shown}): {folder}; give the {what}'s folder "
                      "(config.json, weights and tokenizer files)")
        return
    config = folder / "config.json"
    kind = _file_kind(config)
    if kind == "missing":
        return
    if kind != "file":
        yield problem(field, f"{config} is not a regular file ({kind})")
        return
    try:
        if config.stat().st_size > _MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {_MAX_CONFIG_BYTES // 2**20} MB")
        data = json.loads(config.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        yield problem(field, f"{config} is not valid JSON ({exc}); the checkpoint is damaged "
                      "or not a Hugging Face model folder")
        return
    if not isinstance(data, dict):
        yield problem(field, f"{config} holds a JSON {type(data).__name__}, not the object of "
                      "a model configuration")


@rule("student", files=True)
def student_adapter_targets(s: Context) -> Iterator[Problem]:
    """Every name in ``student.adapter.target_modules`` matches a module of the checkpoint
    (as peft matches them: the module's path, or its last dotted parts), read from the
    safetensors headers alone (no torch, no weights): a misspelt layer is refused at
    validate, not after composing every cell."""
    student = s["student"]
    named = student.module_targets()
    if named is None or student.model is None:
        return
    where, targets = named
    modules = _checkpoint_modules(student.model)
    if not modules:
        return  # not a folder of safetensors: student_checkpoint says so, or loading will
    leaves = sorted({m.rsplit(".", 1)[-1] for m in modules})
    for k, target in enumerate(targets):
        if not any(m == target or m.endswith("." + target) for m in modules):
            yield problem(f"student.{where}.{k}",
                          f"no module of {student.model} is named {target!r}"
                          f"{did_you_mean(target, leaves)} (its layers: "
                          f"{', '.join(leaves[:12])}{', ...' if len(leaves) > 12 else ''})")


def _checkpoint_modules(folder: Path) -> set[str]:
    """The dotted paths of the modules holding weights in ``folder``'s ``*.safetensors`` files
    (``model.layers.0.self_attn.q_proj``), from each file's JSON header; empty when there is
    none or a header is unreadable."""
    import json
    import struct

    modules: set[str] = set()
    try:
        for path in sorted(folder.glob("*.safetensors")):
            with path.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size > 100 * 2**20:  # a header is a few MB at most: not a safetensors file
                    return set()
                header = json.loads(f.read(size))
            modules |= {name.rsplit(".", 1)[0] for name in header if name != "__metadata__"}
    except (OSError, ValueError, struct.error):
        return set()
    return modules


def _file_kind(p: Path) -> str:
    """``file``, ``folder``, ``missing`` or the kind of special file; never raises."""
    try:
        mode = p.stat().st_mode
    except (OSError, ValueError):  # missing, too long a name, a NUL byte, no permission
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a device or other special file"
