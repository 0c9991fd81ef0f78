"""Training: one loop (:mod:`.loop`) over objectives (:mod:`.objectives`), with its schedule
(:mod:`.schedule`), packing (:mod:`.packing`) and the chunked cross-entropy (:mod:`.linear_ce`)."""
