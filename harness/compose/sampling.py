"""Representative, nested subsampling for scale < 1.

One order over every training record of a unit is computed once per experiment; a cell at scale
``s`` keeps, per unit, the first ``round(s * n)`` of its eligible records in that order. The 25%
set is therefore a subset of the 50% set, and learning curves compare like with like.

The order is built so that any prefix is representative:

1. prompts are clustered per unit (TF-IDF with scikit-learn, then MiniBatchKMeans);
2. near-duplicates — prompts equal after lower-casing, masking digits and dropping punctuation —
   are ranked after every unique prompt (duplicates are "removed" from any subset that can do
   without them, while scale 1.0 still means every record);
3. clusters take turns (round robin, in a seeded random cluster order), and within a cluster
   records come in a seeded random order — so small clusters are not crowded out by large ones.

Tokenisation and the term-count matrix are computed with polars (vectorised) and handed to
scikit-learn's ``TfidfTransformer``; this keeps a million-prompt repository within seconds.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from harness.experiment.models import SamplingSpec

_MAX_K = 256
#: Rows MiniBatchKMeans is fitted on; larger units are assigned to the fitted centroids.
_FIT_SAMPLE = 20_000


def signature(col: str = "prompt") -> pl.Expr:
    """Near-duplicate signature: lower-cased, digits masked, punctuation and extra spaces gone."""
    return (pl.col(col).str.to_lowercase().str.replace_all(r"\d+", "0")
            .str.replace_all(r"[^\w\s]", " ").str.replace_all(r"\s+", " ").str.strip_chars())


def _tfidf(docs: pl.Series):  # type: ignore[no-untyped-def]
    """Sparse TF-IDF matrix (n_docs, vocab) of word tokens, L2-normalised rows."""
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfTransformer

    words = (pl.DataFrame({"doc": np.arange(len(docs)), "w": docs.str.extract_all(r"\w\w+")})
             .explode("w").drop_nulls("w"))
    vocab = words.select(pl.col("w").unique().sort()).with_row_index("col")
    counts = (words.join(vocab, on="w").group_by("doc", "col").len()
              .select("doc", "col", "len"))
    mat = csr_matrix(
        (counts["len"].to_numpy().astype(np.float32),
         (counts["doc"].to_numpy(), counts["col"].to_numpy().astype(np.int64))),
        shape=(len(docs), max(vocab.height, 1)),
    )
    return TfidfTransformer(sublinear_tf=True).fit_transform(mat)


def cluster_labels(prompts: pl.Series, k: int, seed: int) -> np.ndarray:
    """MiniBatchKMeans cluster of each prompt, shape (n,), values in [0, k)."""
    n = len(prompts)
    if k <= 1 or n <= k:
        return np.zeros(n, dtype=np.int64) if k <= 1 else np.arange(n, dtype=np.int64) % k
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    x = _tfidf(prompts)
    with threadpool_limits(1):  # small matrices: thread start-up costs more than it saves
        return _fit_predict(MiniBatchKMeans, x, n, k, seed)


def _fit_predict(kmeans_cls: type, x: object, n: int, k: int, seed: int) -> np.ndarray:
    km = kmeans_cls(n_clusters=k, random_state=seed, n_init=1, batch_size=1024, max_iter=20)
    if n <= _FIT_SAMPLE:
        return km.fit_predict(x).astype(np.int64)
    # Centroids settle long before all rows are seen: fit on a seeded sample, assign all.
    rows = np.random.default_rng(seed).choice(n, size=_FIT_SAMPLE, replace=False)
    km.fit(x[np.sort(rows)])  # type: ignore[index]
    return km.predict(x).astype(np.int64)


def default_k(n: int) -> int:
    """About sqrt(n / 2) clusters, between 1 and 256."""
    return max(1, min(_MAX_K, int(math.sqrt(n / 2))))


def rank_unit(items: pl.DataFrame, spec: SamplingSpec) -> pl.DataFrame:
    """Subsampling order of one unit's records.

    Args:
        items: columns ``rec`` (int) and ``prompt`` (str), one unit's records.
        spec: sampling options (seed, dedup, clusters).

    Returns:
        columns ``rec``, ``order`` (0 = taken first), ``cluster``, ``dup`` (bool).
    """
    n = items.height
    if n == 0:
        return pl.DataFrame(schema={"rec": pl.Int64, "order": pl.Int64, "cluster": pl.Int64,
                                    "dup": pl.Boolean})
    rng = np.random.default_rng(spec.seed)
    k = spec.clusters_per_unit or default_k(n)
    df = items.select("rec", "prompt").with_columns(
        pl.Series("perm", rng.permutation(n)), signature().alias("sig"))
    # Cluster unique signatures only: near-duplicates share a cluster by construction.
    sigs = df.select("sig").unique(maintain_order=True)
    labels = cluster_labels(sigs["sig"], min(k, sigs.height), spec.seed)
    sigs = sigs.with_columns(pl.Series("cluster", labels))
    cluster_rank = pl.DataFrame({"cluster": np.arange(max(k, 1)),
                                 "cluster_turn": rng.permutation(max(k, 1))})
    df = (df.join(sigs, on="sig", how="left").join(cluster_rank, on="cluster", how="left")
          .sort("perm"))
    dup = (pl.col("sig").cum_count().over("sig") > 1) if spec.dedup else pl.lit(False)
    df = df.with_columns(dup.alias("dup"))
    df = df.with_columns(pl.col("perm").rank("ordinal").over("cluster", "dup").alias("turn"))
    df = df.sort("dup", "turn", "cluster_turn").with_row_index("order")
    return df.select("rec", pl.col("order").cast(pl.Int64), "cluster", "dup")


def rank_records(items: pl.DataFrame, spec: SamplingSpec) -> pl.DataFrame:
    """:func:`rank_unit` for every unit; ``items`` has ``rec``, ``unit``, ``prompt``."""
    parts = [rank_unit(g, spec) for _, g in items.sort("rec").group_by("unit",
                                                                      maintain_order=True)]
    return pl.concat(parts) if parts else rank_unit(items.clear(), spec)


def subsample(samples: pl.DataFrame, ranking: pl.DataFrame, scale: float) -> pl.DataFrame:
    """Keep, per unit, the first ``round(scale * n)`` eligible records of ``ranking``.

    Args:
        samples: composed rows with ``rec`` and ``unit`` (several rows may share a record).
        ranking: output of :func:`rank_records`.
        scale: in (0, 1].
    """
    if scale >= 1.0:
        return samples
    recs = (samples.select("rec", "unit").unique().join(ranking.select("rec", "order"), on="rec")
            .sort("order"))
    keep = recs.with_columns(pl.int_range(pl.len()).over("unit").alias("pos"),
                             pl.len().over("unit").alias("n")).filter(
        pl.col("pos") < (pl.col("n") * scale).round().clip(lower_bound=1))
    return samples.join(keep.select("rec"), on="rec", how="semi")
