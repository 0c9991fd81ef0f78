"""Every rule about an experiment that the pydantic models cannot state on their own.

The split:

* :mod:`harness.experiment` is a leaf: the models and the YAML reading. Its
  :func:`~harness.experiment.parse_experiment` reads, resolves and validates the document with
  pydantic and returns the problems found so far plus each validated section (None where it
  failed). It never raises for a validation problem, and it imports nothing above itself.
* this package sits above spec, compose, evaluate (the unit kinds) and the student kinds, whose
  registries the rules check names against. :mod:`harness.checks.experiment` holds the
  cross-section rules and :func:`load_experiment`, the one function callers use to load an
  experiment: it parses, runs every rule whose sections validated, reports into the same problem
  log (so one pass still lists pydantic's problems and the rules' together, sorted by line) and
  raises one :class:`~harness.errors.InputError`. :mod:`harness.checks.data_fit` holds the rules
  that need the loaded data (:func:`check_data_fit`, run after :func:`harness.samples.load_data`).

A rule is a small function registered with the sections it needs (:mod:`harness.checks.registry`).
"""

from harness.checks import teachers as _teachers  # noqa: F401  (registers the teacher rules)
from harness.checks.data_fit import DATA_RULES, check_data_fit
from harness.checks.experiment import RULES, load_experiment
from harness.checks.registry import Context, Rule, Rules

__all__ = ["DATA_RULES", "RULES", "Context", "Rule", "Rules", "check_data_fit",
           "load_experiment"]
