"""Declarative experiment and evaluation harness for knowledge distillation.

The flow is one-directional (docs/architecture.md): experiment YAML -> experiment model ->
matrix of cells -> composed training set per cell -> worker (train + evaluate) -> results store
-> analysis -> report. This package's top level stays import-light so that `harness validate` and
`harness plan` answer in about a second: torch, transformers and lm-eval are imported lazily.
"""

__version__ = "0.1.0"
