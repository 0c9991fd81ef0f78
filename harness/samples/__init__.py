"""Sample repository and eval set: load, validate (pandera on polars), statistics, leakage."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from harness.errors import ProblemLog
from harness.experiment.load import LoadedExperiment
from harness.samples.leakage import find_leaks
from harness.samples.validate import Repository, file_sha256, load_repository

__all__ = ["Dataset", "Repository", "file_sha256", "load_data", "load_repository"]


@dataclass
class Dataset:
    """Both validated files of an experiment.

    Attributes:
        train: the sample repository (leaked records already dropped when ``leakage: drop``).
        eval: the eval set.
        leaks: leaking (eval item, training record) pairs found (see :func:`find_leaks`).
        warnings: tolerated oddities to show the user.
    """

    train: Repository
    eval: Repository
    leaks: pl.DataFrame
    warnings: list[str]


def _drop_records(repo: Repository, recs: pl.Series) -> None:
    t = repo.tables
    for name in ("items", "candidates", "scores", "pools", "failures", "tags"):
        df = getattr(t, name)
        setattr(t, name, df.filter(~pl.col("rec").is_in(recs.implode())))


def load_data(loaded: LoadedExperiment) -> Dataset:
    """Load and validate the experiment's sample repository and eval set, then check leakage.

    Raises:
        InputError: every problem of both files (and leakage, unless the YAML allows it).
    """
    exp = loaded.spec
    log = ProblemLog()
    train = load_repository(exp.data.samples, exp, is_eval=False, log=log)
    ev = load_repository(exp.data.eval, exp, is_eval=True, log=log)
    warnings: list[str] = []
    leaks = pl.DataFrame()
    if train is not None and ev is not None:
        leaks = find_leaks(train.tables.items, ev.tables.items)
        if leaks.height:
            how = {"id": "same id as", "prompt": "same normalized prompt as"}
            detail = [
                (f"{ev.path.name}:{el}", by,
                 f"eval item {eid!r} leaks into training: {how[by]} record {tid!r} "
                 f"({train.path.name}:{tl})")
                for eid, el, tid, tl, by in leaks.select(
                    "eval_id", "eval_line", "train_id", "train_line", "by").iter_rows()
            ]
            if exp.data.leakage == "error":
                for where, fld, msg in detail:
                    log.add(where, fld, msg + " (set data.leakage to 'drop' to remove such "
                            "training records)")
            else:
                n_recs = leaks["train_rec"].n_unique()
                action = "dropped from training" if exp.data.leakage == "drop" else "kept"
                warnings.append(f"leakage: {leaks.height} eval/train overlap(s); "
                                f"{n_recs} training record(s) {action}")
                if exp.data.leakage == "drop":
                    _drop_records(train, leaks["train_rec"].unique())
        warnings += train.warnings + ev.warnings
    log.raise_if_any(f"{loaded.path}: the data is not valid ({log.total} problem(s))")
    assert train is not None and ev is not None
    return Dataset(train=train, eval=ev, leaks=leaks, warnings=warnings)
