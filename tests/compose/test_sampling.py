"""Scale < 1: nested, representative, near-duplicates last."""

from __future__ import annotations

import polars as pl

from harness.compose.sampling import rank_unit, subsample
from harness.experiment.models import SamplingSpec

TOPICS = ["refund for my card charge", "parcel stuck in transit", "app crashes at login",
          "change my account email"]


def word(i: int) -> str:
    """A distinct letters-only word per i (digits would be masked as near-duplicates)."""
    out = ""
    while True:
        out += "abcdefghijklmnopqrstuvwxyz"[i % 26]
        i //= 26
        if not i:
            return "x" + out


def items(n: int, dup_every: int = 0) -> pl.DataFrame:
    prompts = []
    for i in range(n):
        base = f"{TOPICS[i % 4]} case {word(i)}"
        # near-duplicates: the same text with a different order number
        prompts.append(f"{TOPICS[0]} case order {i}" if dup_every and i % dup_every == 0
                       else base)
    return pl.DataFrame({"rec": list(range(n)), "unit": ["u"] * n, "prompt": prompts})


def test_subsets_are_nested_and_sized():
    it = items(400)
    ranking = rank_unit(it, SamplingSpec(seed=0))
    samples = it.select("rec", "unit")
    sizes, sets = [], []
    for s in (0.25, 0.5, 1.0):
        sub = subsample(samples, ranking, s)
        sizes.append(sub.height)
        sets.append(set(sub["rec"]))
    assert sizes == [100, 200, 400]
    assert sets[0] < sets[1] < sets[2]


def test_ranking_is_deterministic_and_seeded():
    it = items(200)
    a = rank_unit(it, SamplingSpec(seed=1))
    assert a.equals(rank_unit(it, SamplingSpec(seed=1)))
    assert not a.equals(rank_unit(it, SamplingSpec(seed=2)))


def test_near_duplicates_come_after_unique_prompts():
    it = items(200, dup_every=5)  # 40 copies of one prompt (digits differ -> same signature)
    ranking = rank_unit(it, SamplingSpec(seed=0)).sort("order")
    dups = ranking.filter(pl.col("dup"))
    assert dups.height == 39
    assert dups["order"].min() > ranking.filter(~pl.col("dup"))["order"].max()
    half = set(subsample(it.select("rec", "unit"), ranking, 0.5)["rec"])
    assert len(half & set(dups["rec"])) == 0


def test_clusters_are_balanced_in_small_subsets():
    it = items(400)
    ranking = rank_unit(it, SamplingSpec(seed=0, clusters_per_unit=4)).sort("order")
    sizes = dict(ranking.group_by("cluster").len().iter_rows())
    assert len(sizes) > 1
    for prefix in (8, 40, 120):
        counts = dict(ranking.head(prefix).group_by("cluster").len().iter_rows())
        # round robin: clusters that still have records are never more than one turn apart
        open_counts = [counts.get(c, 0) for c, n in sizes.items() if n > counts.get(c, 0)]
        assert max(counts.values()) - min(open_counts, default=max(counts.values())) <= 1


def test_subsample_keeps_all_rows_of_a_record():
    it = items(100)
    samples = pl.concat([it.select("rec", "unit"), it.select("rec", "unit")])
    sub = subsample(samples, rank_unit(it, SamplingSpec()), 0.5)
    assert sub.height == 100 and sub["rec"].n_unique() == 50
