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

**One thread count per run, wherever a cell runs.** Float reductions in torch kernels (label
scoring's softmax sums, matmuls above the parallel grain size) are split by the intra-op thread
count, so two runs of one cell with 1 and 2 threads can differ in the fifth decimal. The count a
cell computes with is therefore fixed by the run (:func:`run_threads`: ``--threads``, else
``execution.threads``, else :data:`DEFAULT_THREADS`, 1), never by the machine's cores, and
applied the same way by every executor: the in-process path, the local worker pool and Ray
tasks all call :func:`cell_numerics` before the cell's first tensor op, and worker processes
also start with :func:`thread_env` (OpenMP, MKL and OpenBLAS sized before they load). What else
decides a cell's float results (the CPU kernels' instruction set, the BLAS libraries, the
deterministic-algorithms switch, dtype and autocast, library versions, and the environment
variables that override them, :data:`NUMERICS_ENV`) is recorded beside the count
(:func:`numerics_record`), so a cell's numbers can be reproduced from its record alone.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"
#: torch intra-op threads per cell when neither ``--threads`` nor ``execution.threads`` says.
DEFAULT_THREADS = 1
#: Thread-pool sizes a worker process starts with (OpenMP: torch's intra-op pool; MKL: torch's
#: BLAS on x86; OpenBLAS: numpy's), all set to the cell's thread count.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Environment variables that change float results when set; recorded with each cell.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE",
                "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
                "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")


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


def run_threads(flag: int | None, spec_threads: int | None) -> tuple[int, str]:
    """The torch thread count every cell of a run computes with, and where it came from.

    Args:
        flag: ``harness run --threads`` (None: not given).
        spec_threads: ``execution.threads`` (None: not set).

    Returns:
        ``(threads, source)``: source is ``--threads``, ``execution.threads`` or ``default``.
    """
    if flag:
        return int(flag), "--threads"
    if spec_threads:
        return int(spec_threads), "execution.threads"
    return DEFAULT_THREADS, "default"


def thread_env(threads: int) -> dict[str, str]:
    """The environment a worker process needs so every thread pool starts ``threads`` wide."""
    return dict.fromkeys(THREAD_ENV, str(int(threads)))


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def cell_numerics(threads: int, device_type: str) -> Iterator[None]:
    """Compute one cell with ``threads`` torch threads (and numpy's BLAS no wider), with
    deterministic algorithms on the CPU; the previous settings come back afterwards, so an
    in-process cell leaves its host process as it found it.

    Args:
        threads: intra-op threads (>= 1), the run's setting (:func:`run_threads`).
        device_type: ``cpu`` or ``cuda``: deterministic algorithms are switched on for the CPU
            only (several CUDA kernels have no deterministic version).
    """
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    stack = contextlib.ExitStack()
    try:
        with contextlib.suppress(ImportError):  # optional: worker processes size it by env
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=int(threads), user_api="blas"))
        torch.set_num_threads(int(threads))
        if device_type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        stack.close()  # first: threadpoolctl puts back OpenMP's count as it found it too
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=warn_only)


_TORCH_BLAS: str | None = None


def _torch_blas(torch: Any) -> str:
    """torch's BLAS library as its build reports it (``mkl``, ``open``, ...; ``?`` unknown)."""
    global _TORCH_BLAS
    if _TORCH_BLAS is None:
        m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        _TORCH_BLAS = m.group(1) if m else "?"
    return _TORCH_BLAS


def _numpy_blas() -> str:
    """numpy's BLAS library name and version (``scipy-openblas 0.3.31``; ``?`` unknown)."""
    try:
        import numpy

        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy: the record says unknown
        return "?"


def numerics_record(device: Any, *, model: Any = None, environ: Mapping[str, str] | None = None
                    ) -> dict[str, Any]:
    """What decides a cell's float results besides its spec, data and seed: for ``metrics.json``
    ``environment`` and ``run.json`` (call inside :func:`cell_numerics`).

    Args:
        device: the ``torch.device`` the cell ran on.
        model: the trained student's model, for its weights' dtype (None: not recorded).
        environ: the environment to read :data:`NUMERICS_ENV` from (default ``os.environ``).
    """
    import numpy
    import tokenizers
    import torch

    env = os.environ if environ is None else environ
    cuda = device.type == "cuda"
    dtype = None
    with contextlib.suppress(Exception):  # a student without parameters records none
        dtype = str(next(iter(model.parameters())).dtype).removeprefix("torch.")
    rec: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "dtype": dtype, "autocast": "bfloat16" if cuda else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_blas": _torch_blas(torch), "mkldnn": bool(torch.backends.mkldnn.is_available()
                                                         and torch.backends.mkldnn.enabled),
        "numpy": numpy.__version__, "numpy_blas": _numpy_blas(),
        "tokenizers": tokenizers.__version__,
        "numerics_env": {k: env[k] for k in NUMERICS_ENV if env.get(k)},
    }
    if cuda:
        rec.update({"cuda": torch.version.cuda,
                    "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                    "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)})
        with contextlib.suppress(Exception):  # a query that fails must not fail the cell
            idx = device.index if device.index is not None else torch.cuda.current_device()
            rec.update({"gpu": torch.cuda.get_device_name(idx),
                        "cudnn": torch.backends.cudnn.version()})
    return rec
