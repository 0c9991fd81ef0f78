"""A long-lived local worker process: takes cell after cell from the driver over a pipe.

``python -m harness.execute.slot_worker`` is started by the local pool
(:class:`harness.execute.local.PoolExecutor`) once per slot, with ``CUDA_VISIBLE_DEVICES``
naming the slot's GPU(s). It reads pickled :class:`~harness.execute.base.CellTask` frames from
stdin and answers each with a ``("started", node)`` frame and a ``("result", CellResult)``
frame on its original stdout; anything the worker prints goes to stderr instead, so it cannot
corrupt the protocol. Reusing the process for many cells saves the interpreter, torch and
transformers start-up (seconds per cell) that a process per cell would pay.

The process runs in its own session (Ctrl-C at the terminal reaches only the driver, which
cancels) and watches its parent: when the driver is gone (killed with SIGKILL, say) it ends
itself within :data:`WATCH_S` seconds instead of finishing a cell nobody will collect.

Frames are an 8-byte big-endian length and a pickle. Only the driver that started the process
writes to it, so unpickling its frames is as safe as the driver itself. Standard library and
worker-path modules only.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from typing import IO, Any

NODE_ENV = "HARNESS_SLOT_NODE"  #: the slot's name for the record (host/gpu0, host/cpu1)
#: Seconds between two looks at whether the driver that started this process is still there.
WATCH_S = 1.0


def send(stream: IO[bytes], obj: Any) -> None:
    """Write one frame and flush it."""
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(blob).to_bytes(8, "big") + blob)
    stream.flush()


def recv(stream: IO[bytes]) -> Any:
    """Read one frame; raises EOFError when the other side is gone."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the pipe closed")
    size = int.from_bytes(head, "big")
    blob = stream.read(size)
    if len(blob) < size:
        raise EOFError("the pipe closed mid-frame")
    return pickle.loads(blob)  # noqa: S301 - frames come only from the driver that started us


def _watch_parent(parent: int) -> None:
    """End this process (no clean-up: the pool removes its temporaries) once ``parent`` is
    gone: the process is then adopted, and its parent id changes."""
    while True:
        time.sleep(WATCH_S)
        if os.getppid() != parent:
            os._exit(1)


def main() -> int:
    """Serve cells until stdin closes or a ``None`` frame arrives."""
    from harness.threads import configure_wait_policy

    configure_wait_policy()  # before torch loads OpenMP
    # Ctrl-C reaches the driver, which cancels: this process is ended by the driver.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True,
                     name="harness-watch-parent").start()
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    from harness.execute.task import execute_cell

    node = os.environ.get(NODE_ENV) or None
    while True:
        try:
            task = recv(sys.stdin.buffer)
        except EOFError:
            return 0
        if task is None:
            return 0
        send(proto, ("started", node or ""))
        send(proto, ("result", execute_cell(task, node=node)))


if __name__ == "__main__":
    sys.exit(main())
