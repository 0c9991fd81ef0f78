"""Shared parts of the GPU benchmarks (gpu_train.py, gpu_eval.py, gpu_matrix.py).

Imports torch, transformers, numpy and the standard library only: the GPU machine has nothing
else (``/work/shared/device/README.md``). Every figure follows DESIGN.md's latency
conventions: warm-up excluded, CUDA synchronised around every timed region, device, dtype,
lengths and versions recorded, no mixing of devices in one comparison.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` without installing
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

#: SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M config.json): the "135M-class student".
SMOLLM2_135M: dict[str, Any] = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 2048, "rope_theta": 100000.0,
    "tie_word_embeddings": True, "rms_norm_eps": 1e-5}
#: A model of the same family small enough for a CPU smoke run in seconds.
TINY: dict[str, Any] = {
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
    "rope_theta": 100000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-5}


def pick_device(name: str | None) -> Any:
    """``torch.device(name)``, or CUDA when available."""
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def sync(device: Any) -> None:
    """Wait for the device (no-op on CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: Any) -> dict[str, Any]:
    """Device, driver, library versions, date: what every result JSON records."""
    import numpy
    import torch
    import transformers

    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type, "platform": platform.platform(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "numpy": numpy.__version__, "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   sm_count=props.multi_processor_count,
                   driver=_nvidia_smi_field("driver_version"))
    else:
        env["device_name"] = platform.processor() or platform.machine()
    try:
        import importlib.metadata as md

        import lm_eval  # noqa: F401  (only recorded when present)

        env["lm_eval"] = md.version("lm_eval")
    except Exception:  # absent on the GPU machine unless the wheels were carried
        pass
    return env


def _nvidia_smi_field(field: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def peak_matmul_tflops(device: Any, n: int | None = None, iters: int = 20) -> dict[str, Any]:
    """The chip's practical matmul peak, measured: ``n x n @ n x n`` in bf16 on CUDA (fp32 on
    CPU), ``2 n^3`` FLOPs each, median of ``iters`` timed runs after 3 warm-ups.

    Returns:
        ``{"tflops", "n", "dtype", "iters"}`` (TFLOP/s).
    """
    import torch

    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 256)
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(3 + iters):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"tflops": round(2 * n ** 3 / median / 1e12, 2), "n": n,
            "dtype": str(dtype).replace("torch.", ""), "iters": iters}


def llama(shape: dict[str, Any], seed: int, pad_id: int = 0, eos_id: int = 1) -> Any:
    """A randomly initialised LlamaForCausalLM of ``shape`` (seeded), sdpa attention."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**shape, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def param_counts(model: Any) -> dict[str, int]:
    """``total`` and ``non_embedding`` parameters (the tied input/output embedding once)."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != model.get_input_embeddings(
    ).weight.data_ptr()
    return {"total": total, "non_embedding": total - emb - (head.weight.numel() if untied else 0)}


def training_flops(model: Any, lengths: Sequence[int]) -> dict[str, float]:
    """Model FLOPs of one training pass (forward + backward) over examples of ``lengths``.

    Per example of length ``l``: ``6 * N * l`` for the weight matmuls (N = non-embedding
    parameters; 2 FLOPs per multiply-add, x3 for forward + backward) plus, per layer,
    ``6 * d_attn * l * (l + 1)`` for the causal attention scores and weighted sum (query
    ``t`` sees ``t`` keys: ``2 * 2 * d_attn * t`` forward, summed over t, x3). Only useful work
    counts: no padding, no masked-out attention. ``with_lm_head`` adds ``6 * d_model * V * l``
    (the output projection, which N excludes when the embedding is tied).
    """
    c = model.config
    n = param_counts(model)["non_embedding"]
    d_attn = c.num_attention_heads * (getattr(c, "head_dim", None)
                                      or c.hidden_size // c.num_attention_heads)
    weights = sum(6.0 * n * ln for ln in lengths)
    attention = sum(6.0 * c.num_hidden_layers * d_attn * ln * (ln + 1) for ln in lengths)
    head = sum(6.0 * c.hidden_size * c.vocab_size * ln for ln in lengths)
    return {"model_flops": weights + attention, "with_lm_head": weights + attention + head}


class GpuSampler:
    """Samples GPU utilisation (%) and memory (MiB) with ``nvidia-smi`` every ``period_s`` in a
    background thread; a no-op where nvidia-smi is missing (CPU runs)."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, float, float]] = []  # (t, util %, memory MiB)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        exe = shutil.which("nvidia-smi") or "nvidia-smi"
        t0 = time.perf_counter()
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    [exe, "--query-gpu=utilization.gpu,memory.used",
                     "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True, text=True, timeout=10, check=True).stdout
                util, mem = (float(x) for x in out.strip().split(",")[:2])
                self.samples.append((time.perf_counter() - t0, util, mem))
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(self.period_s)

    def summary(self) -> dict[str, Any]:
        """Mean / median / p90 utilisation and peak memory over the samples (None if none)."""
        if not self.samples:
            return {"source": None if not self.available else "nvidia-smi", "n_samples": 0}
        utils = sorted(s[1] for s in self.samples)
        return {"source": "nvidia-smi utilization.gpu (share of time a kernel ran)",
                "n_samples": len(utils), "period_s": self.period_s,
                "util_mean_pct": round(sum(utils) / len(utils), 1),
                "util_p50_pct": utils[len(utils) // 2],
                "util_p90_pct": utils[min(len(utils) - 1, int(0.9 * len(utils)))],
                "memory_peak_mib": max(s[2] for s in self.samples)}


def default_out(smoke: bool) -> Path:
    """Where results go without ``--out``: the committed results folder, or for a smoke run
    (whose figures mean nothing) a temporary folder, so smoke JSON is never committed."""
    import tempfile

    return Path(tempfile.gettempdir()) / "gpu_bench_smoke" if smoke else RESULTS


def write_result(result: dict[str, Any], out_dir: Path, name: str) -> Path:
    """Write ``out_dir/name`` (JSON, indented) and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (missing cells blank), for the end of a run's output."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the suite's table

#: The issue's targets (issue 13): metric -> (comparison, target). Ratios are against the
#: baseline of the same run on the same GPU.
TARGETS: dict[str, tuple[str, float]] = {
    "train_a_speedup_vs_hf_trainer": (">=", 5.0),
    "train_b_speedup_vs_hf_trainer": (">=", 3.0),
    "train_b_mfu_pct": (">=", 25.0),
    "scoring_speedup_vs_baseline": (">=", 8.0),
    "scoring_accuracy_identical_fp32": ("==", 1.0),
    "decode_ms_per_token_batch1": ("<=", 3.0),
    "decode_warmup_s": ("<=", 60.0),
    "matrix_12_cells_wall_s": ("<=", 25.0),
}


def table_row(benchmark: str, metric: str, value: float | bool | None, measured: bool,
              target: tuple[str, float] | None = None, note: str = "") -> dict[str, Any]:
    """One row of a benchmark JSON's ``"table"``: ``{"benchmark", "metric", "value",
    "target", "met", "note"}``.

    ``target`` defaults to :data:`TARGETS` ``[metric]``; ``met`` is None when the figure was
    not measured for the target (a smoke or CPU run, a missing value), else whether the value
    meets it.
    """
    op, goal = target or TARGETS.get(metric, ("", float("nan")))
    number = float(value) if isinstance(value, bool | int | float) else None
    met: bool | None = None
    if measured and number is not None and op:
        met = {">=": number >= goal, "<=": number <= goal, "==": number == goal}[op]
    return {"benchmark": benchmark, "metric": metric, "value": value,
            "target": f"{op} {goal:g}" if op else None, "met": met, "note": note}


def suite_table(out_dir: Path) -> list[dict[str, Any]]:
    """Every ``"table"`` row of the JSON files in ``out_dir`` (sorted by file name)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("table"), list):
            rows += [r for r in data["table"] if isinstance(r, dict)]
    return rows


def _main(argv: Sequence[str]) -> int:
    """``python benchmarks/gpu_common.py table DIR``: print the suite's table (last)."""
    if len(argv) != 2 or argv[0] != "table":
        print("usage: gpu_common.py table DIR", file=sys.stderr)
        return 2
    rows = [{**r, "met": "unmeasured" if r.get("met") is None else r["met"]}
            for r in suite_table(Path(argv[1]))]
    print(table(rows, ["benchmark", "metric", "value", "target", "met", "note"]) if rows
          else f"no benchmark JSON with a table in {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
