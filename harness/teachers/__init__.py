"""The teacher stage: LLM teachers and a judge that write and score the sample repository.

* :mod:`.base`: the interface (:class:`ChatRequest`, :class:`Completion`, :class:`Teacher`);
* :mod:`.providers`: ``openai`` (an OpenAI-compatible endpoint) and ``hf`` (a local model),
  built from a ``teachers:`` entry by :func:`build_teacher`;
* :mod:`.cache`: the SQLite call cache (:class:`CachedTeacher`);
* :mod:`.tally`: the per-teacher counters (:class:`TeacherTally`) it updates.

Only light modules are imported here; the openai client and transformers load with a provider.
"""

from harness.teachers.base import ChatRequest, Completion, ConfidenceSource, ErrorKind, Teacher
from harness.teachers.cache import CachedTeacher, CallCache, call_key
from harness.teachers.providers import build_teacher
from harness.teachers.tally import TeacherTally

__all__ = ["CachedTeacher", "CallCache", "ChatRequest", "Completion", "ConfidenceSource",
           "ErrorKind", "Teacher", "TeacherTally", "build_teacher", "call_key"]
