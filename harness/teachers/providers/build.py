"""From a ``teachers:`` entry to a :class:`~harness.teachers.base.Teacher` (the providers' shared
helpers: :mod:`.common`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
from harness.teachers.base import Teacher

if TYPE_CHECKING:
    from harness.teachers.cache import CallCache


def build_teacher(name: str, spec: OpenAITeacherSpec | HFTeacherSpec,
                  cache: CallCache | None = None) -> Teacher:
    """The provider of ``spec`` (imported only when used: the openai client and transformers
    are heavy).

    ``cache``: the call cache the teacher will be wrapped in. A teacher with ``batch: true``
    needs it (:mod:`.openai_batch` records its batches there, so an interrupted run resumes
    them); the others ignore it.
    """
    if isinstance(spec, OpenAITeacherSpec) and spec.batch:
        from harness.teachers.providers.openai_batch import OpenAIBatchTeacher

        if cache is None:
            raise ValueError(f"teacher {name!r} has batch: true: pass the call cache its "
                             "batches are recorded in")
        return OpenAIBatchTeacher(name, spec, cache)
    if isinstance(spec, OpenAITeacherSpec):
        from harness.teachers.providers.openai_chat import OpenAIChatTeacher

        return OpenAIChatTeacher(name, spec)
    from harness.teachers.providers.hf_local import HFLocalTeacher

    return HFLocalTeacher(name, spec)
