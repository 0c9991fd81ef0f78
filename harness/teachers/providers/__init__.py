"""Teacher providers: ``openai`` (:mod:`.openai_chat`) and ``hf`` (:mod:`.hf_local`), built from
a ``teachers:`` entry by :func:`build_teacher`; what they share is in :mod:`.common`."""

from harness.teachers.providers.build import build_request, build_teacher
from harness.teachers.providers.common import config_digest, with_system

__all__ = ["build_request", "build_teacher", "config_digest", "with_system"]
