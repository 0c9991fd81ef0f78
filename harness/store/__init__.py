"""Results store: the run folder layout, per-cell status, and the long results table."""
