"""LoRA adapters (``student.adapter``) on a pretrained causal-LM student, through ``peft``.

The adapter is injected into the checkpoint's model *in place* (:func:`attach`): its linear
layers become ``peft`` LoRA layers around the frozen originals, so the training loop, label
scoring, generation and latency run on the very model object they always get (same attributes,
same forward), and only the low-rank matrices have ``requires_grad``. The ``PeftModel`` wrapper
is kept beside it for what only it does: save the adapter and merge it.

A cell's ``model/`` folder then holds the adapter, not the model (:func:`save`):

- ``adapter_config.json`` and ``adapter_model.safetensors`` (``peft``'s own files);
- the tokenizer (the base's, as the student used it);
- :data:`BASE_FILE`: the base checkpoint by path and content hash (:func:`base_identity`),
  so a reload can tell the base it finds from the one the adapter was trained on.

It reloads with ``AutoModelForCausalLM.from_pretrained(base)`` +
``PeftModel.from_pretrained(model, cell/model)`` (:func:`load`, merged or not).

Imports torch, transformers and peft inside functions only: the worker's plain path (no
adapter) never imports peft.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.fsutil import atomic_write_text

#: ``peft``'s adapter config file: its presence marks a cell's model folder as an adapter.
ADAPTER_CONFIG = "adapter_config.json"
#: The base checkpoint of a saved adapter: path, content hash, files (written by :func:`save`).
BASE_FILE = "harness_base.json"
#: Files of a checkpoint folder that decide its outputs and so enter its content hash: weights,
#: configs, tokenizer vocabularies and merges, chat templates.
_BASE_SUFFIXES = frozenset({".safetensors", ".bin", ".json", ".model", ".txt", ".tiktoken",
                            ".jinja"})
#: The latency figures measured a second time with the adapter unmerged, recorded as
#: ``unmerged_<key>`` beside the merged model's (whose keys are those of every other cell).
UNMERGED_KEYS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms",
                 "ttft_p95_ms", "decode_tokens_per_s", "throughput_items_per_s",
                 "throughput_tokens_per_s")


def is_adapter_folder(folder: Path) -> bool:
    """Whether a cell's model folder holds an adapter (rather than a full checkpoint)."""
    return (folder / ADAPTER_CONFIG).is_file()


def lora_config(adapter: Mapping[str, Any]) -> Any:
    """``peft.LoraConfig`` of a ``student.adapter`` spec (``r``, ``alpha``, ``dropout``,
    ``target_modules``) for a causal LM."""
    from peft import LoraConfig, TaskType

    if adapter.get("kind", "lora") != "lora":
        raise ValueError(f"unknown adapter kind {adapter['kind']!r} (known: lora)")
    targets = adapter["target_modules"]
    # peft annotates lora_alpha as int but only ever uses alpha / r: a float alpha is exact.
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=int(adapter["r"]),
                      lora_alpha=float(adapter["alpha"]),  # type: ignore[arg-type]
                      lora_dropout=float(adapter["dropout"]),
                      target_modules=targets if isinstance(targets, str) else list(targets),
                      bias="none")


def attach(model: Any, adapter: Mapping[str, Any], seed: int) -> Any:
    """Inject a seeded LoRA adapter into ``model`` in place and freeze every other weight.

    Args:
        model: a pretrained causal LM (``transformers`` ``PreTrainedModel``).
        adapter: the ``student.adapter`` spec.
        seed: seeds the adapter's random ``A`` matrices (``B`` starts at zero, so the adapted
            model starts equal to the base).

    Returns:
        the ``peft.PeftModel`` wrapping ``model``; ``model`` itself now holds the LoRA layers
        (train and evaluate it directly; save and merge through the wrapper).

    Raises:
        ValueError: ``target_modules`` names no layer of the model (peft's message, which lists
            what it looked for), or something beside the adapter is left trainable.
    """
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    wrapped = get_peft_model(model, lora_config(adapter))
    stray = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    if stray:  # e.g. a future peft default that trains biases or the head: not an adapter run
        raise ValueError(f"only the adapter should train, but {len(stray)} base weights "
                         f"would too (first: {stray[0]})")
    return wrapped


def parameter_counts(model: Any) -> dict[str, int]:
    """``trainable_parameters`` (the adapter's, with one attached) and ``parameters`` (all)."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable_parameters": trainable, "parameters": total}


def base_identity(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's identity by content: its resolved path, the SHA-256 (hex) of each
    weight, config and tokenizer file (top level, as transformers reads them) and one
    ``sha256`` over those (name -> file hash, canonical JSON).

    Every byte is hashed (about 1 s per GB on one core): once per cell at save and once per
    reload, small against training, and unlike a head/tail sample it tells two fine-tunes of
    one architecture apart whatever their sizes and times.
    """
    folder = folder.resolve()
    files: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in _BASE_SUFFIXES and not p.name.startswith("."):
            with p.open("rb") as fh:
                files[p.name] = {"size": p.stat().st_size,
                                 "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}
    blob = json.dumps({n: f["sha256"] for n, f in files.items()}, sort_keys=True)
    return {"path": str(folder), "sha256": hashlib.sha256(blob.encode()).hexdigest(),
            "files": files}


def save(wrapped: Any, tokenizer: Any, folder: Path, base: Path) -> None:
    """The adapter (``peft``'s files), the tokenizer and :data:`BASE_FILE` into ``folder``.

    Args:
        wrapped: the ``PeftModel`` from :func:`attach` (not merged).
        base: the checkpoint folder the adapter was trained on.
    """
    import peft

    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    record = {"kind": "lora", "peft": peft.__version__, "base": base_identity(base)}
    atomic_write_text(folder / BASE_FILE, json.dumps(record, indent=2) + "\n")


def read_base(folder: Path) -> dict[str, Any]:
    """The base record (:data:`BASE_FILE`) of a saved adapter: ``path``, ``sha256``, ``files``."""
    base: dict[str, Any] = json.loads((folder / BASE_FILE).read_text(encoding="utf-8"))["base"]
    return base


class BaseNotFound(FileNotFoundError):
    """The adapter's base checkpoint is not where it was looked for."""


class BaseChanged(ValueError):
    """The base checkpoint found is not the one the adapter was trained on."""


def load(folder: Path, *, merged: bool, base: Path | None = None,
         trust_remote_code: bool = False, verify: bool = True) -> tuple[Any, Any]:
    """A saved adapter cell's model and tokenizer: the base checkpoint with the adapter.

    Args:
        folder: the cell's ``model/`` folder (:func:`save`'s).
        merged: merge the adapter into the base weights (a plain ``transformers`` model,
            as fast as the base) rather than keep the ``PeftModel`` with LoRA layers.
        base: where the base checkpoint is on this machine; default: the path it was
            trained from (:data:`BASE_FILE`).
        verify: refuse a base whose content hash differs from the recorded one.

    Raises:
        BaseNotFound: the base checkpoint is not at ``base`` (or the recorded path).
        BaseChanged: ``verify`` and the base's content differs from the one trained on.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recorded = read_base(folder)
    path = Path(base) if base is not None else Path(recorded["path"])
    if not path.is_dir():
        raise BaseNotFound(f"{folder}: the adapter's base checkpoint is not at {path} "
                                "(pass the folder where it is on this machine)")
    if verify:
        found = base_identity(path)["sha256"]
        if found != recorded["sha256"]:
            raise BaseChanged(f"{folder}: the base checkpoint at {path} is not the one the "
                             f"adapter was trained on (content sha256 {found[:12]}, recorded "
                             f"{recorded['sha256'][:12]})")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                 trust_remote_code=trust_remote_code,
                                                 use_safetensors=True)
    wrapped = PeftModel.from_pretrained(model, folder, is_trainable=False)
    out = wrapped.merge_and_unload() if merged else wrapped
    out.eval()
    return out, tokenizer


def merge(wrapped: Any) -> Any:
    """Fold the adapter into the base weights (``W + alpha/r * B @ A``) and drop the LoRA
    layers, in place; returns the plain model (the one :func:`attach` was given)."""
    return wrapped.merge_and_unload()


def latency_record(merged: Mapping[str, Any], unmerged: Mapping[str, Any], *,
                   adapter: Mapping[str, Any], trainable: int, checkpoint_dir: Path
                   ) -> dict[str, Any]:
    """One latency record for an adapter cell: the merged model's figures under the keys every
    cell has (it is what would be deployed, and it compares with fully fine-tuned cells), the
    unmerged ones as ``unmerged_<key>`` (:data:`UNMERGED_KEYS`), and the adapter's size.

    ``checkpoint_mb`` (from ``merged``) already counts the adapter's weights only: the model
    folder holds no other safetensors. ``parameters`` is the merged model's (the base's).
    """
    base = read_base(checkpoint_dir)
    return {
        **merged,
        **{f"unmerged_{k}": unmerged[k] for k in UNMERGED_KEYS if k in unmerged},
        "unmerged_decode_path": unmerged.get("decode_path"),
        "adapter_parameters": int(trainable),
        "adapter": {**{k: adapter[k] for k in ("kind", "r", "alpha", "dropout",
                                                "target_modules") if k in adapter},
                    "base_path": base["path"], "base_sha256": base["sha256"],
                    "base_mb": sum(f["size"] for n, f in base["files"].items()
                                   if n.endswith(".safetensors")) / 2**20},
    }
