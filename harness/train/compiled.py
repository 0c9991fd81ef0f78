"""``torch.compile`` of the fast path's training step, timed and bounded.

The fast path feeds one micro-batch shape for the whole run (:mod:`harness.train.budget`), so a
compiled graph is built once. Two scopes:

- ``layers`` (default): each block of the model's stack of identical layers (the largest
  ``ModuleList`` whose children share one class: a Llama's decoder layers) gets a compiled
  ``forward``. The blocks share their code, so torch compiles one and reuses it for the others:
  the compile costs about one layer whatever the depth (regional compilation). Embeddings, the
  final norm and the chunked cross-entropy stay eager (few, large kernels).
- ``model``: the whole forward the objective calls, as one graph (longer to compile).

:func:`compile_step` compiles, then runs one warm-up micro-batch (forward and backward, where
the forward and backward graphs are built) under a deadline, synchronised, and reports the
seconds. Any failure, or the deadline passing (``SIGALRM`` in the main thread: a best effort,
since a compiler inside native code only sees it when it returns to Python), falls back to the
eager step with the reason recorded. The warm-up leaves no trace: the RNG states are restored
and the gradients dropped, so the run trains exactly as it would have.

Imports torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any


class CompileTimeout(RuntimeError):
    """The compile warm-up passed its deadline."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CompileTimeout` in the block after ``seconds``, and every 0.5 s after
    that until the block is left (main thread only; no bound elsewhere, when ``seconds`` is
    None or <= 0, or when a real-time timer is already running)."""
    if (not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # never clobber someone's timer
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise CompileTimeout(f"compiling took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, ring)
    # Ring again every half second: an exception raised inside a weakref callback or a
    # finaliser is swallowed by Python, the next one lands in ordinary code.
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def why(exc: BaseException) -> str:
    """A one-line reason for a failed compile: the deadline when it was that (compilers wrap
    the exception they were interrupted by), else the exception's type and first line."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CompileTimeout):
            return f"CompileTimeout: {seen}"
        seen = seen.__cause__ or seen.__context__
    if "CompileTimeout" in str(exc):
        return "CompileTimeout: " + str(exc).split("CompileTimeout:", 1)[1].strip().splitlines()[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:2])[:200]}" if lines else type(exc).__name__


def repeated_blocks(model: Any) -> list[Any]:
    """The children of ``model``'s largest ``ModuleList`` whose children (two or more) all
    share one class (a transformer's layer stack); empty when there is none."""
    import torch

    best: list[Any] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) >= 2:
            kids = list(module)
            if len({type(k) for k in kids}) == 1 and len(kids) > len(best):
                best = kids
    return best


def graphs_compiled() -> int:
    """Graphs torch.compile has built in this process so far (dynamo's unique graphs)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_step(model: Any, forward: Any, warm_up: Callable[[Any], None], *, device: Any,
                 backend: str = "inductor", mode: str | None = None, scope: str = "layers",
                 budget_s: float | None = 300.0, cleanup: ExitStack) -> tuple[Any, dict[str, Any]]:
    """Compile the step, warm it up once under a deadline, or fall back to eager.

    Args:
        model: the student (its layer stack is compiled in place for ``scope="layers"``; the
            compiled ``forward`` attributes are removed again when ``cleanup`` closes).
        forward: what the objective's loss calls (the model or its backbone).
        warm_up: runs one micro-batch's loss and backward with the given forward.
        backend, mode: ``torch.compile``'s.
        scope: ``"layers"`` or ``"model"`` (module docstring).
        budget_s: the warm-up's deadline in seconds (None or <= 0: unbounded).

    Returns:
        the forward to train with (compiled, or ``forward`` on fallback), and the summary
        entries ``compile`` (``"<backend>/<scope>[/<mode>]"`` or ``"off: <reason>"``),
        ``compile_seconds`` (the warm-up's wall time, compile included, device synchronised)
        and ``compile_graphs`` (graphs built).
    """
    import torch

    cuda = device.type == "cuda"
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if cuda else None
    blocks = repeated_blocks(model) if scope == "layers" else []
    if scope == "layers" and not blocks:
        scope = "model"  # no layer stack to compile region by region
    label = f"{backend}/{scope}" + (f"/{mode}" if mode else "")
    graphs_before = graphs_compiled()
    undo = ExitStack()
    t0 = time.perf_counter()
    try:
        with deadline(budget_s):
            if scope == "layers":
                for block in blocks:
                    block.forward = torch.compile(block.forward, backend=backend, mode=mode,
                                                  dynamic=False)
                    undo.callback(delattr, block, "forward")
                compiled = forward
            else:
                compiled = torch.compile(forward, backend=backend, mode=mode, dynamic=False)
            warm_up(compiled)
            if cuda:
                torch.cuda.synchronize(device)
        info: dict[str, Any] = {"compile": label}
    except Exception as exc:  # a compiler failure of any kind: train eagerly, say why
        undo.close()
        torch._dynamo.reset()
        compiled = forward
        info = {"compile": f"off: {why(exc)}"}
    finally:
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
    cleanup.push(undo)
    info["compile_seconds"] = round(time.perf_counter() - t0, 3)
    info["compile_graphs"] = graphs_compiled() - graphs_before
    return compiled, info
