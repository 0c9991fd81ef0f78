"""A label's confidence from an endpoint's log-probabilities is measured where the teacher wrote
the label, or absent: a local OpenAI-compatible server (tests/helpers/fake_provider.py) returns
chat completions with ``logprobs.content`` in the OpenAI format, and each case runs the whole
path a teacher's answer takes (request, provider, candidate)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import AnswerSource, Completion
from harness.teachers.parse import Outcome, candidate_from, scored_answer
from harness.teachers.prompts import build_request
from harness.teachers.providers.logprob_labels import (
    answer_value_start,
    label_probs_from_logprobs,
)
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from tests.helpers.fake_provider import FakeProvider, Reply, Request, chat_completion

INTENTS = {"kind": "label", "labels": ["billing", "shipping", "refund"]}
CARDS = {"kind": "label", "labels": ["card_arrival", "card_linking", "exchange_rate"]}
PROMPT = "Customer message: where is my parcel?"

#: (token, probability of the chosen token, {alternative: probability}); a token given as bytes
#: is one of the byte pieces an endpoint returns for a character split over tokens.
Step = tuple[str | bytes, float, dict[str, float]]


def _entry(token: str | bytes, logprob: float) -> dict[str, Any]:
    data = token if isinstance(token, bytes) else token.encode()
    shown = token.decode("latin-1") if isinstance(token, bytes) else token
    return {"token": shown, "logprob": logprob, "bytes": list(data)}


def logprob_content(steps: Sequence[Step]) -> tuple[str, list[dict[str, Any]]]:
    """The generated text and the ``choices[0].logprobs.content`` list of ``steps``, as the
    OpenAI reference has them: the chosen token's logprob beside the top alternatives, the chosen
    token listed first among them only when it is the most likely (a sampled token need not be
    among them) and ``-9999.0`` for a probability of 0 (not among the top 20)."""
    content, data = [], b""
    for token, p, alternatives in steps:
        entry = _entry(token, math.log(p) if p > 0 else -9999.0)
        listed = p > 0 and p >= max(alternatives.values(), default=0.0)
        entry["top_logprobs"] = [_entry(token, entry["logprob"])] * listed + [
            _entry(t, math.log(q)) for t, q in alternatives.items()]
        content.append(entry)
        data += token if isinstance(token, bytes) else token.encode()
    return data.decode(), content


def _scripted(req: Request, fp: FakeProvider) -> Reply | None:
    return fp.state["reply"] if req.path.endswith("/chat/completions") else None


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    """One local endpoint for the module; each :func:`ask` scripts its next reply."""
    with FakeProvider(_scripted) as fp:
        yield fp


def ask(server: FakeProvider, steps: Sequence[Step], unit: dict[str, Any],
        fields: Sequence[str] = (), answer_from: AnswerSource = "generation",
        with_logprobs: bool = True) -> tuple[Outcome, Completion, list[Any]]:
    """One prompt to an ``openai`` teacher with ``logprobs: true`` whose endpoint answers
    ``steps``: the candidate, the completion and the request bodies the endpoint received."""
    text, content = logprob_content(steps)
    server.state["reply"] = Reply(
        body=chat_completion(text, logprobs=content if with_logprobs else None))
    seen = len(server.chat_requests())
    spec = OpenAITeacherSpec.model_validate({
        "provider": "openai", "base_url": server.base_url, "model": "m", "timeout_s": 5,
        "max_retries": 0, "logprobs": True, "top_logprobs": 5, "answer_from": answer_from})
    request = build_request(PROMPT, unit, list(fields), max_tokens=32, answer_from=answer_from)
    got: list[Completion] = []
    OpenAIChatTeacher("t", spec).complete_many([request], lambda i, c: got.append(c))
    bodies = [r.body for r in server.chat_requests()[seen:]]
    (completion,) = got
    assert completion.error is None, completion.error_detail
    assert completion.text == text
    return candidate_from("t", completion, unit, list(fields), None, answer_from), completion, \
        bodies


def conf(out: Outcome) -> tuple[Any, Any, Any]:
    c = out.candidate
    return c["final"], c["confidence"], c["confidence_source"]


# "shipping" written as ship|ping, the string closed by `"}`; an unlikely "b" beside the
# reply's first token (which once gave billing all the mass and the right answer 0.0)
SHIPPING: list[Step] = [("ship", 0.9, {"bill": 0.06, "ref": 0.03}), ("ping", 0.98, {"ment": 0.01}),
            ('"}', 0.99, {'",': 0.005})]
SHIPPING_P = 0.9 * 0.98 * (0.99 + 0.005)  # `",` closes the same label


@pytest.mark.parametrize("before", [
    [('{"', 0.999, {"b": 1e-4}), ("answer", 1.0, {}), ('":', 1.0, {}), (' "', 1.0, {})],
    [("{", 1.0, {}), (' "', 1.0, {}), ("answer", 1.0, {}), ('"', 1.0, {}), (" :", 1.0, {}),
     ("  ", 1.0, {}), ('"', 1.0, {})],  # whitespace around the colon
    [("Sure", 1.0, {"b": 0.2}), ("!\n", 1.0, {}), ("```", 1.0, {}), ("json", 1.0, {}),
     ("\n", 1.0, {}), ('{"', 1.0, {}), ("answer", 1.0, {}), ('":', 1.0, {}),
     (' "', 1.0, {})],  # text and a code fence before the JSON
], ids=["json", "spaced", "fenced"])
def test_generation_mode_measures_the_written_label_where_it_is_written(
        server: FakeProvider, before: list[Step]) -> None:
    tail: list[Step] = [("\n```", 1.0, {})] if before[2][0] == "```" else []
    out, c, bodies = ask(server, [*before, *SHIPPING, *tail], INTENTS)
    assert bodies[0]["logprobs"] is True and bodies[0]["top_logprobs"] == 5
    assert conf(out) == ("shipping", pytest.approx(SHIPPING_P), "top_logprobs")
    assert out.candidate["answer_source"] == "generation"
    # the alternatives at the label's first token, unrenormalised; "shipment" is no label
    assert c.label_probs == pytest.approx({"shipping": SHIPPING_P, "billing": 0.06,
                                           "refund": 0.03})


CARD: list[Step] = [('{"answer": "', 1.0, {}), ("card", 0.9, {"exchange": 0.05, "car": 0.03})]


def test_labels_sharing_a_first_token_follow_what_was_written(server: FakeProvider) -> None:
    steps = [*CARD, ("_linking", 0.55, {"_arrival": 0.45}), ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, CARDS)
    # "car" could still be either card label: it counts for neither
    assert c.label_probs == pytest.approx({"card_linking": 0.9 * 0.55,
                                           "card_arrival": 0.9 * 0.45, "exchange_rate": 0.05})
    assert conf(out) == ("card_linking", pytest.approx(0.495), "top_logprobs")
    scored, _, bodies = ask(server, steps, CARDS, answer_from="label_scores")
    assert bodies[0]["logprobs"] is True
    assert conf(scored) == ("card_linking", pytest.approx(0.495), "top_logprobs")
    assert scored.candidate["answer_source"] == "label_scores"


def test_a_tie_between_labels_follows_the_written_text_never_the_list_order(
        server: FakeProvider) -> None:
    # card_arrival comes first in the unit and ties with the written card_linking
    steps = [*CARD, ("_linking", 0.5, {"_arrival": 0.5}), ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, CARDS, answer_from="label_scores")
    assert c.label_probs is not None
    assert c.label_probs["card_arrival"] == pytest.approx(c.label_probs["card_linking"])
    assert conf(out) == ("card_linking", pytest.approx(0.45), "top_logprobs")
    out, _, _ = ask(server, steps, CARDS)
    assert conf(out) == ("card_linking", pytest.approx(0.45), "top_logprobs")


def test_scored_answer_ties() -> None:
    probs = {"billing": 0.4, "shipping": 0.4, "refund": 0.1}
    assert scored_answer(probs) is None  # no text to break it: no confident answer
    assert scored_answer(probs, "shipping") == ("shipping", 0.4)
    assert scored_answer(probs, "refund") is None  # the text names neither tied label
    assert scored_answer({"billing": 0.3, "shipping": 0.5}, "billing") == ("shipping", 0.5)
    # without generated text the tie is a marked failure, not the first label
    tied = Completion(text="", label_probs=probs, confidence_source="label_probabilities")
    out = candidate_from("t", tied, INTENTS, [], "refund", "label_scores")
    assert out.pool == "failure" and out.failure is not None
    assert "tie (billing, shipping)" in out.failure["note"]
    # a text naming another label: the text answers (generation), at its measured probability
    named = Completion(text='{"answer": "refund"}', label_probs=probs)
    out = candidate_from("t", named, INTENTS, [], None, "label_scores")
    assert (out.candidate["final"], out.candidate["confidence"],
            out.candidate["answer_source"]) == ("refund", 0.1, "generation")


def test_mass_outside_the_top_alternatives_stays_unassigned(server: FakeProvider) -> None:
    unit = {"kind": "label", "labels": ["positive", "negative"]}
    steps = [('{"answer": "', 1.0, {}), ("positive", 0.6, {"negative": 0.2, "The": 0.1}),
             ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, unit)
    assert c.label_probs == pytest.approx({"positive": 0.6, "negative": 0.2})
    assert conf(out) == ("positive", pytest.approx(0.6), "top_logprobs")  # not 0.6 / 0.8


def test_a_sampled_token_missing_from_the_top_alternatives_is_still_measured(
        server: FakeProvider) -> None:
    steps: list[Step] = [('{"answer": "', 1.0, {}), ("ship", 0.1, {"bill": 0.5, "refund": 0.3}),
                         ("ping", 1.0, {}), ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, INTENTS)
    assert c.label_probs == pytest.approx({"shipping": 0.1, "billing": 0.5, "refund": 0.3})
    assert conf(out) == ("shipping", pytest.approx(0.1), "top_logprobs")
    # answered by the scores, the most probable label wins over the sampled text
    scored, _, _ = ask(server, steps, INTENTS, answer_from="label_scores")
    assert conf(scored) == ("billing", pytest.approx(0.5), "top_logprobs")


def test_a_label_split_into_byte_tokens_is_measured(server: FakeProvider) -> None:
    unit = {"kind": "label", "labels": ["café", "cafeteria"]}
    steps: list[Step] = [('{"answer": "', 1.0, {}), ("caf", 0.8, {"cafeteria": 0.1}),
                         (b"\xc3", 0.9, {"e": 0.05}), (b"\xa9", 1.0, {}), ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, unit)
    # "e" after "caf" can only become cafeteria
    assert c.label_probs == pytest.approx({"café": 0.72, "cafeteria": 0.1 + 0.8 * 0.05})
    assert conf(out) == ("café", pytest.approx(0.72), "top_logprobs")


SELF_REPORTED: Step = ('", "confidence": 0.7}', 1.0, {})


@pytest.mark.parametrize(("steps", "with_logprobs"), [
    # one token runs from the opening quote into the value
    ([('{"answer": "ship', 0.9, {'{"answer": "bill': 0.1}), ("ping", 1.0, {}), SELF_REPORTED],
     True),
    # the written label's token was sampled outside the top 20 (the reference's -9999.0)
    ([('{"answer": "', 1.0, {}), ("ship", 0.0, {"bill": 0.6}), ("ping", 1.0, {}),
      SELF_REPORTED], True),
    # the endpoint ignored `logprobs: true`
    ([('{"answer": "', 1.0, {}), ("shipping", 0.9, {}), SELF_REPORTED], False),
], ids=["straddling-token", "sampled-outside-top", "no-logprobs"])
def test_no_reliable_figure_gives_self_reported_or_none(server: FakeProvider, steps: list[Step],
                                                       with_logprobs: bool) -> None:
    out, c, _ = ask(server, steps, INTENTS, ["confidence"], with_logprobs=with_logprobs)
    assert conf(out) == ("shipping", 0.7, "self_reported")
    assert c.label_probs is None or "shipping" not in c.label_probs
    out, _, _ = ask(server, steps, INTENTS, [], with_logprobs=with_logprobs)
    assert conf(out) == ("shipping", None, None)  # never a made-up 0.0


def test_a_plain_text_answer_has_no_measured_figure(server: FakeProvider) -> None:
    # no JSON string to find the label in (and a label's end is not a token): no figure
    out, c, _ = ask(server, [("shipping", 0.9, {"billing": 0.1})], INTENTS)
    assert c.label_probs is None and conf(out) == ("shipping", None, None)


def test_a_written_value_that_is_no_label_measures_only_the_alternatives(
        server: FakeProvider) -> None:
    steps = [('{"answer": "', 1.0, {}), ("ship", 0.7, {"bill": 0.2}), ("ment", 1.0, {}),
             ('"}', 1.0, {})]
    out, c, _ = ask(server, steps, INTENTS)
    assert c.label_probs == pytest.approx({"billing": 0.2})
    assert out.pool == "failure" and out.failure is not None
    assert out.failure["kind"] == "unparseable"


def test_answer_value_start_reads_the_answer_the_parser_reads() -> None:
    text = 'Here: {"rationale": "say \\"answer\\": \\"x\\"", "answer": "refund"}'
    at = answer_value_start(text)
    assert at is not None and text[at:] == 'refund"}'
    fenced = 'x {"a": 1}\n```json\n{"answer": "billing"}\n```'
    at = answer_value_start(fenced)
    assert at is not None and fenced[at:].startswith('billing"}')
    assert answer_value_start('{"answer": 3}') is None
    assert answer_value_start("shipping") is None
    truncated = '{"answer": "ship'
    assert answer_value_start(truncated) == len('{"answer": "')
    assert label_probs_from_logprobs(None, ["a"]) is None
