"""Students: the kind interface and registry (:mod:`.base`), the causal LM (:mod:`.causal_lm`,
built by :mod:`.build`) and the classifier (:mod:`.classifier`, pooled by :mod:`.pooling`)."""
