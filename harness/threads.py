"""CPU thread policy: robust to a shared, oversubscribed machine (standard library only).

OpenMP's default wait policy lets idle worker threads *spin* for a while before sleeping. On a
machine whose load is far above its core count (a shared CI runner, several jobs at once) the
spinning threads compete with the threads doing work: a demo cell measured at ~20 s CPU alone
took 971 s of CPU and 65 minutes of wall time at load 12 on 2 cores. With
``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep at once; the numbers computed do not change
(the policy decides only how threads wait), so results stay byte-identical.

The policy must be in the environment before torch (and its OpenMP runtime) is loaded, so
:func:`configure_wait_policy` runs at the start of the command line; a value the user set is
kept. The thread count is not lowered automatically: with some kernels a different count gives
different rounding, and a cell's results must not depend on how busy the machine was
(``--threads N`` sets it; :func:`fair_share_threads` suggests a count). ``benchmarks/
thread_policy.py`` measures both effects.
"""

from __future__ import annotations

import os
from typing import Any

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def configure_wait_policy(environ: Any = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; returns the policy.

    Args:
        environ: the environment mapping to update (default ``os.environ``; a test passes a
            dict).
    """
    env = os.environ if environ is None else environ
    if not env.get(WAIT_POLICY_VAR):
        env[WAIT_POLICY_VAR] = DEFAULT_WAIT_POLICY
    return str(env[WAIT_POLICY_VAR])


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def fair_share_threads(cores: int | None = None, load: float | None = None) -> int | None:
    """A thread count that takes about this process's fair share of a busy machine.

    Returns None when the machine is not oversubscribed (load at or below its cores), else
    ``cores * cores / load`` rounded down, at least 1 (what ``--threads`` could be set to).
    """
    cores = cores or os.cpu_count() or 1
    load = load_average() if load is None else load
    if load is None or load <= cores:
        return None
    return max(1, int(cores * cores / load))


def thread_record(num_threads: int) -> dict[str, Any]:
    """What a cell's metrics record about threading: count, wait policy, load when it started.

    Args:
        num_threads: torch's intra-op thread count as used (``torch.get_num_threads()``).
    """
    load = load_average()
    return {"threads": int(num_threads),
            "omp_wait_policy": os.environ.get(WAIT_POLICY_VAR, ""),
            "cpu_count": os.cpu_count() or 0,
            "load_average": None if load is None else round(load, 2)}
