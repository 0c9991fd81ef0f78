"""The next-token distribution of constrained decoding over a set of choices.

When a model may only write one of a few choices (a unit's labels), the probability of each
next token is the probability of the choices that continue with it: at token ``k`` of a written
choice, the choices sharing its first ``k`` tokens are grouped by their token ``k``, each group
weighing the sum of its choices' probabilities, renormalised over the groups. At the first
token that is the choice distribution itself; inside one choice's own tokens it is certain.

One home for the two places that need it: the local ``hf`` teacher stores it as a scored
label's soft labels (:mod:`harness.teachers.providers.hf_local`), and a student regroups a
teacher's label probabilities by its own tokens (:mod:`harness.train.soft_targets`).
Standard library only (the GPU worker's path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def next_token_masses(tokens: Mapping[str, Sequence[int]], probs: Mapping[str, float],
                      prefix: Sequence[int]) -> dict[int, float]:
    """Token id -> the summed probability of the choices that continue ``prefix`` with it.

    Args:
        tokens: each choice's token ids.
        probs: each choice's probability (choices missing from ``tokens`` are ignored).
        prefix: the tokens written so far (k of them).

    Returns:
        unnormalised masses of the possible token ``k`` (empty when no choice continues
        ``prefix``); divide by their sum for the distribution.
    """
    k = len(prefix)
    mass: dict[int, float] = {}
    for choice, ids in tokens.items():
        if len(ids) > k and list(ids[:k]) == list(prefix):
            mass[ids[k]] = mass.get(ids[k], 0.0) + probs[choice]
    return mass
