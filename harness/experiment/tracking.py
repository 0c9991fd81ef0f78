"""``tracking:``: log the run into an experiment tracker (optional; never in cell ids).

```yaml
tracking:
  mlflow:
    uri: http://mlflow.internal:5000   # a tracking server or store URI; omitted: the embedded
                                       # store, sqlite:///<runs>/<name>/mlflow.db
    experiment: kd-support             # MLflow experiment name (default: the experiment's name)
    required: false                    # true: an unreachable tracker stops `harness run` (exit 2)
```

``harness run`` then logs one parent MLflow run per run folder and one nested run per finished
cell; ``harness gate`` and ``harness report`` add the decision and the report to the parent
(:mod:`harness.tracking`). The section says where results are *recorded*, never what a cell
computes, so it is left out of the effective spec a cell id hashes
(:func:`harness.matrix.effective_spec`): adding it reuses every finished cell. Tracking is off
unless the section (or ``harness run --track URI``) is given: a plain run imports nothing of
MLflow.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from harness.experiment.base import Strict

#: ``scheme://user:password@host``: a secret in the URI (it would be copied into run.json,
#: tracking.json and messages).
_SECRET_IN_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@")


def check_uri_secret(uri: str) -> str:
    """Refuse a tracking URI that carries a password (ValueError); MLflow reads credentials
    from ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` or
    ``MLFLOW_TRACKING_TOKEN`` instead, and those stay out of every file the harness writes."""
    if _SECRET_IN_URI.match(uri):
        raise ValueError("holds a password (user:password@): give it to MLflow in "
                         "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                         "MLFLOW_TRACKING_TOKEN) instead; the URI is recorded in the run folder")
    return uri


class MlflowSpec(Strict):
    """``tracking.mlflow``: where the runs go and whether the tracker must be reachable."""

    uri: str | None = Field(
        None, description="MLflow tracking URI: a server (http://host:5000) or a store "
        "(sqlite:///path.db, postgresql://...). Omitted: the embedded SQLite store in the run "
        "folder (<runs>/<experiment>/mlflow.db, artifacts in mlartifacts/ beside it). "
        "`harness run --track URI` overrides it.")
    experiment: str | None = Field(
        None, description="MLflow experiment the runs are logged under (created when missing; "
        "default: the experiment's name).")
    required: bool = Field(
        False, description="true: an unreachable tracker at the start of `harness run` is an "
        "error (exit 2, nothing run); false: a warning, and the run goes on untracked.")

    @field_validator("uri", "experiment")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty: leave the key out for the default")
        if v is not None and v != v.strip():
            raise ValueError(f"{v!r} has leading or trailing spaces")
        return v

    @field_validator("uri")
    @classmethod
    def _no_secret(cls, v: str | None) -> str | None:
        return None if v is None else check_uri_secret(v)


class TrackingSpec(Strict):
    """``tracking:``: the experiment trackers ``harness run`` logs into (MLflow for now)."""

    mlflow: MlflowSpec | None = Field(
        None, description="Log runs to MLflow: `{}` for the embedded store in the run folder, "
        "or `{uri: ...}` for a tracking server.")
