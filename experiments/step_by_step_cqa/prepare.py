"""Turn the recorded PaLM-540B CommonsenseQA outputs into a sample repository and an eval set.

Input (``--data``, the ``cqa`` folder of the shared "Distilling Step-by-Step" copy)::

    cqa_train.json, cqa_test.json       gold, JSON Lines: id, question, choices (5 str), answer
    llm/train_CoT_{0..9}.json           teacher, one JSON array of raw PaLM continuations each
    llm/test_CoT_{0,1}.json

The teacher files carry no ids: element *i* of the concatenation ``<split>_CoT_0, _1, ...``
(numeric order) belongs to gold row *i*. Every split is therefore joined **by position first**,
and only the joined rows are ever sampled (``--size cpu``), so alignment cannot drift.

Output (``--out``): ``samples.jsonl`` (training split, one record per gold row with the
teacher's answer as its only candidate), ``eval.jsonl`` (test split = CommonsenseQA
validation, gold letter as reference, the teacher's answer attached for the harness's teacher
audit and fidelity numbers) and ``prepare.json`` (counts, teacher accuracy under three parsing
rules, judge diagnostics, the audited subset, seed, SHA-256 of every input file).

The unit is the answer **letter** (label unit, labels A-E). How a teacher string becomes a
candidate:

1. cut at the first ``"Q:"`` (PaLM runs on into an invented next exemplar);
2. rationale = text before ``"So the answer is"`` (whitespace collapsed), answer text = after;
3. final = the letter of the single ``(x)`` the answer names; without a letter, the choice whose
   text equals the answer text; a *hedged* answer naming two or more letters ("either (a) X or
   (e) Y") or one that names no choice cannot be mapped, and its final is the raw answer text —
   an off-vocabulary teacher error the harness counts as a warning;
4. a letter whose option text repeats an earlier option (CommonsenseQA has a few duplicated
   choices) is moved to the earlier letter, and the gold letter is the first option equal to
   the gold text, so the same option always has the same letter.

The judge never reads gold except on the declared audited subset (``AUDIT_FRACTION`` of the
training records written, drawn with the seed): there it compares the teacher's letter with gold
(right -> score 5, wrong -> score 1, pool ``failure`` with the gold letter as correction).
Elsewhere a consistency check scores 1-5 from the teacher's own text (see
:func:`consistency_judge`).

Only the standard library is used. Same arguments -> byte-identical files.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
UNIT = "cqa"
TEACHER = "palm_540b"
AUDIT_JUDGE = "gold_audit"
CONSISTENCY_JUDGE = "consistency_v1"
#: Share of the written training records whose teacher answer is checked against gold
#: (a stand-in for a human spot check); the audited count is floor(fraction * n) <= 5%.
AUDIT_FRACTION = 0.05
#: Records written per split by ``--size`` (None: every row). Sizes are caps: a smaller input
#: (the test fixture) is used whole.
SIZES: dict[str, tuple[int | None, int | None]] = {"cpu": (2000, 400), "full": (None, None)}
SPLITS: tuple[str, ...] = ("train", "test")
GOLD_KEYS: tuple[str, ...] = ("id", "question", "choices", "answer")
CUT = "Q:"
ANSWER_CUE = "So the answer is"
WH_WORDS: tuple[str, ...] = ("where", "what", "why", "how", "who", "when", "which")
#: Words that carry no meaning when checking whether a rationale names an option.
STOP_WORDS = frozenset({
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "and", "or", "be", "is", "are", "was",
    "were", "your", "his", "her", "their", "its", "it", "with", "by", "from", "as", "that",
    "this", "into", "up", "out", "some", "something", "someone"})
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / \
    "step_by_step" / "cqa"


class InputProblem(Exception):
    """Bad input (missing path, malformed file, misaligned counts): one line for stderr."""


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def read_gold(path: Path) -> list[dict[str, Any]]:
    """Read one gold file (JSON Lines despite its ``.json`` suffix).

    Returns:
        one dict per row, in file order (row index = position), each with ``GOLD_KEYS``;
        ``choices`` is a list of exactly 5 strings and ``answer`` one of them.

    Raises:
        InputProblem: missing file, a line that is not a JSON object, a missing or mistyped
            field, or a gold answer that is not among its choices.
    """
    if not path.is_file():
        raise InputProblem(f"{path}: gold file not found")
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputProblem(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{path}:{n}: not a JSON object per line ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputProblem(f"{path}:{n}: expected a JSON object")
        missing = [k for k in GOLD_KEYS if k not in row]
        if missing:
            raise InputProblem(f"{path}:{n}: missing field(s) {', '.join(missing)}")
        choices = row["choices"]
        if (not isinstance(choices, list) or len(choices) != len(LETTERS)
                or not all(isinstance(c, str) for c in choices)):
            raise InputProblem(f"{path}:{n}: choices must be a list of {len(LETTERS)} strings")
        if not isinstance(row["question"], str) or not row["question"].strip():
            raise InputProblem(f"{path}:{n}: question must be a non-empty string")
        if not isinstance(row["id"], str) or not isinstance(row["answer"], str):
            raise InputProblem(f"{path}:{n}: id and answer must be strings")
        if row["answer"] not in choices:
            raise InputProblem(f"{path}:{n}: answer {row['answer']!r} is not one of its choices")
        rows.append(row)
    if not rows:
        raise InputProblem(f"{path}: no rows")
    return rows


def teacher_files(llm_dir: Path, split: str) -> list[Path]:
    """The teacher files of a split in **numeric** order (``_10`` after ``_9``).

    Raises:
        InputProblem: no file, or a gap in the numbering (a missing file would shift every
            later row onto the wrong gold item).
    """
    pattern = re.compile(rf"^{split}_CoT_(\d+)\.json$")
    found = {}
    if llm_dir.is_dir():
        for p in llm_dir.iterdir():
            m = pattern.match(p.name)
            if m:
                found[int(m.group(1))] = p
    if not found:
        raise InputProblem(f"{llm_dir}: no teacher files {split}_CoT_<n>.json")
    if sorted(found) != list(range(len(found))):
        raise InputProblem(f"{llm_dir}: {split}_CoT_<n>.json files are not numbered 0.."
                           f"{len(found) - 1} without gaps (found {sorted(found)})")
    return [found[i] for i in range(len(found))]


def read_teacher(files: Sequence[Path]) -> list[str]:
    """Concatenate the JSON arrays of ``files`` in the given order.

    Returns:
        one raw PaLM continuation per gold row (position = row index).

    Raises:
        InputProblem: a file that is not a JSON array of strings.
    """
    out: list[str] = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputProblem(f"{f}: cannot be read as UTF-8 text ({exc})") from None
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{f}: not one JSON array ({exc.msg} at line {exc.lineno})"
                               ) from None
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise InputProblem(f"{f}: expected a JSON array of strings")
        out.extend(data)
    return out


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Parsing one teacher string
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherOutput:
    """One raw PaLM continuation, cut and split.

    Attributes:
        raw: the continuation as recorded (what was generated, invented exemplars included).
        rationale: text before ``ANSWER_CUE`` in the cut text, whitespace collapsed ("" if none).
        answer: text after the cue up to the cut, whitespace collapsed, one final "." removed.
        letters: the distinct lower-case option letters ``(a)``-``(e)`` named in ``answer``,
            in order of first appearance.
        has_cue: whether ``ANSWER_CUE`` occurs before the cut.
    """

    raw: str
    rationale: str
    answer: str
    letters: tuple[str, ...]
    has_cue: bool


_LETTER_RE = re.compile(r"\(([a-eA-E])\)")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def parse_teacher(raw: str) -> TeacherOutput:
    """Cut at the first "Q:" and split into rationale and answer text (see module docstring)."""
    cut = raw.split(CUT, 1)[0]
    head, sep, tail = cut.partition(ANSWER_CUE)
    answer = _collapse(tail)
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    letters: list[str] = []
    for m in _LETTER_RE.finditer(answer):
        x = m.group(1).lower()
        if x not in letters:
            letters.append(x)
    return TeacherOutput(raw=raw, rationale=_collapse(head) if sep else _collapse(cut),
                         answer=answer, letters=tuple(letters), has_cue=bool(sep))


def upstream_label(out: TeacherOutput) -> str:
    """The teacher label under the upstream exact-text rule: the text after the ``(x)`` letter
    (when the answer starts with one), final "." removed. Compared with the gold text."""
    text = out.answer
    if _LETTER_RE.match(text):
        text = text[3:].strip()
    return text


def lenient_first_letter(out: TeacherOutput) -> str | None:
    """The dataset README's lenient rule: the first option letter anywhere in the answer."""
    return out.letters[0].upper() if out.letters else None


def _norm(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed (for text comparisons)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def canonical_letter(index: int, choices: Sequence[str]) -> str:
    """The letter of the first option whose text equals option ``index`` (duplicates share)."""
    return LETTERS[list(choices).index(choices[index])]


def gold_letter(row: dict[str, Any]) -> str:
    """The gold answer as a letter: the first option equal to the gold text."""
    return LETTERS[row["choices"].index(row["answer"])]


def map_choice(out: TeacherOutput, choices: Sequence[str]) -> tuple[str | None, str]:
    """The option letter the teacher chose.

    Returns:
        (letter or None, how): how is ``letter`` (one ``(x)`` named), ``text`` (no letter; the
        answer text equals one option), ``hedged`` (two or more letters named) or ``none``.
    """
    if len(out.letters) == 1:
        return canonical_letter("abcde".index(out.letters[0]), choices), "letter"
    if len(out.letters) > 1:
        return None, "hedged"
    target = _norm(out.answer)
    for i, c in enumerate(choices):
        if target and _norm(c) == target:
            return canonical_letter(i, choices), "text"
    return None, "none"


# --------------------------------------------------------------------------------------
# The consistency judge (reads the teacher's text and the choices, never gold)
# --------------------------------------------------------------------------------------
def _stems(text: str) -> list[str]:
    """Crude word stems: lower-case words, possessive and plural ``s`` dropped."""
    out = []
    for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()):
        w = w.split("'", 1)[0]
        if len(w) > 3 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def _content(option: str) -> set[str]:
    words = _stems(option)
    kept = {w for w in words if w not in STOP_WORDS}
    return kept or set(words)


def _same_word(w: str, v: str) -> bool:
    """Whether two stems are forms of one word: equal, or (both of 4+ letters) sharing a prefix
    of at least 3 letters that misses at most 2 letters of the shorter ("watch"/"watching",
    "vote"/"voting"; not "the"/"thermal")."""
    if w == v:
        return True
    short = min(len(w), len(v))
    if short < 4:
        return False
    k = 0
    while k < short and w[k] == v[k]:
        k += 1
    return k >= 3 and k >= short - 2


def _matched(option: str, text: str) -> tuple[int, int]:
    """(content words of ``option`` found in ``text``, content words of ``option``)."""
    need = _content(option)
    have = set(_stems(text))
    if not need <= STOP_WORDS:  # stop words then cannot name it (nor prefix-match "somewhere")
        have -= STOP_WORDS
    return sum(any(_same_word(w, v) for v in have) for w in need), len(need)


def names_option(option: str, text: str, *, strict: bool = False) -> bool:
    """Whether ``text`` names ``option``: at least half of the option's content words occur
    in some inflected form ("fishing" names "fish lake"); ``strict``: all of them."""
    hit, n = _matched(option, text)
    if n == 0:
        return False
    return hit == n if strict else 2 * hit >= n


def _last_sentence(text: str) -> str:
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    return parts[-1] if parts else ""


def _text_agrees(answer: str, option: str) -> bool:
    """Whether the words after the ``(x)`` letter name the option that letter labels."""
    after = _norm(_LETTER_RE.sub(" ", answer, count=1))
    want = _norm(option)
    if not after or after == want:
        return True
    return (_content(option) == _content(after)
            or difflib.SequenceMatcher(None, after, want).ratio() >= 0.8)


def consistency_judge(out: TeacherOutput, letter: str | None, choices: Sequence[str],
                      question: str = "") -> tuple[int, list[str]]:
    """Score a teacher answer 1-5 from its own text and the options (gold is not read).

    1: no single option can be read from the answer (hedged between options, or none named);
    2: the letter and the words after it name different options (e.g. "(e) ice" where (e) is
       "water cooler");
    3: the rationale never names the chosen option;
    4: the rationale names it, but not in its final sentence, or that sentence names another
       option too (options the question itself names do not count: the final sentence
       usually restates the question);
    5: the rationale's final sentence names the chosen option and no other.

    Args:
        question: the question text (read only to discount options it names itself).

    Returns:
        (score, reason_tags).
    """
    if letter is None:
        return 1, ["no single option" if not out.letters else "hedged between options"]
    option = choices[LETTERS.index(letter)]
    if out.letters and not _text_agrees(out.answer, option):
        return 2, ["letter and answer text disagree"]
    if not names_option(option, out.rationale):
        return 3, ["rationale never names the chosen option"]
    last = _last_sentence(out.rationale)
    if not names_option(option, last):
        return 4, ["final sentence does not name the chosen option"]
    # Strict for other options (they often share words with the chosen one): every content
    # word must occur, and an option contained in the chosen one does not count.
    others = [c for c in dict.fromkeys(choices) if _norm(c) != _norm(option)
              and not names_option(c, option, strict=True)
              and not names_option(c, question, strict=True)
              and names_option(c, last, strict=True)]
    if others:
        return 4, ["final sentence names another option too"]
    return 5, ["final sentence names the chosen option"]


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------
def make_prompt(row: dict[str, Any]) -> str:
    """The question and its five lettered options, as the student sees them."""
    opts = "\n".join(f"({x}) {c}" for x, c in zip(LETTERS, row["choices"], strict=True))
    return f"Question: {_collapse(row['question'])}\nOptions:\n{opts}"


def question_type(question: str) -> str:
    """Slice tag: the first wh-word of the question, else ``other``."""
    words = re.findall(r"[a-z]+", question.lower())
    return next((w for w in words if w in WH_WORDS), "other")


@dataclass(frozen=True)
class Joined:
    """One gold row joined with its teacher output (by position)."""

    row_index: int
    gold: dict[str, Any]
    teacher: TeacherOutput
    letter: str | None
    how: str

    @property
    def final(self) -> str:
        """The candidate's final: the letter, or the raw answer text when unmappable."""
        return self.letter if self.letter is not None else self.teacher.answer

    @property
    def correct(self) -> bool:
        return self.letter is not None and self.letter == gold_letter(self.gold)


def join_split(gold: list[dict[str, Any]], outputs: list[str], split: str) -> list[Joined]:
    """Join gold rows and teacher strings by position (the only key they share).

    Raises:
        InputProblem: the two lists differ in length.
    """
    if len(gold) != len(outputs):
        raise InputProblem(f"{split}: {len(gold)} gold rows but {len(outputs)} teacher outputs; "
                           "they must align one to one by position")
    joined = []
    for i, (g, raw) in enumerate(zip(gold, outputs, strict=True)):
        t = parse_teacher(raw)
        letter, how = map_choice(t, g["choices"])
        joined.append(Joined(i, g, t, letter, how))
    return joined


def _candidate(j: Joined, prompt: str, *, rationale: bool = True) -> dict[str, Any]:
    # usage: whitespace words. The few-shot prompt PaLM actually read is not in the data, so the
    # prompt count is the student prompt (a lower bound); the completion is everything PaLM
    # generated, invented exemplars included, since that is what was paid for.
    return {"teacher": TEACHER, "final": j.final,
            "rationale": (j.teacher.rationale or None) if rationale else None,
            "limits": None, "confidence": None, "trajectory": None,
            "usage": {"prompt_tokens": len(prompt.split()),
                      "completion_tokens": len(j.teacher.raw.split())}}


def _record_id(split: str, j: Joined) -> str:
    return f"cqa-{split}-{j.row_index:05d}-{j.gold['id']}"


def train_record(j: Joined, audited: bool) -> dict[str, Any]:
    """A sample-repository record: the teacher's answer as the only candidate, judged."""
    prompt = make_prompt(j.gold)
    gold = gold_letter(j.gold)
    pools = {TEACHER: "train"}
    failure = None
    if audited:
        score = 5 if j.correct else 1
        tags = ["audit: matches gold"] if j.correct else ["audit: differs from gold"]
        judge_id = AUDIT_JUDGE
        if not j.correct:
            pools = {TEACHER: "failure"}
            failure = {TEACHER: {"kind": "wrong_label" if j.letter else "off_label",
                                 "correction": gold,
                                 "note": f"teacher answered {j.final!r}, gold is {gold}"}}
    else:
        score, tags = consistency_judge(j.teacher, j.letter, j.gold["choices"],
                                        j.gold["question"])
        judge_id = CONSISTENCY_JUDGE
    return {
        "id": _record_id("train", j), "unit": UNIT, "prompt": prompt, "reference": gold,
        "candidates": [_candidate(j, prompt)],
        "judge": {"judge": judge_id, "winner": TEACHER if score >= 4 else None,
                  "scores": {TEACHER: score}, "reason_tags": tags},
        "pools": pools, "failure": failure,
        "tags": {"source": "real", "qtype": question_type(j.gold["question"]),
                 "audited": "yes" if audited else "no"},
        "round": 1,
    }


def eval_record(j: Joined) -> dict[str, Any]:
    """An eval record: gold letter as reference, the teacher's answer attached for the audit."""
    prompt = make_prompt(j.gold)
    return {
        "id": _record_id("test", j), "unit": UNIT, "prompt": prompt,
        "reference": gold_letter(j.gold), "candidates": [_candidate(j, prompt)],
        "tags": {"source": "real", "qtype": question_type(j.gold["question"]),
                 "teacher_answer": "right" if j.correct else "wrong"},
    }


# --------------------------------------------------------------------------------------
# Numbers for prepare.json
# --------------------------------------------------------------------------------------
def _rate(hits: int, n: int) -> dict[str, Any]:
    return {"correct": hits, "n": n, "accuracy": round(hits / n, 6) if n else None}


def teacher_accuracy(rows: Sequence[Joined]) -> dict[str, dict[str, Any]]:
    """Teacher accuracy against gold under the three parsing rules (see README)."""
    return {
        "letter": _rate(sum(j.correct for j in rows), len(rows)),
        "upstream_exact_text": _rate(sum(upstream_label(j.teacher) == j.gold["answer"]
                                         for j in rows), len(rows)),
        "first_letter_lenient": _rate(sum(
            (x := lenient_first_letter(j.teacher)) is not None
            and j.gold["choices"]["ABCDE".index(x)] == j.gold["answer"] for j in rows),
            len(rows)),
    }


def mapping_counts(rows: Sequence[Joined]) -> dict[str, int]:
    """How many answers were mapped by letter / text, or left unmapped (hedged / none)."""
    c = Counter(j.how for j in rows)
    return {k: c.get(k, 0) for k in ("letter", "text", "hedged", "none")}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for r in records)


def prepare(data: Path, out: Path, size: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Read, join, sample, judge and write ``samples.jsonl``, ``eval.jsonl``, ``prepare.json``.

    Args:
        data: the ``cqa`` folder (gold files and ``llm/``).
        out: output folder (created).
        size: ``cpu`` (at most 2,000 train / 400 eval records) or ``full`` (all rows).
        seed: seeds the record sample and the audited subset.

    Returns:
        the prepare.json summary (also written).

    Raises:
        InputProblem: any bad input (see the readers).
    """
    if not data.is_dir():
        raise InputProblem(f"{data}: dataset folder not found")
    if size not in SIZES:
        raise InputProblem(f"unknown size {size!r} (known: {', '.join(SIZES)})")
    joined: dict[str, list[Joined]] = {}
    inputs: list[Path] = []
    for split in SPLITS:
        gold_path = data / f"cqa_{split}.json"
        files = teacher_files(data / "llm", split)
        joined[split] = join_split(read_gold(gold_path), read_teacher(files), split)
        inputs += [gold_path, *files]
    rng = random.Random(seed)
    picked: dict[str, list[Joined]] = {}
    for split, cap in zip(SPLITS, SIZES[size], strict=True):
        rows = joined[split]
        if cap is not None and cap < len(rows):
            # Sampling happens after the positional join, so alignment is unaffected.
            idx = sorted(rng.sample(range(len(rows)), cap))
            rows = [rows[i] for i in idx]
        picked[split] = rows
    train, test = picked["train"], picked["test"]
    n_audit = int(AUDIT_FRACTION * len(train))
    audited = set(rng.sample(range(len(train)), n_audit))
    samples = [train_record(j, i in audited) for i, j in enumerate(train)]
    evals = [eval_record(j) for j in test]
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "samples.jsonl", _jsonl(samples))
    _write_atomic(out / "eval.jsonl", _jsonl(evals))

    # Diagnostic only (reads gold after the fact; composition never sees it): how often the
    # teacher is right at each consistency score, i.e. whether the judge is informative.
    by_score: dict[str, dict[str, Any]] = {}
    for i, (j, r) in enumerate(zip(train, samples, strict=True)):
        if i in audited:
            continue
        s = str(r["judge"]["scores"][TEACHER])
        d = by_score.setdefault(s, {"correct": 0, "n": 0})
        d["correct"] += int(j.correct)
        d["n"] += 1
    for d in by_score.values():
        d["accuracy"] = round(d["correct"] / d["n"], 6)
    audited_rows = [train[i] for i in sorted(audited)]
    summary: dict[str, Any] = {
        "dataset": "step_by_step/cqa (PaLM-540B CoT outputs on CommonsenseQA)",
        "size": size, "seed": seed,
        "counts": {"train_rows_available": len(joined["train"]),
                   "test_rows_available": len(joined["test"]),
                   "samples": len(samples), "eval": len(evals)},
        "teacher_accuracy": {
            "eval": teacher_accuracy(test), "train_written": teacher_accuracy(train),
            "train_split_all": teacher_accuracy(joined["train"]),
            "test_split_all": teacher_accuracy(joined["test"]),
        },
        "mapping": {"train_written": mapping_counts(train), "eval": mapping_counts(test)},
        "off_vocabulary_finals": {"samples": sum(j.letter is None for j in train),
                                  "eval": sum(j.letter is None for j in test)},
        "audit": {"fraction": AUDIT_FRACTION, "records": n_audit,
                  "share": round(n_audit / len(samples), 6) if samples else 0.0,
                  "teacher_wrong": sum(not j.correct for j in audited_rows),
                  "judge": AUDIT_JUDGE},
        "consistency_judge": {
            "judge": CONSISTENCY_JUDGE,
            "score_counts": {k: by_score[k]["n"] for k in sorted(by_score)},
            "teacher_accuracy_by_score_diagnostic": {k: by_score[k] for k in sorted(by_score)},
        },
        "inputs_sha256": {p.relative_to(data).as_posix(): sha256_file(p) for p in inputs},
        "outputs_sha256": {name: sha256_file(out / name)
                           for name in ("samples.jsonl", "eval.jsonl")},
    }
    _write_atomic(out / "prepare.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring. Exit 0, or 2 with one line on stderr."""
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="Build the step_by_step_cqa experiment data.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the cqa folder of the shared step_by_step dataset")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default experiments/step_by_step_cqa/data/<size>)")
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else here / "data" / args.size
    try:
        summary = prepare(args.data, out, args.size, args.seed)
    except InputProblem as exc:
        print(f"prepare.py: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"prepare.py: {exc}", file=sys.stderr)
        return 2
    acc = summary["teacher_accuracy"]
    print(f"wrote {summary['counts']['samples']} samples and {summary['counts']['eval']} eval "
          f"records to {out}; teacher letter accuracy: eval "
          f"{acc['eval']['letter']['accuracy']}, train {acc['train_written']['letter']['accuracy']}"
          f"; audited {summary['audit']['records']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
