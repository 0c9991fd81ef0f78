"""Students: the kind interface and registry (:mod:`.base`), the causal LM (:mod:`.causal_lm`,
built by :mod:`.build`) and the classifier (:mod:`.classifier`, pooled by :mod:`.pooling`).

Importing this package registers the built-in kinds (each registers itself on import), so
:func:`harness.students.base.get` knows them whichever module of the package was imported.
"""

# The built-ins register on import; base, which they import, imports none of them.
from harness.students import causal_lm, classifier  # noqa: F401
