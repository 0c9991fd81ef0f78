"""Failed calls are not teacher answers: a prompt whose call failed (429s outlasting the
retries, timeouts, a stopped teacher) stays unanswered. No candidate, failure-pool record,
correction, judge verdict or audit entry is made of it; `harness generate` exits 5 with what is
missing and why, writes nothing (or, with --partial, the answered records plus a sidecar that
`validate` refuses without --allow-partial), and a rerun asks only the missing prompts. Provider
error text with an organisation id or a key never reaches the data, the cache or the terminal.

The command-level tests run the real ``openai`` provider against a local OpenAI-compatible
server (tests/helpers/fake_provider.py, 127.0.0.1 only) and count what it received.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.checks import load_experiment
from harness.cli import main
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.cache import CallCache
from harness.teachers.generate import generate, write
from harness.teachers.inputs import read_prompts
from harness.teachers.judge import LLMJudge
from harness.teachers.parse import candidate_from
from harness.teachers.unanswered import sidecar_path
from tests.helpers.fake_provider import (
    FakeProvider,
    Reply,
    Request,
    chat_completion,
    error_body,
)
from tests.helpers.scripted_teacher import ScriptedTeacher, user_text

LABELS = ["billing", "shipping"]
#: What a provider's 429 says about its caller: an organisation id and a (masked) key.
ORG, KEY = "org-Zx8Qw3Ty6Ui9", "sk-proj-Ab12Cd34Ef56Gh78"
SECRETS = (ORG, KEY, "Zx8Qw3Ty6Ui9", "Ab12Cd34Ef56Gh78")

TRAIN = [{"id": "t1", "unit": "route", "prompt": "I was charged twice", "reference": "billing"},
         {"id": "t2", "unit": "route", "prompt": "my parcel is late"},
         {"id": "t3", "unit": "route", "prompt": "the box was stolen", "reference": "shipping"}]
EVAL = [{"id": "e1", "unit": "route", "prompt": "refund my money", "reference": "billing"},
        {"id": "e2", "unit": "route", "prompt": "where is my parcel", "reference": "shipping"}]


def _answer(prompt: str) -> str:
    return "shipping" if any(w in prompt for w in ("parcel", "box")) else "billing"


def _files(tmp: Path, teachers: dict[str, Any], **extra: Any) -> Path:
    """The experiment (teachers a and b, a bucket of a's answers) and its prompts files."""
    (tmp / "prompts").mkdir(exist_ok=True)
    for name, rows in (("train", TRAIN), ("eval", EVAL)):
        (tmp / "prompts" / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = {
        "name": "gaps",
        "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"},
        "units": {"route": {"kind": "label", "labels": LABELS}},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
        "buckets": {"only_a": {"teachers": ["a"], "select": "all"}},
        "fields": {"answer_only": {}},
        "baseline": {"bucket": "only_a", "fields": "answer_only"},
        "design": {"noise_seeds": []},
        "teachers": teachers,
        "costs": {"teachers": {n: {"price_per_1k_prompt": 1.0, "price_per_1k_completion": 2.0}
                               for n in teachers}},
        "generate": {"prompts": "prompts/train.jsonl", "eval_prompts": "prompts/eval.jsonl",
                     "cache": "cache.sqlite"},
        **extra,
    }
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the stage, scripted teachers


def _limited(req: ChatRequest) -> str | Completion:
    """Right, except that every call about a parcel or a box ran out of retries on a 429."""
    text = user_text(req)
    if "parcel" in text or "box" in text:
        return Completion(text=None, error="rate_limited", attempts=5,
                          error_detail=f"RateLimitError: Rate limit reached for {ORG} "
                                       f"(key {KEY}); retry after 20s")
    return json.dumps({"answer": _answer(text)})


def _judge_must_not_run(req: ChatRequest) -> str:
    raise AssertionError("the LLM judge was asked about an incomplete result")


def _stage(tmp: Path, judge: LLMJudge | None, *, partial: bool) -> Any:
    spec = {n: {"provider": "hf", "model": str(tmp)} for n in ("a", "b")}
    exp = load_experiment(_files(tmp, spec), check_files=False).spec
    assert exp.generate is not None and exp.generate.eval_prompts is not None
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    teachers = {"a": ScriptedTeacher("a", lambda r: json.dumps({"answer": "shipping"})
                                     if "box" in user_text(r) else _limited(r)),
                "b": ScriptedTeacher("b", _limited)}
    result = generate(exp, read_prompts(exp.generate.prompts, units),
                      read_prompts(exp.generate.eval_prompts, units, need_reference=True),
                      teachers, judge, progress=False, partial=partial)
    return exp, result


def test_a_failed_call_is_no_candidate_no_failure_and_no_audit(tmp_path: Path) -> None:
    judge = LLMJudge("j", ScriptedTeacher("j", _judge_must_not_run), (1.0, 5.0), seed=0)
    exp, result = _stage(tmp_path, judge, partial=False)
    assert not result.complete
    got = sorted((u.file, u.id, u.teacher, u.kind) for u in result.unanswered)
    assert got == [("eval", "e2", "a", "rate_limited"), ("eval", "e2", "b", "rate_limited"),
                   ("samples", "t2", "a", "rate_limited"), ("samples", "t2", "b", "rate_limited"),
                   ("samples", "t3", "b", "rate_limited")]
    # one example of what the provider said per teacher and kind, redacted
    details = {(u.teacher, u.kind): u.detail for u in result.unanswered if u.detail}
    assert sorted(details) == [("a", "rate_limited"), ("b", "rate_limited")]
    assert all("[redacted]" in d and not any(s in d for s in SECRETS) for d in details.values())
    # t2: nobody answered -> no record (the contract wants a candidate); t3: a alone
    assert result.dropped == ["t2"]
    records = {r["id"]: r for r in [*result.samples, *result.eval]}
    assert sorted(records) == ["e1", "e2", "t1", "t3"]
    t3 = records["t3"]
    assert [c["teacher"] for c in t3["candidates"]] == ["a"]
    assert t3["pools"] == {"a": "train"} and t3["failure"] == {}
    assert t3["judge"]["judge"] == "reference"  # the LLM judge is not bought for it
    # the audit: the eval item stays (it scores students), without a candidate from b
    assert records["e2"]["candidates"] == [] and records["e2"]["failure"] == {}
    assert not any(k.endswith(":rate_limited") for k in result.outcomes)
    assert result.judge_asked == 0
    with pytest.raises(ValueError, match="partial"):
        write(exp, result, write_eval=True)
    assert not exp.data.samples.exists() and not exp.data.eval.exists()


def test_a_failed_call_makes_no_candidate() -> None:
    unit = {"kind": "label", "labels": LABELS}
    failed = Completion(text=None, error="timeout", error_detail="no answer in 30 s")
    with pytest.raises(ValueError, match="not an answer"):
        candidate_from("b", failed, unit, [], "billing")
    # text that came back without an answer stays a failure-pool candidate
    out = candidate_from("b", Completion(text="no idea"), unit, [], "billing")
    assert out.pool == "failure" and out.failure is not None
    assert out.failure["kind"] == "unparseable" and out.failure["correction"] == "billing"


def test_partial_result_is_judged_and_written_with_its_sidecar(tmp_path: Path) -> None:
    seen: list[str] = []

    def judge_script(req: ChatRequest) -> str:
        seen.append(user_text(req))
        return json.dumps({"scores": {"A": 5}, "winner": "A", "reason_tags": []})

    exp, result = _stage(tmp_path, LLMJudge("j", ScriptedTeacher("j", judge_script),
                                            (1.0, 5.0), seed=0), partial=True)
    written = write(exp, result, write_eval=True, partial=True)
    sidecar = sidecar_path(exp.data.samples)
    assert sidecar == exp.data.samples.with_name("samples.unanswered.json")
    assert written == [exp.data.samples, exp.data.eval, sidecar]
    note = json.loads(sidecar.read_text())
    assert note["format"] == "harness-unanswered/1"
    assert note["dropped_training_prompts"] == ["t2"]
    assert note["teachers"]["b"]["kinds"] == {"rate_limited": 3}
    assert note["files"]["samples"]["sha256"] is not None
    assert len(note["unanswered"]) == 5 and seen  # the answered records were judged
    text = "".join(p.read_text() for p in written)
    assert not any(s in text for s in SECRETS)


# ------------------------------------------------------------------ the command, a local server


def _server_teachers(base_url: str) -> dict[str, Any]:
    common = {"provider": "openai", "base_url": base_url, "concurrency": 2, "timeout_s": 5,
              "max_retries": 1, "retry_horizon_s": 0.2}
    return {"a": {**common, "model": "ma"}, "b": {**common, "model": "mb"}}


def _behaviour(req: Request, fp: FakeProvider) -> Reply | None:
    """Model ``ma`` answers everything; ``mb`` answers 429 (with ``Retry-After``, naming the
    organisation and the key) on prompts about a parcel while ``fp.state["limited"]``."""
    if not req.path.endswith("/chat/completions"):
        return None
    body = req.body or {}
    prompt = body["messages"][-1]["content"]
    if body.get("model") == "mb" and fp.state.get("limited") and "parcel" in prompt:
        return Reply(429, error_body(f"Rate limit reached for gpt in organization {ORG} on "
                                     f"requests per min (RPM): Limit 3. Key {KEY}.",
                                     type_="requests", code="rate_limit_exceeded"),
                     headers={"Retry-After": "0.05"})
    return Reply(body=chat_completion(json.dumps({"answer": _answer(prompt)}),
                                      model=body.get("model", "m")))


def _chat_count(fp: FakeProvider) -> int:
    return len(fp.chat_requests())


def _everything_written(tmp: Path) -> bytes:
    """Every byte under the experiment's folder (data, sidecar, the cache with its WAL)."""
    return b"".join(p.read_bytes() for p in sorted(tmp.rglob("*")) if p.is_file())


def test_429s_outlasting_the_retries_leave_prompts_unanswered_and_a_rerun_pays_only_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with FakeProvider(_behaviour, models=("ma", "mb")) as fp:
        fp.state["limited"] = True
        exp = _files(tmp_path, _server_teachers(fp.base_url))
        earlier = tmp_path / "data" / "samples.jsonl"
        earlier.parent.mkdir()
        earlier.write_text("an earlier file the user had\n")
        assert main(["generate", str(exp), "--quiet"]) == 5
        out, err = capsys.readouterr()
        # b: t2 and e2 unanswered; nothing written, the earlier file untouched
        assert "incomplete: 2 prompt(s) lack an answer" in err
        assert "b: 2 unanswered (rate_limited=2); e.g. rate_limited: RateLimitError" in err
        assert "nothing written" in err and "earlier file kept as it was" in err
        assert "--partial" in err and "Traceback" not in err
        assert earlier.read_text() == "an earlier file the user had\n"
        assert not (tmp_path / "data" / "eval.jsonl").exists()
        assert not sidecar_path(earlier).exists()
        assert not any(s in out + err for s in SECRETS)
        assert not any(s.encode() in _everything_written(tmp_path) for s in SECRETS)
        with CallCache(tmp_path / "cache.sqlite") as cache:
            assert cache.counts("a") == {"calls": 5, "failures": 0}
            assert cache.counts("b") == {"calls": 3, "failures": 2}

        # the same run again, still limited: only b's two prompts are asked again
        first = _chat_count(fp)
        assert main(["generate", str(exp), "--quiet", "--partial"]) == 5
        out, err = capsys.readouterr()
        retried = {json.loads(r.raw)["messages"][-1]["content"] for r in fp.chat_requests()[first:]}
        assert len(retried) == 2 and all("parcel" in p for p in retried)
        assert all(json.loads(r.raw)["model"] == "mb" for r in fp.chat_requests()[first:])
        sidecar = sidecar_path(earlier)
        assert "partial data" in err and str(sidecar) in out
        rows = [json.loads(x) for x in earlier.read_text().splitlines()]
        t2 = next(r for r in rows if r["id"] == "t2")
        assert [c["teacher"] for c in t2["candidates"]] == ["a"] and t2["failure"] == {}
        assert not any(s.encode() in _everything_written(tmp_path) for s in SECRETS)

        # validate refuses the partial data, located at the sidecar, unless told otherwise
        assert main(["validate", str(exp)]) == 2
        err = capsys.readouterr().err
        assert "partial data" in err and f"{sidecar}: unanswered: b: 2 unanswered" in err
        assert "--allow-partial" in err and "Traceback" not in err
        assert main(["validate", str(exp), "--allow-partial"]) == 0
        assert "warning: samples.jsonl and eval.jsonl: partial data" in capsys.readouterr().out
        # so do the stages after it: plan (like compose and run) refuses it the same way
        assert main(["plan", str(exp)]) == 2
        assert f"{sidecar}: unanswered: b: 2 unanswered" in capsys.readouterr().err
        assert main(["plan", str(exp), "--allow-partial"]) == 0
        assert "partial data" in capsys.readouterr().err

        # the provider recovers: the rerun pays exactly the two missing calls, exits 0 and
        # removes the sidecar, and validate accepts the data
        fp.state["limited"] = False
        before = _chat_count(fp)
        assert main(["generate", str(exp), "--quiet"]) == 0
        assert _chat_count(fp) - before == 2
        assert not sidecar.exists()
        out = capsys.readouterr().out
        assert "Next: harness validate" in out
        assert main(["validate", str(exp)]) == 0
        rows = [json.loads(x) for x in earlier.read_text().splitlines()]
        assert all(len(r["candidates"]) == 2 for r in rows)


def test_validate_ignores_a_sidecar_of_earlier_files_and_refuses_a_broken_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp_path = _files(tmp_path, {n: {"provider": "hf", "model": str(tmp_path)}
                                 for n in ("a", "b")})
    exp = load_experiment(exp_path, check_files=False).spec
    assert exp.generate is not None and exp.generate.eval_prompts is not None
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    answers = {"a": ScriptedTeacher("a", lambda r: json.dumps({"answer": _answer(user_text(r))})),
               "b": ScriptedTeacher("b", lambda r: json.dumps({"answer": "billing"}))}
    result = generate(exp, read_prompts(exp.generate.prompts, units),
                      read_prompts(exp.generate.eval_prompts, units, need_reference=True),
                      answers, None, progress=False)
    assert result.complete
    write(exp, result, write_eval=True)
    sidecar = sidecar_path(exp.data.samples)
    stale = {"format": "harness-unanswered/1", "files": {"samples": {"path": "samples.jsonl",
                                                                     "sha256": "0" * 64}},
             "teachers": {"b": {"unanswered": 1, "kinds": {"timeout": 1}}}}
    sidecar.write_text(json.dumps(stale))
    assert main(["validate", str(exp_path)]) == 0
    assert "ignored: it lists unanswered prompts of an earlier version" in capsys.readouterr().out
    sidecar.write_text("{not json")
    assert main(["validate", str(exp_path)]) == 2
    assert "cannot read this note of unanswered prompts" in capsys.readouterr().err
    # a complete write removes a leftover sidecar
    write(exp, result, write_eval=True)
    assert not sidecar.exists()


def test_the_cache_and_a_local_teacher_redact_what_they_keep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.experiment.teachers import HFTeacherSpec
    from harness.teachers.providers import hf_local

    with CallCache(tmp_path / "c.sqlite") as cache:
        cache.record_failure("k", "b", Completion(text=None, error="auth",
                                                  error_detail=f"401 for {ORG} with {KEY}"))
    with closing(sqlite3.connect(tmp_path / "c.sqlite")) as db:  # as another program reads it
        (detail,) = db.execute("SELECT detail FROM failures").fetchone()
    assert detail.startswith("401 for [redacted]") and not any(s in detail for s in SECRETS)

    def broken(*_: Any) -> Any:
        raise RuntimeError(f"401 Client Error for https://user:{KEY}@hub.example/m ({ORG})")

    monkeypatch.setattr(hf_local, "load_model", broken)
    (tmp_path / "config.json").write_text("{}")
    teacher = hf_local.HFLocalTeacher("local", HFTeacherSpec(provider="hf", model=tmp_path))
    (out,) = teacher._batch([ChatRequest(messages=(("user", "hi"),), max_tokens=4)])
    assert out.error == "error" and out.error_detail is not None
    assert "RuntimeError: 401 Client Error" in out.error_detail
    assert not any(s in out.error_detail for s in SECRETS)
