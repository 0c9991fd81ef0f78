"""Analysis: attribution, learning curves, fidelity, ROI ledger, stop signals and the gate."""
