"""Shared test helpers, imported as ``from tests.helpers import ...`` (pytest's ``pythonpath``
puts the repository root on ``sys.path``; ``tests/`` itself stays a namespace package).

- ``tiny``: the tiny hand-written experiment (records, spec, routing data, JSONL writer and
  reader).
- ``scripts``: ``load_script``, a script outside the package (``experiments/*/prepare.py``)
  loaded as a module.
- ``synth``: synthetic run folders with known truth, for the analysis and gate tests.
- ``hostile``: hostile experiment YAMLs (bombs, tags, paths, templates) and a deadline.

Fixtures stay in ``tests/conftest.py``; this package holds only plain functions and data.
"""

from tests.helpers.scripts import load_script
from tests.helpers.tiny import (
    BASE_SPEC,
    REPO,
    TINY_STUDENT,
    WORDS,
    cand,
    label_record,
    read_jsonl,
    route_data,
    tiny_eval,
    tiny_samples,
    write_jsonl,
)

__all__ = ["BASE_SPEC", "REPO", "TINY_STUDENT", "WORDS", "cand", "label_record", "load_script",
           "read_jsonl", "route_data", "tiny_eval", "tiny_samples", "write_jsonl"]
