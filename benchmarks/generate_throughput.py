"""The teacher stage's throughput and memory: ``harness generate`` against a fast local
OpenAI-compatible server, cold (every call paid) and warm (every call a cache hit).

The server runs in its own process (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive) and
answers each chat request at once with a JSON label answer, so the figure is the harness's own
cost per call: the client, the thread pool, the rate limiter, the SQLite cache, parsing and
writing. ``harness generate`` runs in a child process; its peak RSS is read from
``os.wait4`` (its own rusage).

``--checkout PATH`` (repeatable) runs the same measurement with another checkout of the harness
first on ``PYTHONPATH`` (e.g. a ``git worktree`` of the previous main), alternating the
checkouts per repeat, so a before/after ratio is measured side by side under the same load.

    .venv/bin/python benchmarks/generate_throughput.py --prompts 20000 --concurrency 32
    .venv/bin/python benchmarks/generate_throughput.py --prompts 2000 --smoke

Writes ``benchmarks/results/generate_throughput.json`` (machine, versions, date, load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "generate_throughput.json"
LABELS = ["billing", "shipping", "refund", "account"]


def _serve(port: int) -> None:
    """A chat endpoint answering every request at once (runs in a child process)."""
    answer = json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": '{"answer": "billing"}'}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}}).encode()
    models = json.dumps({"object": "list", "data": [
        {"id": "m", "object": "model", "created": 0, "owned_by": "bench"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # answer at once: Nagle's algorithm would hold each small reply ~40 ms for an ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._reply(models)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(answer)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _experiment(folder: Path, url: str, prompts: int, concurrency: int) -> Path:
    """The experiment YAML and its prompts file in ``folder``."""
    import yaml

    with (folder / "prompts.jsonl").open("w") as f:
        for i in range(prompts):
            f.write(json.dumps({"id": f"p{i}", "unit": "route",
                                "prompt": f"Customer message number {i}: where is my money?"})
                    + "\n")
    spec = {
        "name": "bench",
        "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"},
        "units": {"route": {"kind": "label", "labels": LABELS}},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
        "buckets": {"a": {"teachers": ["api"], "select": "all"}},
        "fields": {"answer_only": {}},
        "baseline": {"bucket": "a", "fields": "answer_only"},
        "teachers": {"api": {"provider": "openai", "base_url": url, "model": "m",
                             "concurrency": concurrency, "max_tokens": 16}},
        "generate": {"prompts": "prompts.jsonl", "cache": "cache.sqlite"},
        "costs": {"teachers": {"api": {"price_per_1k_prompt": 0.001,
                                       "price_per_1k_completion": 0.002}}},
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run_generate(exp: Path, checkout: Path | None) -> dict[str, float]:
    """One ``harness generate`` in a child process: wall seconds and peak RSS (MiB)."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = f"{checkout}{os.pathsep}{env.get('PYTHONPATH', '')}"
    code = ("import sys, harness; from harness.cli import main; "
            "print('harness from', harness.__file__, file=sys.stderr); "
            "sys.exit(main(['generate', sys.argv[1], '--quiet']))")
    log = exp.parent / "generate.log"
    with log.open("w") as out:  # a file, not a pipe: nothing blocks while we wait
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, str(exp)], cwd=exp.parent,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN: the largest child so far)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"harness generate failed ({proc.returncode}):\n{stderr[-2000:]}")
    source = next((ln for ln in stderr.splitlines() if ln.startswith("harness from")), "")
    return {"seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "source": source.removeprefix("harness from ")}


def measure(prompts: int, concurrency: int, checkouts: list[Path | None], repeats: int
            ) -> list[dict[str, Any]]:
    """Cold and warm runs per checkout, alternating checkouts within each repeat."""
    port = _free_port()
    server = Process(target=_serve, args=(port,), daemon=True)
    server.start()
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/v1"
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(repeats):
            for checkout in checkouts:
                with tempfile.TemporaryDirectory(prefix="gen-bench-") as tmp:
                    exp = _experiment(Path(tmp), url, prompts, concurrency)
                    load = os.getloadavg()[0]
                    cold = _run_generate(exp, checkout)
                    warm = _run_generate(exp, checkout)
                rows.append({"checkout": str(checkout) if checkout else "this checkout",
                             "repeat": rep, "prompts": prompts, "concurrency": concurrency,
                             "load_avg_1min_before": round(load, 2),
                             "cold_s": cold["seconds"],
                             "cold_calls_per_s": round(prompts / cold["seconds"], 1),
                             "cold_peak_rss_mib": cold["peak_rss_mib"],
                             "warm_s": warm["seconds"], "harness_source": cold["source"]})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
    return rows


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("openai", "httpx", "polars", "pydantic"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--prompts", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--checkout", type=Path, action="append", default=[],
                    help="another checkout to measure beside this one (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="200 prompts, results not written")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    prompts = 200 if args.smoke else args.prompts
    checkouts: list[Path | None] = [None, *(c.resolve() for c in args.checkout)]
    rows = measure(prompts, args.concurrency, checkouts, args.repeats)
    if args.smoke:
        return 0
    result = {"benchmark": "generate_throughput",
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "processor": platform.processor() or platform.machine()},
              "versions": _versions(), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
