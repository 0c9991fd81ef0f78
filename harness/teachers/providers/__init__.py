"""Teacher providers: ``openai`` (:mod:`.openai_chat`) and ``hf`` (:mod:`.hf_local`), built from
a ``teachers:`` entry by :func:`build_teacher`; what they share is in :mod:`.common`.

The ``openai`` provider is split by concern: :mod:`.openai_wire` (request body and response
parsing), :mod:`.openai_errors` (classifying a failed attempt), :mod:`.logprob_labels` (label
probabilities from top log-probabilities) and :mod:`.openai_chat` (the teacher: concurrency,
retries, checks)."""

from harness.teachers.providers.build import build_teacher
from harness.teachers.providers.common import config_digest, with_system

__all__ = ["build_teacher", "config_digest", "with_system"]
