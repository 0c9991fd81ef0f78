"""The generate stage on scripted teachers: records in the data contract that `validate`
accepts, wrong and unparseable answers kept as failure-pool candidates, the judge's order
recorded, bad input refused (exit 2) before any call. Failed calls (unanswered prompts) are
tests/teachers/test_unanswered.py; the real providers' end-to-end run is
tests/teachers/test_generate_e2e.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.checks import load_experiment
from harness.cli import main
from harness.commands.generate import run_generate, summary_rows
from harness.errors import InputError
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.cache import CachedTeacher, CallCache
from harness.teachers.generate import generate, write
from harness.teachers.inputs import read_prompts
from harness.teachers.judge import LLMJudge
from tests.helpers.scripted_teacher import ScriptedTeacher, user_text

LABELS = ["billing", "shipping"]


def _spec(tmp: Path, **gen: Any) -> dict[str, Any]:
    return {
        "name": "gen",
        "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl",
                 "judge_scale": [1, 5]},
        "units": {"route": {"kind": "label", "labels": LABELS},
                  "order": {"kind": "json_fields", "fields": ["order_id"]},
                  "esc": {"kind": "refusal", "marker": "ESCALATE"}},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
        "buckets": {"only_a": {"teachers": ["a"], "select": "all"},
                    "judged": {"select": "judge_winner", "min_score": 3}},
        "fields": {"answer_only": {}},
        "baseline": {"bucket": "only_a", "fields": "answer_only"},
        "design": {"noise_seeds": []},
        "generate": {"prompts": "prompts/train.jsonl", "eval_prompts": "prompts/eval.jsonl",
                     **gen},
    }


TRAIN: list[dict[str, Any]] = [
    {"id": "t1", "unit": "route", "prompt": "I was charged twice", "reference": "billing",
     "tags": {"source": "real"}},
    {"id": "t2", "unit": "route", "prompt": "parcel is late"},
    {"id": "t3", "unit": "order", "prompt": "order 77 please", "reference": '{"order_id":"77"}'},
    {"id": "t4", "unit": "esc", "prompt": "I will sue you"},
]
EVAL: list[dict[str, Any]] = [
    {"id": "e1", "unit": "route", "prompt": "refund my money", "reference": "billing"},
    {"id": "e2", "unit": "order", "prompt": "where is order 5", "reference": '{"order_id":"5"}'},
]


def _write(tmp: Path, spec: dict[str, Any], train: list[dict[str, Any]] = TRAIN,
           evals: list[dict[str, Any]] = EVAL) -> Path:
    (tmp / "prompts").mkdir(exist_ok=True)
    for name, rows in (("train", train), ("eval", evals)):
        (tmp / "prompts" / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def good(req: ChatRequest) -> str:
    """A teacher that is right (it reads the prompt) and states a rationale and confidence."""
    text = user_text(req)
    if "order 77" in text:
        answer: Any = {"order_id": "77"}
    elif "order 5" in text:
        answer = {"order_id": "5"}
    elif "sue" in text:
        answer = "ESCALATE"
    else:
        answer = "shipping" if "parcel" in text else "billing"
    return json.dumps({"answer": answer, "rationale": "it says so", "confidence": 0.8})


def flaky(req: ChatRequest) -> str | Completion:
    """Wrong on billing, garbage on orders, no escalation where one is due."""
    text = user_text(req)
    if "sue" in text:
        return '{"answer": "I can help with that"}'
    if "order" in text:
        return "Sure! The order id is 77."
    return '```json\n{"answer": "Shipping", "confidence": 0.9}\n```'


def _judge(script: Any) -> LLMJudge:
    return LLMJudge("judge_v1", ScriptedTeacher("j", script), (1.0, 5.0), seed=0)


def _favour_a(req: ChatRequest) -> str:
    """A judge that gives 5 to each answer stating a reason (teacher a's) and 2 to the others,
    wherever they are shown (so its verdicts survive the reversed order)."""
    blocks = re.findall(r'<candidate id="([A-Z])">(.*?)</candidate>', user_text(req), re.S)
    scores = {x: 5 if "<reason>" in body else 2 for x, body in blocks}
    return json.dumps({"scores": scores, "winner": max(scores, key=scores.__getitem__),
                       "reason_tags": ["reasoned"]})


def _generate(tmp: Path, judge: LLMJudge | None) -> tuple[Any, Any]:
    path = _write(tmp, _spec(tmp))
    exp = load_experiment(path, check_files=False).spec
    assert exp.generate is not None
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    train = read_prompts(exp.generate.prompts, units)
    evals = read_prompts(exp.generate.eval_prompts, units, need_reference=True)  # type: ignore[arg-type]
    teachers = {"a": ScriptedTeacher("a", good, label_probs={"billing": 0.7, "shipping": 0.3}),
                "b": ScriptedTeacher("b", flaky)}
    result = generate(exp, train, evals, teachers, judge, progress=False)
    write(exp, result, write_eval=True)
    return exp, result


def test_generate_writes_what_validate_accepts(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    exp, result = _generate(tmp_path, _judge(_favour_a))
    assert main(["validate", str(tmp_path / "exp.yaml")]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in exp.data.samples.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t1", "t2", "t3", "t4"]
    t1 = rows[0]
    a, b = t1["candidates"]
    assert (a["final"], a["confidence"], a["confidence_source"]) == \
        ("billing", 0.7, "label_probabilities")
    assert (b["final"], b["confidence"], b["confidence_source"]) == \
        ("shipping", 0.9, "self_reported")
    assert t1["pools"] == {"a": "train", "b": "failure"}
    assert t1["failure"] == {"b": {"kind": "wrong_answer", "correction": "billing",
                                   "note": "answered 'shipping'; the reference is 'billing'"}}
    assert t1["judge"]["order"] in (["a", "b"], ["b", "a"])
    assert [o["order"] for o in t1["judge"]["orders"]] == \
        [t1["judge"]["order"], t1["judge"]["order"][::-1]]  # judged in both orders
    assert t1["judge"]["scores"] == {"a": 5.0, "b": 2.0} and t1["judge"]["winner"] == "a"
    assert t1["judge"]["position_consistent"] is True
    assert t1["tags"] == {"source": "real"} and t1["round"] == 1
    # no reference: nothing is routed; b's answer is kept in train
    assert rows[1]["pools"] == {"a": "train", "b": "train"} and rows[1]["failure"] == {}
    # garbage costs one candidate, with its reason; only answered candidates are judged
    assert rows[2]["failure"]["b"]["kind"] == "unparseable"
    assert rows[2]["failure"]["b"]["correction"] == '{"order_id":"77"}'
    assert rows[2]["candidates"][1]["final"] == ""
    assert rows[2]["judge"]["order"] == ["a"]
    assert rows[3]["pools"] == {"a": "train", "b": "train"} and rows[3]["failure"] == {}
    ev = [json.loads(x) for x in exp.data.eval.read_text().splitlines()]
    assert [e["id"] for e in ev] == ["e1", "e2"] and ev[0]["judge"] is None
    assert ev[0]["pools"] == {"a": "train", "b": "failure"}
    headers, table = summary_rows(result)
    by_name = {r[0]: dict(zip(headers, r, strict=True)) for r in table}
    assert by_name["a"]["calls"] == 6 and by_name["b"]["failed_calls"] == 0
    assert by_name["judge:judge_v1"]["calls"] == 7  # 3 records in two orders, t3 in one
    assert by_name["b"]["outcomes"] == "train=2 unparseable=2 wrong_answer=2"
    assert result.complete and not result.unanswered and not result.dropped


def test_without_an_llm_judge_the_reference_judges(tmp_path: Path) -> None:
    exp, _ = _generate(tmp_path, None)
    rows = [json.loads(x) for x in exp.data.samples.read_text().splitlines()]
    assert rows[0]["judge"] == {"judge": "reference", "winner": "a",
                                "scores": {"a": 5.0, "b": 1.0},
                                "reason_tags": ["matches the reference"]}
    assert rows[1]["judge"] is None  # no reference, no judge


def _refused(tmp: Path, spec: dict[str, Any], train: list[dict[str, Any]] = TRAIN,
             evals: list[dict[str, Any]] = EVAL) -> str:
    path = _write(tmp, spec, train, evals)

    def build(*_: Any) -> Any:
        raise AssertionError("no teacher may be built for bad input")

    with pytest.raises(InputError) as err:
        run_generate(str(path), progress=False, build=build)
    return err.value.render()


def test_bad_prompts_are_located_before_any_call(tmp_path: Path) -> None:
    bad = [*TRAIN, {"id": "t1", "unit": "route", "prompt": "again"},
           {"id": "x", "unit": "rout", "prompt": "p"}, {"id": "y", "prompt": "", "extra": 1},
           {"id": "z", "unit": "route", "prompt": "p", "reference": "refund"}]
    text = _refused(tmp_path, _spec(tmp_path), train=bad)
    lines = text.splitlines()
    assert "train.jsonl: the prompts file is not valid" in lines[0]
    assert any("train.jsonl:5: id: duplicate id 't1' (first on line 1)" in x for x in lines)
    assert any("train.jsonl:6: unit: unit 'rout' is not declared" in x and "route" in x
               for x in lines)
    assert any("train.jsonl:7: extra: unknown key" in x for x in lines)
    assert any("train.jsonl:7: prompt: required" in x for x in lines)
    assert any("train.jsonl:8: reference: 'refund' is not a label" in x for x in lines)


def test_bad_lines_missing_files_and_missing_references(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec(tmp_path))
    (tmp_path / "prompts" / "train.jsonl").write_bytes(b'{"id": 1\n\xff\xfe\n[1]\n')
    with pytest.raises(InputError) as err:
        run_generate(str(path), progress=False, build=None)
    text = err.value.render()
    assert ":1: " in text and "not valid JSON" in text
    assert ":2: " in text and "UTF-8" in text and ":3: " in text and "JSON object" in text
    text = _refused(tmp_path, _spec(tmp_path, prompts="prompts/nope.jsonl"))
    assert "nope.jsonl: cannot read the prompts file" in text
    no_ref = [{"id": "e1", "unit": "route", "prompt": "q"}]
    assert "reference: required in an eval prompts file" in _refused(tmp_path, _spec(tmp_path),
                                                                     evals=no_ref)


def test_leaking_eval_prompts_and_missing_section_are_refused(tmp_path: Path) -> None:
    leak = [{"id": "e9", "unit": "route", "prompt": "I  was CHARGED twice",
             "reference": "billing"}]
    text = _refused(tmp_path, _spec(tmp_path), evals=leak)
    assert "eval.jsonl:1: prompt: the same prompt is a training prompt" in text
    spec = _spec(tmp_path)
    del spec["generate"]
    assert "no generate: section" in _refused(tmp_path, spec)
    spec = _spec(tmp_path)
    spec["data"]["samples"] = "data/samples.parquet"
    assert "generate writes JSON Lines" in _refused(tmp_path, spec)


def test_limit_reads_only_the_first_prompts(tmp_path: Path) -> None:
    path = _write(tmp_path, _spec(tmp_path))
    exp = load_experiment(path, check_files=False).spec
    assert exp.generate is not None
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    assert [p.id for p in read_prompts(exp.generate.prompts, units, limit=2)] == ["t1", "t2"]
    # what lies beyond the limit is not read, so it cannot fail the dry run
    with exp.generate.prompts.open("a", encoding="utf-8") as f:
        f.write("not json\n")
    assert len(read_prompts(exp.generate.prompts, units, limit=4)) == 4


def _generate_when(tmp: Path, judge: LLMJudge) -> list[dict[str, Any]]:
    """Generate with teachers a (good) and b (flaky) on prompts where they agree on some."""
    train = [*TRAIN, {"id": "t5", "unit": "route", "prompt": "parcel lost",
                      "reference": "shipping"}]
    path = _write(tmp, _spec(tmp), train=train)
    exp = load_experiment(path, check_files=False).spec
    assert exp.generate is not None
    units = {k: u.model_dump(mode="json") for k, u in exp.units.items()}
    teachers = {"a": ScriptedTeacher("a", good), "b": ScriptedTeacher("b", flaky)}
    evals = read_prompts(exp.generate.eval_prompts, units, need_reference=True)  # type: ignore[arg-type]
    result = generate(exp, read_prompts(exp.generate.prompts, units), evals, teachers, judge,
                      progress=False)
    write(exp, result, write_eval=True)
    assert result.judge_asked + result.judge_skipped == 5
    return [json.loads(x) for x in exp.data.samples.read_text().splitlines()]


def test_judge_when_disagreement_skips_records_the_teachers_agree_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = ScriptedTeacher("j", _favour_a)
    judge = LLMJudge("judge_v1", model, (1.0, 5.0), seed=0, when="disagreement")
    rows = {r["id"]: r for r in _generate_when(tmp_path, judge)}
    assert main(["validate", str(tmp_path / "exp.yaml")]) == 0, capsys.readouterr().err
    # t1 (billing vs shipping), t3 (b unparseable), t4 (b does not escalate): judged, t3
    # (one answer) in one order, the others in both
    assert len(model.seen) == 5
    assert all(rows[k]["judge"]["judge"] == "judge_v1" for k in ("t1", "t3", "t4"))
    # t2: both say shipping, no reference -> no LLM judge, an agreement verdict that says so
    # (the winner: the higher stated confidence, b's 0.9 over a's 0.8)
    assert rows["t2"]["judge"] == {"judge": "agreement", "winner": "b", "scores": {},
                                   "reason_tags": ["teachers agree"],
                                   "skipped": "teachers agree (judge.when: disagreement)"}
    # t5: both say shipping, with a reference -> the reference judge, marked as skipped
    t5 = rows["t5"]["judge"]
    assert t5["judge"] == "reference" and t5["winner"] == "b"
    assert t5["skipped"] == "teachers agree (judge.when: disagreement)"


def test_judge_always_asks_every_record_with_an_answer(tmp_path: Path) -> None:
    model = ScriptedTeacher("j", _favour_a)
    rows = _generate_when(tmp_path, LLMJudge("judge_v1", model, (1.0, 5.0), seed=0))
    assert len(model.seen) == 9  # in both orders but t3 (one answer)
    assert all(r["judge"]["judge"] == "judge_v1" and "skipped" not in r["judge"] for r in rows)


def test_an_unreadable_llm_verdict_falls_back_to_the_reference(tmp_path: Path) -> None:
    rows = _generate_when(tmp_path, _judge(lambda req: "I think A is better."))
    t1 = rows[0]["judge"]
    assert t1["judge"] == "reference" and t1["winner"] == "a"
    assert t1["reason_tags"] == ["judge_unparseable", "matches the reference"]
    assert t1["llm_judge"]["judge"] == "judge_v1" and sorted(t1["llm_judge"]["order"]) == \
        ["a", "b"]
    # no reference: the unreadable verdict stays as it is (no winner, says why)
    assert rows[1]["judge"]["winner"] is None
    assert rows[1]["judge"]["reason_tags"] == ["judge_unparseable"]


def test_judge_when_is_read_from_the_yaml(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec["judge"] = {"teacher": "a", "when": "disagreement"}
    spec["teachers"] = {"a": {"provider": "hf", "model": str(tmp_path)}}
    spec["costs"] = {"teachers": {"a": {"price_per_1k_prompt": 0.0,
                                        "price_per_1k_completion": 0.0}}}
    exp = load_experiment(_write(tmp_path, spec), check_files=False).spec
    assert exp.judge is not None and exp.judge.when == "disagreement"
    spec["judge"]["when"] = "sometimes"
    with pytest.raises(InputError, match="when"):
        load_experiment(_write(tmp_path, spec), check_files=False)


def test_summary_of_a_cached_rerun_pays_nothing_and_counts_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    spec["teachers"] = {n: {"provider": "hf", "model": str(tmp_path)} for n in ("a", "b")}
    spec["costs"] = {"teachers": {
        "a": {"price_per_1k_prompt": 1.0, "price_per_1k_completion": 2.0},
        "b": {"price_per_1k_prompt": 0.5, "price_per_1k_completion": 0.0},
        "judge_v1": {"price_per_1k_prompt": 3.0, "price_per_1k_completion": 1.0}}}
    path = _write(tmp_path, spec)
    monkeypatch.chdir(tmp_path)  # the default cache: runs/<name>/teacher_cache.sqlite
    asked: list[str] = []

    def build(exp: Any, names: list[str], cache: Path) -> Any:
        store = CallCache(cache)
        raw = {"a": ScriptedTeacher("a", good), "b": ScriptedTeacher("b", flaky)}
        judge = ScriptedTeacher("judge_v1", _favour_a)
        for t in (*raw.values(), judge):
            t.script = _logged(t.script, asked)
        return ({n: CachedTeacher(t, store) for n, t in raw.items()},
                LLMJudge("judge_v1", CachedTeacher(judge, store), (1.0, 5.0), seed=0))

    tables: list[dict[str, dict[str, Any]]] = []
    counts: list[int] = []
    for _ in range(2):
        headers, rows = summary_rows(run_generate(str(path), progress=False, build=build)[1])
        tables.append({str(r[0]): dict(zip(headers, r, strict=True)) for r in rows})
        counts.append(len(asked))
    cold, warm = tables
    assert counts[0] == counts[1] and counts[0] > 12  # the rerun asked nothing again
    a, b, j = (cold[n] for n in ("a", "b", "judge:judge_v1"))
    assert (a["calls"], a["cache_hits"], a["prompt_tok"], a["completion_tok"]) == (6, 0, 60, 50)
    assert a["cost_paid"] == a["cost_total"] == (60 * 1.0 + 50 * 2.0) / 1000
    assert b["cost_paid"] == 60 * 0.5 / 1000 and b["failed_calls"] == 0
    # the judge: 3 records in both orders, t3 (one answer) in one; 9 words a verdict, 7 alone
    assert (j["calls"], j["prompt_tok"], j["cost_paid"]) == (7, 70, (70 * 3.0 + 61) / 1000)
    for name, row in warm.items():
        # tokens and cost_total describe the written samples, cached or not; nothing paid again
        same = ("calls", "prompt_tok", "completion_tok", "cost_total", "failed_calls", "outcomes")
        assert {k: row[k] for k in same} == {k: cold[name][k] for k in same}
        assert row["cache_hits"] == row["calls"]
        assert row["cost_paid"] == 0.0


def _logged(script: Any, asked: list[str]) -> Any:
    def run(req: ChatRequest) -> str | Completion:
        asked.append(user_text(req))
        return script(req)  # type: ignore[no-any-return]
    return run


def test_lone_surrogates_in_prompts_are_located_before_any_call(tmp_path: Path) -> None:
    # JSON can spell \ud800; no UTF-8 request, cache key or output file can carry it
    bad: list[dict[str, Any]] = [
        {"id": "s1", "unit": "route", "prompt": "hi \ud800"},
        {"id": "s2\udc80", "unit": "route", "prompt": "ok", "tags": {"k": "\udfff"}}]
    text = _refused(tmp_path, _spec(tmp_path), train=bad)
    assert "train.jsonl:1: prompt: contains a lone surrogate" in text
    assert "train.jsonl:2: id: contains a lone surrogate" in text
    assert "train.jsonl:2: tags: contains a lone surrogate" in text


def test_unwritable_outputs_are_refused_before_any_call(tmp_path: Path) -> None:
    (tmp_path / "data" / "samples.jsonl").mkdir(parents=True)
    assert "data.samples: " in (text := _refused(tmp_path, _spec(tmp_path)))
    assert "samples.jsonl is a folder" in text
    (tmp_path / "data" / "samples.jsonl").rmdir()
    spec = _spec(tmp_path)
    spec["data"]["eval"] = "flat/eval.jsonl"
    (tmp_path / "flat").write_text("a file, not a folder")
    text = _refused(tmp_path, spec)
    assert "data.eval: cannot create" in text and "is a file, not a folder" in text


def test_a_failed_write_after_the_calls_is_an_input_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import harness.teachers.generate as stage

    def full(*_: Any, **__: Any) -> list[Path]:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.jsonl"))

    monkeypatch.setattr(stage, "write", full)
    spec = _spec(tmp_path, cache="c.sqlite")
    spec["teachers"] = {n: {"provider": "hf", "model": str(tmp_path)} for n in ("a", "b")}
    spec["costs"] = {"teachers": {"a": {}, "b": {}}}
    path = _write(tmp_path, spec)

    def build(exp: Any, names: list[str], cache: Path) -> Any:
        store = CallCache(cache)
        return {n: CachedTeacher(ScriptedTeacher(n, good), store) for n in ("a", "b")}, None

    with pytest.raises(InputError, match="No space left on device.*call cache"):
        run_generate(str(path), progress=False, build=build)


def test_missing_packages_and_rubric_errors_name_their_yaml_field(tmp_path: Path) -> None:
    spec = _spec(tmp_path, cache="c.sqlite")
    spec["teachers"] = {"a": {"provider": "hf", "package_file": "h7_no_such_pkg:m.gguf"},
                        "b": {"provider": "hf", "package_file": "six:m.gguf"}}
    spec["costs"] = {"teachers": {"a": {}, "b": {}}}
    for teachers, needle in ((["a"], "teachers.a.package_file: 'h7_no_such_pkg:m.gguf': the "
                              "package 'h7_no_such_pkg' is not installed"),
                             (["b"], "'six' is a single-file module")):
        spec["generate"]["teachers"] = teachers
        with pytest.raises(InputError, match=needle):
            run_generate(str(_write(tmp_path, spec)), progress=False)
    spec["teachers"] = {"a": {"provider": "hf", "model": str(tmp_path)}}
    (tmp_path / "config.json").write_text("{}")  # the check does not load the model
    (tmp_path / "rubric.j2").write_text("{{ prompt }} {{ nope }}")
    spec["generate"]["teachers"] = ["a"]
    spec["costs"] = {"teachers": {"a": {}}}
    spec["judge"] = {"teacher": "a", "rubric_file": "rubric.j2"}
    with pytest.raises(InputError, match=r"judge.rubric_file \(.*rubric.j2\): the rubric cannot "
                                         r"be rendered for an example record, before any call"):
        run_generate(str(_write(tmp_path, spec)), progress=False)
