"""Benchmark: how often the verdicts and the gate are wrong, on simulated runs with known truth.

Runs are simulated by :mod:`harness.analysis.simulate` (eval items crossed with training seeds;
each seed shifts a student's skill and flips only some items) and go through the real analysis:
:func:`harness.analysis.attribution.attribution` for the attribution scenarios,
:func:`harness.analysis.analyse.analyse_run` (the whole gate) for the gate scenarios.

Scenarios (each a share of runs with a Clopper-Pearson interval):

- ``null``: every arm equally good -> family-wise false positives ("better"/"worse" on a null
  contrast), per family and over the whole run, and the mean minimum detectable effect the
  analysis reports for the planted contrast (``b0/rich`` vs the baseline on route accuracy);
- ``power``: that effect planted at 0.5x, 1x and 2x the mean reported MDE -> share of runs
  where the contrast is "better";
- ``saturated``: the help-desk case (baseline refusal F1 0.0 on every seed, two arms 1.0 on every
  seed; route at the ceiling for every arm) -> the effect found, the ceiling never significant
  and never "not estimable";
- ``identical``: arms answering exactly alike on every item and seed (half the runs with seed
  noise, half deterministic) -> never "not estimable", never significant;
- ``scale_noise``: seeds at two scales with a 5x larger seed SD at the small one -> FWER;
- ``chance``: every arm at chance on route (guessing), on esc (always escalating), or on both ->
  the gate's false CONTINUE rate;
- ``curves``: a rising and a flat learning curve over 3 scale points, gated after round 1 and
  after round 2 (``past`` = round 1, the same eval items, twice the data) -> false STOP on the
  rising curve; STOP / INCONCLUSIVE / CONTINUE on the flat one.

Writes ``benchmarks/results/verdict_calibration.json`` (``--out``). ``--quick`` for a smoke run;
``--runs N`` runs per scenario (``--null-runs`` for ``null``: its interval's upper bound needs
~1,000), ``--scenarios a,b``; ``--update`` merges the scenarios run into an existing ``--out``
(a long run, scenario by scenario; ``power`` then plants at the stored ``null`` MDE). The
reduced version in the test suite (``tests/analysis/test_simulation.py``) calls the same
scenario functions with fewer runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the harness from this checkout
    sys.path.insert(0, str(REPO))

from harness import __version__ as harness_version  # noqa: E402
from harness.analysis.analyse import analyse_run  # noqa: E402
from harness.analysis.attribution import attribution  # noqa: E402
from harness.analysis.load import RunData  # noqa: E402
from harness.analysis.simulate import (  # noqa: E402
    PLANTED,
    Design,
    draw_items,
    gate_design,
    identical_design,
    null_design,
    saturated_design,
    scale_noise_design,
    simulate_run,
)

FAMILIES = ("vs_baseline", "bucket_effects", "field_effects")
DECISIONS = ("CONTINUE", "STOP", "INCONCLUSIVE", "SHIFT_TO_REAL_DATA")
#: Level of the Clopper-Pearson intervals reported.
LEVEL = 0.95
#: Multiples of the reported MDE at which power is measured.
POWER_AT = (0.5, 1.0, 2.0)
#: Sub-cases of ``chance``: the units on which every arm learned nothing.
CHANCE_CASES: tuple[tuple[str, ...], ...] = (("route", "esc"), ("esc",), ("route",))


# --- counting -------------------------------------------------------------------------------

def share(k: int, n: int, level: float = LEVEL) -> dict[str, Any]:
    """``k`` of ``n`` runs as a rate with its exact (Clopper-Pearson) ``level`` interval."""
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci": [None, None]}
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return {"k": int(k), "n": int(n), "rate": k / n, "ci": [float(ci.low), float(ci.high)]}


def target(name: str, figure: Mapping[str, Any], met: bool, goal: str) -> dict[str, Any]:
    """One target line: what is asked, the figure with its interval, met or not."""
    return {"target": name, "goal": goal, "rate": figure["rate"], "ci": figure["ci"],
            "k": figure["k"], "n": figure["n"], "met": bool(met)}


@dataclass
class Tally:
    """Counts of boolean outcomes over runs, and the sums of numeric ones."""

    runs: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, outcome: Mapping[str, bool | float | int]) -> None:
        self.runs += 1
        for k, v in outcome.items():
            if isinstance(v, bool):
                self.hits[k] += v
            else:
                self.sums.setdefault(k, []).append(float(v))

    def share(self, key: str, level: float = LEVEL) -> dict[str, Any]:
        return share(self.hits[key], self.runs, level)

    def mean(self, key: str) -> float:
        return float(np.mean(self.sums[key])) if self.sums.get(key) else float("nan")


# --- per-run outcomes -----------------------------------------------------------------------

def significant(c: Mapping[str, Any]) -> bool:
    """A verdict that claims a difference."""
    return c["verdict"] in ("better", "worse")


def not_estimable(c: Mapping[str, Any]) -> bool:
    return bool(c["verdict"].startswith("not estimable"))


def attribution_outcome(out: Mapping[str, Any],
                        affected: Callable[[Mapping[str, Any]], bool] = lambda c: False
                        ) -> dict[str, bool | float | int]:
    """What one run's attribution said: a false positive per family and anywhere (on the
    contrasts ``affected`` does not mark as truly non-null), and how many contrasts were not
    estimable."""
    res: dict[str, bool | float | int] = {}
    for fam in FAMILIES:
        res[f"false_positive.{fam}"] = any(significant(c) and not affected(c) for c in out[fam])
    res["false_positive.any"] = any(res[f"false_positive.{f}"] for f in FAMILIES)
    rows = [c for fam in FAMILIES for c in out[fam]]
    res["not_estimable.any"] = any(not_estimable(c) for c in rows)
    res["contrasts"] = len(rows)
    res["not_estimable.contrasts"] = sum(not_estimable(c) for c in rows)
    return res


def _planted(out: Mapping[str, Any]) -> Mapping[str, Any]:
    """The planted contrast (:data:`PLANTED` vs the baseline) of a run's attribution."""
    arm, unit, metric = PLANTED
    label = f"{arm[0]}/{arm[1]}/x{arm[2]:g}"
    return next(c for c in out["vs_baseline"] if (c["arm"], c["unit"], c["metric"])
                == (label, unit, metric))


def _touches_planted(c: Mapping[str, Any]) -> bool:
    """A contrast whose truth the planted effect changes (its arm or reference is the planted
    arm, on the planted unit)."""
    arm, unit, _ = PLANTED
    label = f"{arm[0]}/{arm[1]}/x{arm[2]:g}"
    return bool(c["unit"] == unit and label in (c["arm"], c["reference"]))


def seed_flips(run: RunData, unit: str = "route") -> float:
    """Share of eval items on which the baseline's first two seeds differ in correctness (how
    much a retrained student flips)."""
    base = [c for c in run.cells if c.axes["bucket"] == run.spec["baseline"]["bucket"]
            and c.axes["fields"] == run.spec["baseline"]["fields"]
            and float(c.axes["scale"]) == float(run.spec["baseline"]["scale"])]
    a, b = base[0].units[unit].correct, base[1].units[unit].correct
    return float(np.mean(a != b))


# --- scenarios ------------------------------------------------------------------------------

@dataclass
class Settings:
    """What every scenario reads: runs, eval items, resamples, the random seed."""

    runs: int = 400
    null_runs: int = 1000
    n_items: int = 400
    n_boot: int = 200
    curve_boot: int = 50
    seed: int = 20240517
    method: str = "holm"
    #: multiples of the reported MDE at which ``power`` plants the effect
    power_at: tuple[float, ...] = POWER_AT
    #: the learning-curve shapes ``curves`` runs
    curve_shapes: tuple[Literal["rising", "flat"], ...] = ("rising", "flat")
    #: filled by ``null`` for ``power``: the mean reported MDE of the planted contrast
    mde: float | None = None

    def rng(self, scenario: str) -> np.random.Generator:
        """A generator of its own per scenario (independent of which others run)."""
        return np.random.default_rng([self.seed, sum(map(ord, scenario))])


def _attribution_runs(design: Design, runs: int, rng: np.random.Generator, s: Settings,
                      affected: Callable[[Mapping[str, Any]], bool] = lambda c: False,
                      extra: Callable[[Mapping[str, Any], RunData],
                                      dict[str, bool | float | int]] | None = None) -> Tally:
    """``runs`` simulated runs of ``design`` through the attribution, tallied."""
    spec = design.spec()
    tally = Tally()
    for _ in range(runs):
        run = simulate_run(design, rng, full=False, spec=spec)
        out = attribution(run, s.method, n_boot=s.n_boot)
        outcome = attribution_outcome(out, affected)
        if extra is not None:
            outcome.update(extra(out, run))
        tally.add(outcome)
    return tally


def _fwer_figures(t: Tally) -> dict[str, Any]:
    return {"family_wise_false_positives": {f: t.share(f"false_positive.{f}")
                                            for f in (*FAMILIES, "any")},
            "not_estimable": {"runs_with_any": t.share("not_estimable.any"),
                              "contrasts": int(sum(t.sums.get("not_estimable.contrasts", []))),
                              "of": int(sum(t.sums.get("contrasts", [])))}}


def _fwer_targets(fig: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for fam, f in fig["family_wise_false_positives"].items():
        out.append(target(f"FWER {fam}", f, f["rate"] <= 0.05 and f["ci"][1] <= 0.07,
                          "<= 0.05, CP upper bound <= 0.07"))
    return out


def scenario_null(s: Settings) -> dict[str, Any]:
    """Every arm equally good: family-wise false positives and the reported MDE."""
    def mde(out: Mapping[str, Any], run: RunData) -> dict[str, bool | float | int]:
        c = _planted(out)
        return {"mde": c["mde"], "mde_uncorrected": c["mde_uncorrected"],
                "seed_flips": seed_flips(run)}

    t = _attribution_runs(null_design(s.n_items), s.null_runs, s.rng("null"), s, extra=mde)
    s.mde = t.mean("mde")
    fig = _fwer_figures(t)
    fig.update({"runs": t.runs, "planted_contrast_mde": {
        "mean": s.mde, "mean_uncorrected": t.mean("mde_uncorrected"),
        "sd": float(np.std(t.sums["mde"]))},
        "seed_flip_share": t.mean("seed_flips")})
    fig["targets"] = _fwer_targets(fig)
    return fig


def scenario_power(s: Settings) -> dict[str, Any]:
    """The planted effect at multiples of the mean reported MDE (measured on null runs first
    when ``null`` did not run)."""
    rng = s.rng("power")
    source = "the null scenario's runs"
    if s.mde is None:
        source = "null runs of its own"
        t0 = _attribution_runs(null_design(s.n_items), max(50, s.runs // 4), rng, s,
                               extra=lambda out, run: {"mde": _planted(out)["mde"]})
        s.mde = t0.mean("mde")
    fig: dict[str, Any] = {"mde": s.mde, "mde_measured_on": source, "runs": s.runs,
                           "by_multiple": {}}
    targets = []
    for mult in s.power_at:
        def hit(out: Mapping[str, Any], run: RunData) -> dict[str, bool | float | int]:
            c = _planted(out)
            return {"found": c["verdict"] == "better", "wrong_sign": c["verdict"] == "worse",
                    "mde": c["mde"]}

        t = _attribution_runs(null_design(s.n_items, planted=mult * s.mde), s.runs, rng, s,
                              affected=_touches_planted, extra=hit)
        row: dict[str, Any] = {"effect": mult * s.mde, "power": t.share("found"),
               "wrong_sign": t.share("wrong_sign"), "mde_reported_mean": t.mean("mde"),
               "false_positive_any_null_contrast": t.share("false_positive.any")}
        fig["by_multiple"][f"{mult:g}x"] = row
        if mult == 1.0:
            p = row["power"]
            targets.append(target("power at 1x the reported MDE", p,
                                  0.7 <= p["rate"] <= 0.9, "between 0.7 and 0.9"))
    fig["targets"] = targets
    return fig


def scenario_saturated(s: Settings) -> dict[str, Any]:
    """The help-desk case: F1 1.0 on every seed vs 0.0 on every seed; route at the ceiling."""
    def read(out: Mapping[str, Any], run: RunData) -> dict[str, bool | float | int]:
        rows = out["vs_baseline"]
        f1 = [c for c in rows if c["unit"] == "esc" and c["metric"] == "refusal_f1"
              and c["arm"].split("/")[0] in ("multi", "failures")]
        ceiling = [c for fam in FAMILIES for c in out[fam] if c["unit"] == "route"]
        return {"found": len(f1) == 2 and all(c["verdict"] == "better" for c in f1),
                "ceiling_significant": any(significant(c) for c in ceiling),
                "ceiling_not_estimable": any(not_estimable(c) for c in ceiling)}

    t = _attribution_runs(saturated_design(s.n_items), s.runs, s.rng("saturated"), s,
                          extra=read)
    fig = {"runs": t.runs, "found": t.share("found"),
           "ceiling_significant": t.share("ceiling_significant"),
           "ceiling_not_estimable": t.share("ceiling_not_estimable"),
           **_fwer_figures(t)}
    fig["targets"] = [
        target("saturated effect found", fig["found"], fig["found"]["rate"] >= 0.99, ">= 0.99"),
        target("ceiling unit never significant", fig["ceiling_significant"],
               fig["ceiling_significant"]["k"] == 0, "0 runs"),
        target("ceiling unit never not estimable", fig["ceiling_not_estimable"],
               fig["ceiling_not_estimable"]["k"] == 0, "0 runs")]
    return fig


def scenario_identical(s: Settings) -> dict[str, Any]:
    """Arms answering exactly alike: half the runs with seed noise, half deterministic."""
    rng = s.rng("identical")
    total = Tally()
    parts = {}
    for deterministic, runs in ((False, s.runs - s.runs // 2), (True, s.runs // 2)):
        t = _attribution_runs(identical_design(s.n_items, deterministic), runs, rng, s,
                              extra=lambda out, run: {"all_no_difference": all(
                                  c["verdict"].startswith("no difference")
                                  for f in FAMILIES for c in out[f])})
        parts["deterministic" if deterministic else "seed_noise"] = {
            "runs": t.runs, "significant": t.share("false_positive.any"),
            "not_estimable": t.share("not_estimable.any"),
            "all_no_difference": t.share("all_no_difference")}
        for k in ("false_positive.any", "not_estimable.any", "all_no_difference"):
            total.hits[k] += t.hits[k]
        total.runs += t.runs
    fig: dict[str, Any] = {"runs": total.runs, "significant": total.share("false_positive.any"),
           "not_estimable": total.share("not_estimable.any"),
           "all_no_difference": total.share("all_no_difference"), "by_case": parts}
    fig["targets"] = [
        target("identical never significant", fig["significant"],
               fig["significant"]["k"] == 0, "0 runs"),
        target("identical never not estimable", fig["not_estimable"],
               fig["not_estimable"]["k"] == 0, "0 runs")]
    return fig


def scenario_scale_noise(s: Settings) -> dict[str, Any]:
    """Seed noise 5x larger at the small scale: FWER with the scale-aware seed variance."""
    t = _attribution_runs(scale_noise_design(s.n_items), s.runs, s.rng("scale_noise"), s)
    fig = {"runs": t.runs, **_fwer_figures(t)}
    fig["targets"] = _fwer_targets(fig)
    return fig


def _decisions(outs: Iterable[str]) -> dict[str, Any]:
    outs = list(outs)
    return {d: share(sum(o == d for o in outs), len(outs)) for d in DECISIONS}


def _gate(run: RunData, past: list[RunData], s: Settings) -> tuple[str, bool]:
    """The gate's decision on ``run`` (earlier rounds ``past``), and whether any contrast of its
    attribution was "not estimable"."""
    out = analyse_run(run, past, s.method, s.n_boot, s.curve_boot)
    return out["gate"]["decision"], bool(
        attribution_outcome(out["attribution"])["not_estimable.any"])


def scenario_chance(s: Settings) -> dict[str, Any]:
    """Every arm at chance on route (guessing), on esc (always escalating) or on both, the other
    unit learned on a rising curve: how often the gate still says CONTINUE."""
    rng = s.rng("chance")
    by_case: dict[str, list[str]] = {}
    not_estimable = 0
    for i in range(s.runs):
        case = CHANCE_CASES[i % len(CHANCE_CASES)]
        decision, ne = _gate(simulate_run(gate_design("rising", 1, case, s.n_items), rng), [], s)
        by_case.setdefault("+".join(case), []).append(decision)
        not_estimable += ne
    every = [d for v in by_case.values() for d in v]
    fig: dict[str, Any] = {"runs": len(every), "decisions": _decisions(every),
                           "by_case": {k: _decisions(v) for k, v in by_case.items()},
                           "not_estimable": {"runs_with_any": share(not_estimable, len(every))}}
    fc = fig["decisions"]["CONTINUE"]
    fig["targets"] = [target("gate false CONTINUE at chance", fc, fc["rate"] <= 0.02,
                             "<= 0.02")]
    return fig


def scenario_curves(s: Settings) -> dict[str, Any]:
    """Rising and flat curves, gated after round 1 and after round 2 (with round 1 as
    ``past``)."""
    rng = s.rng("curves")
    fig: dict[str, Any] = {"runs": s.runs}
    for shape in s.curve_shapes:
        d1, d2 = gate_design(shape, 1, (), s.n_items), gate_design(shape, 2, (), s.n_items)
        looks: dict[str, list[str]] = {"round_1": [], "round_2": []}
        not_estimable = 0
        for _ in range(s.runs):
            items = draw_items(d1, rng)  # a frozen eval set: both rounds answer the same items
            r1, r2 = simulate_run(d1, rng, items), simulate_run(d2, rng, items)
            for look, (run, past) in (("round_1", (r1, [])), ("round_2", (r2, [r1]))):
                decision, ne = _gate(run, past, s)
                looks[look].append(decision)
                not_estimable += ne
        either = ["STOP" if "STOP" in pair else "CONTINUE" if pair == ("CONTINUE",) * 2
                  else "INCONCLUSIVE" for pair in zip(*looks.values(), strict=True)]
        fig[shape] = {k: _decisions(v) for k, v in looks.items()}
        fig[shape]["stop_at_either_round"] = share(either.count("STOP"), len(either))
        fig[shape]["not_estimable"] = {"looks_with_any": share(not_estimable, 2 * s.runs)}
    fig["targets"] = []
    if "rising" in fig:
        stop = fig["rising"]["stop_at_either_round"]
        fig["targets"].append(target("gate false STOP on a rising curve (either round)", stop,
                                     stop["rate"] <= 0.10, "<= 0.10"))
    return fig


SCENARIOS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "null": scenario_null, "power": scenario_power, "saturated": scenario_saturated,
    "identical": scenario_identical, "scale_noise": scenario_scale_noise,
    "chance": scenario_chance, "curves": scenario_curves}


# --- the command ----------------------------------------------------------------------------

def _git() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes); None outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def _versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "harness": harness_version, "git": _git()}


def _fmt(f: Mapping[str, Any]) -> str:
    if f["rate"] is None:
        return "n/a"
    return f"{f['rate']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}] ({f['k']}/{f['n']})"


def table(result: Mapping[str, Any]) -> str:
    """The targets as a plain-text table."""
    lines = [f"{'scenario':<12} {'target':<48} {'goal':<32} {'rate [95% CP]':<34} met"]
    for name, fig in result["scenarios"].items():
        for t in fig.get("targets", []):
            lines.append(f"{name:<12} {t['target']:<48} {t['goal']:<32} {_fmt(t):<34} "
                         f"{'met' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def run(names: list[str], s: Settings) -> dict[str, Any]:
    """Run the named scenarios (in :data:`SCENARIOS` order) and return the result record."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    scenarios = {}
    for name in SCENARIOS:
        if name not in names:
            continue
        t0, load0 = time.perf_counter(), os.getloadavg()
        scenarios[name] = SCENARIOS[name](s)
        scenarios[name]["seconds"] = round(time.perf_counter() - t0, 1)
        scenarios[name]["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        scenarios[name]["load_average_before_after"] = [list(load0), list(os.getloadavg())]
        print(f"{name}: {scenarios[name]['seconds']} s", file=sys.stderr, flush=True)
    settings = {k: v for k, v in vars(s).items() if k != "mde"}
    return {
        "benchmark": "verdict_calibration",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_before": list(load_before),
                    "load_average_after": list(os.getloadavg())},
        "versions": _versions(), "settings": settings, "interval": f"Clopper-Pearson {LEVEL}",
        "seconds": round(time.perf_counter() - started, 1), "scenarios": scenarios,
        "targets_met": all(t["met"] for f in scenarios.values() for t in f["targets"]),
    }


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with ``old``'s scenarios that ``new`` did not run (in :data:`SCENARIOS` order)."""
    merged = {**old["scenarios"], **new["scenarios"]}
    scenarios = {k: merged[k] for k in SCENARIOS if k in merged}
    return {**new, "scenarios": scenarios,
            "seconds": round(sum(f["seconds"] for f in scenarios.values()), 1),
            "targets_met": all(t["met"] for f in scenarios.values() for t in f["targets"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (few runs per scenario)")
    p.add_argument("--runs", type=int, help="runs per scenario (default 400; --quick 30)")
    p.add_argument("--null-runs", type=int, help="runs of the null scenario (default 1000)")
    p.add_argument("--items", type=int, default=400, help="eval items per unit")
    p.add_argument("--seed", type=int, default=Settings.seed)
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/verdict_calibration.json")
    p.add_argument("--note", help="recorded in the JSON (e.g. what was patched for this run)")
    p.add_argument("--update", action="store_true",
                   help="merge these scenarios into --out (same settings), keeping the others: "
                   "a long benchmark run scenario by scenario")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    runs = a.runs or (30 if a.quick else 400)
    null_runs = a.null_runs or (60 if a.quick else max(1000, runs))
    s = Settings(runs=runs, null_runs=null_runs, n_items=a.items, seed=a.seed)
    old = json.loads(a.out.read_text(encoding="utf-8")) if a.update and a.out.is_file() else None
    if old is not None:
        mine = {k: v for k, v in vars(s).items() if k != "mde"}
        theirs = {k: v for k, v in old["settings"].items() if k != "quick"}
        if json.loads(json.dumps(mine)) != theirs:
            p.error(f"--update: {a.out} was written with other settings ({theirs})")
        if "null" not in names and "null" in old["scenarios"]:
            s.mde = old["scenarios"]["null"]["planted_contrast_mde"]["mean"]
    result = run(names, s)
    result["settings"]["quick"] = a.quick
    if a.note:
        result["note"] = a.note
    if old is not None:
        result = _merge(old, result)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"{result['seconds']} s; written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
