"""Composition: buckets, failure samples, confidence, field ablations, scale, target templates."""

from harness.compose.compose import OUTPUT_COLUMNS, ComposedCell, compose_cell
from harness.compose.context import ComposeContext, build_context
from harness.compose.write import eval_frame, write_cell

__all__ = ["OUTPUT_COLUMNS", "ComposeContext", "ComposedCell", "build_context", "compose_cell",
           "eval_frame", "write_cell"]
