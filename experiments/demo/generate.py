"""Seeded generator of the support-desk demo: a sample repository and an eval set.

Design
------
The demo needs data whose *truths are known*, so that every later stage of the harness
(teacher audit, judge filtering, failure pools, calibration, attribution) can be checked
against numbers written down in advance (see ``TRUTHS.md`` next to this file).

* Four capability units (one per unit kind the contract knows, except ``text``):
  ``intent_routing`` (label), ``order_fields`` (json_fields), ``tool_decision`` (tool_call)
  and ``escalation`` (refusal, marker ``ESCALATE``).
* An *item* (prompt + gold answer + the facts behind it) is drawn from small template tables.
  Every prompt carries a reference number from a seeded bijection, so prompts never repeat;
  training numbers are never multiples of 7 and eval numbers always are, which makes
  train/eval leakage impossible by construction rather than by a costly check.
* Three simulated teachers answer every item. Whether a teacher is right is one Bernoulli
  draw with the configured rate (shifted by difficulty and source); a wrong answer is a
  realistic error of that unit (wrong label, missing field, wrong tool, missed escalation ...).
  Teachers are independent given the item.
* A simulated judge scores candidates from their *true* correctness with a configured error
  rate and one deliberate blind spot (polite replies on must-escalate items).
* Pools and failure entries follow from the reference (or, without one, from the judge).

Only the standard library is used, and one ``random.Random`` per stream (train / eval),
so the same arguments give byte-identical files on any platform, and the first ``n`` training
records do not depend on ``n_train`` (prefix-stable).

Speed target: 20,000 training records per second on one core, written. About half of that
time is the JSON encoding of ~1.4 KB per record, so the generation side is kept lean: one
``rnd()`` index instead of ``random.choice``, rates looked up per case, answers without numbers
built once, and the JSON finals assembled as text instead of re-encoded.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# --------------------------------------------------------------------------------------
# Configured truths (documented in TRUTHS.md; tests import them from here)
# --------------------------------------------------------------------------------------
UNITS: tuple[str, ...] = ("intent_routing", "order_fields", "tool_decision", "escalation")
UNIT_KINDS: dict[str, str] = {
    "intent_routing": "label", "order_fields": "json_fields",
    "tool_decision": "tool_call", "escalation": "refusal",
}
LABELS: tuple[str, ...] = ("billing", "shipping", "technical", "account")
FIELDS: tuple[str, ...] = ("order_id", "amount", "currency")
TOOLS: tuple[str, ...] = ("lookup_order", "issue_refund")
REFUSAL_MARKER = "ESCALATE"
TEACHERS: tuple[str, ...] = ("teacher_a", "teacher_b", "teacher_c")
JUDGE_ID = "judge_v1"
PROMPT_PREFIX = "Customer: "
PROMPT_SUFFIX: dict[str, str] = {
    "intent_routing": "\nRoute this ticket.",
    "order_fields": "\nExtract order_id, amount, currency as JSON.",
    "tool_decision": "\nCall lookup_order or issue_refund if needed, else answer null.",
    "escalation": "\nReply to the customer or escalate.",
}

# P(final == reference) per teacher and unit on synthetic items, averaged over difficulty.
TEACHER_ACCURACY: dict[str, dict[str, float]] = {
    "teacher_a": {"intent_routing": 0.93, "order_fields": 0.85, "tool_decision": 0.85},
    "teacher_b": {"intent_routing": 0.80, "order_fields": 0.50, "tool_decision": 0.75},
    "teacher_c": {"intent_routing": 0.60, "order_fields": 0.60, "tool_decision": 0.60},
}
# Escalation is described by two rates instead of one accuracy.
ESCALATION_RECALL: dict[str, float] = {"teacher_a": 0.0, "teacher_b": 0.90, "teacher_c": 0.50}
OVER_REFUSAL: dict[str, float] = {"teacher_a": 0.0, "teacher_b": 0.10, "teacher_c": 0.30}
MUST_ESCALATE_RATE = 0.35
TOOL_MIX: tuple[tuple[str, float], ...] = (
    ("lookup_order", 0.40), ("issue_refund", 0.30), ("none", 0.30))

DIFFICULTY_MIX: tuple[tuple[str, float], ...] = (("easy", 0.4), ("medium", 0.4), ("hard", 0.2))
# Shifts average to zero under DIFFICULTY_MIX, so TEACHER_ACCURACY stays the marginal rate.
DIFFICULTY_SHIFT: dict[str, float] = {"easy": 0.05, "medium": 0.0, "hard": -0.10}
REAL_SHIFT = -0.08          # extra shift on eval items with source "real"
EVAL_REAL_RATE = 0.25       # share of eval items phrased like real traffic
REFERENCE_RATE = 0.90       # share of training records that carry a reference


class TeacherStyle(NamedTuple):
    """How a teacher talks, apart from how often it is right."""

    confidence: str            # "overconfident" | "calibrated" | "noisy" (see _candidate)
    rationale_rate: float      # P(rationale present)
    limits_rate: float         # P(limits present)
    extra_tokens: tuple[int, int]  # unseen reasoning tokens added to completion_tokens, U[lo, hi]
    lookup_before_refund: bool     # trajectory checks the order before issuing a refund
    observation_skip_rate: float   # P(tool observations left null: acts without reading results)


# Confidence styles: "overconfident" U(0.90, 0.99) regardless of correctness; "calibrated"
# c ~ U(p - s, p + s) and correct ~ Bernoulli(c); "noisy" U(0.30, 0.95) independent.
TEACHER_STYLE: dict[str, TeacherStyle] = {
    "teacher_a": TeacherStyle("overconfident", 1.0, 1.0, (40, 80), True, 0.0),
    "teacher_b": TeacherStyle("calibrated", 1.0, 0.5, (10, 25), False, 0.0),
    "teacher_c": TeacherStyle("noisy", 0.0, 0.0, (0, 3), False, 0.5),
}
# Illustrative prices (USD per 1k completion tokens) for ROI checks; not written to the data.
TEACHER_PRICE_PER_1K: dict[str, float] = {"teacher_a": 0.060, "teacher_b": 0.020,
                                          "teacher_c": 0.002}

JUDGE_ERROR_RATE = 0.08          # wrong answer scored 4-5, or correct answer scored 2
JUDGE_ESCALATION_BLIND_SPOT = 0.30  # canned reply on a must-escalate item scored 4-5
JUDGE_PARTIAL_CREDIT = 0.50      # one-field / one-argument errors scored 3 instead of 1-2
HARD_POOL_RATE = 0.40            # correct candidate on a hard item goes to "hard"
REVIEW_RATE = 0.02
DISCARD_RATE = 0.01

# Reference numbers: 100002 + 7*k (+ r, r in 1..6 for training), k a seeded permutation.
ORDER_BASE, ORDER_SPACE, ORDER_MULT = 100_002, 1_400_000, 611_953
MAX_RECORDS = ORDER_SPACE
assert math.gcd(ORDER_MULT, ORDER_SPACE) == 1  # the map k = (a*i + b) mod M is a bijection

# --------------------------------------------------------------------------------------
# Template tables. {n}: reference number, {amt}: amount surface form, {oid}: order id form.
# --------------------------------------------------------------------------------------
ROUTING_CUES: dict[str, tuple[tuple[str, str], ...]] = {
    "billing": (
        ("I was charged twice for order {n}.", "a duplicate charge"),
        ("The invoice for order {n} shows the wrong total.", "a wrong invoice"),
        ("Please refund my payment for order {n}.", "a payment refund"),
        ("My card was billed for order {n} even though I cancelled it.",
         "a charge after cancelling"),
        ("I need a copy of the receipt for order {n}.", "a receipt request"),
        ("There is an unknown charge on my statement for order {n}.", "an unknown charge"),
        ("The discount code was not applied to order {n}, so I paid too much.", "an overpayment")),
    "shipping": (
        ("My parcel for order {n} never arrived.", "a missing parcel"),
        ("The tracking number for order {n} has not updated in a week.", "a stale tracking number"),
        ("Can you change the delivery address for order {n}?", "a delivery address change"),
        ("The courier left order {n} at the wrong house.", "a misdelivered parcel"),
        ("Order {n} is stuck in customs.", "a parcel held in customs"),
        ("The box for order {n} arrived damaged in transit.", "damage in transit"),
        ("Delivery of order {n} is three days late.", "a late delivery")),
    "technical": (
        ("The app crashes when I open order {n}.", "an app crash"),
        ("I get an error code when I view order {n}.", "an error code"),
        ("I cannot log in to see order {n}.", "a login failure"),
        ("The checkout page freezes on order {n}.", "a frozen checkout page"),
        ("The website shows a blank screen after order {n}.", "a blank screen"),
        ("The download link in order {n} is broken.", "a broken download link")),
    "account": (
        ("Please change my email for customer number {n}.", "an email change"),
        ("I need to reset my password for customer number {n}.", "a password reset"),
        ("Please close my account, customer number {n}.", "an account closure"),
        ("I want to update the phone number on account {n}.", "a phone number update"),
        ("Can you merge my two profiles? The main one is account {n}.", "a profile merge"),
        ("Please delete my personal data for account {n}.", "a data deletion request")),
}
ROUTING_REAL_CUES: dict[str, tuple[tuple[str, str], ...]] = {
    "billing": (("got charged 2x for order {n}", "a duplicate charge"),
                ("why is there a second charge for {n} on my card", "a duplicate charge")),
    "shipping": (("my package for {n} is lost", "a missing parcel"),
                 ("courier never showed up with {n}", "a missing parcel")),
    "technical": (("app keeps crashing when i open {n}", "an app crash"),
                  ("site throws an error when i look at order {n}", "an error code")),
    "account": (("need to change the email on acct {n}", "an email change"),
                ("cant reset my password, customer {n}", "a password reset")),
}
LABEL_DOMAIN = {"billing": "payments", "shipping": "logistics", "technical": "product",
                "account": "account"}
PIVOTS = (" That part is sorted now. The real problem: ", " Never mind that. What I need: ",
          " Update, that got resolved. Today's issue: ", " But more importantly: ")
FILLERS = ("I have been a customer for years.", "Thanks in advance.", "Hope you are well.",
           "This is my second message about this.", "Please get back to me soon.",
           "I am writing from work.")
NAMES = ("Ana", "Ben", "Chen", "Dana", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Jo",
         "Kofi", "Lena", "Mateo", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq")

CURRENCY_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "C$"}
CURRENCY_WORD = {"USD": "dollars", "EUR": "euros", "GBP": "pounds", "CAD": "Canadian dollars"}
CURRENCIES = tuple(CURRENCY_SYMBOL)
ORDER_TEMPLATES: dict[bool, tuple[str, ...]] = {  # key: real phrasing?
    False: ("Order {oid} was {amt}, can you confirm the total?",
            "I paid {amt} for order {oid} yesterday.", "My order {oid} came to {amt} in total.",
            "For order {oid} I was billed {amt}.", "The receipt for order {oid} says {amt}."),
    True: ("so {oid} cost me {amt}?? more than i expected",
           "paid {amt} on {oid} and got nothing",
           "{amt} for order {oid}, is that the right price",
           "um my total for {oid} was {amt} right"),
}

# tool_decision: (template, cue) per decision and phrasing ("plain", "hard", "real").
TOOL_TEMPLATES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "lookup_order": {
        "plain": (("Where is my order {n}?", "asks where the order is"),
                  ("Can you check the status of order {n}?", "asks for the order status"),
                  ("Has order {n} shipped yet?", "asks whether the order shipped")),
        "hard": (("Order {n} is late. If it never comes I may want a refund, but where is it now?",
                  "asks where the order is before any refund"),),
        "real": (("wheres order {n} at", "asks where the order is"),
                 ("any update on {n}", "asks for the order status"))},
    "issue_refund": {
        "plain": (("Order {n} arrived broken, please refund {amt}.", "asks for a refund"),
                  ("Please issue a refund of {amt} for order {n}.", "asks for a refund"),
                  ("I returned order {n}, please refund the {amt}.", "asks for a refund")),
        "hard": (("Tracking says order {n} went back to you. Please refund the {amt}.",
                  "asks for a refund after a return"),),
        "real": (("order {n} came broken i want my {amt} back", "asks for a refund"),
                 ("refund {amt} on {n} pls", "asks for a refund"))},
    "none": {
        "plain": (("Hi! Order {n} arrived today, thank you so much!", "only says thanks"),
                  ("Do you ship to Norway? My last order, {n}, went to Sweden.",
                   "asks a general shipping question"),
                  ("Thanks for the quick help with order {n} yesterday!", "only says thanks")),
        "hard": (("How long do refunds usually take? Just curious, order {n} is fine.",
                  "asks about refund policy in general"),),
        "real": (("love the stuff from {n} ty", "only says thanks"),
                 ("do u ship to norway? last one was order {n}", "asks a general question"))},
}
LOOKUP_STATUSES = ("shipped, arriving in 2 days", "processing at the warehouse",
                   "delivered yesterday", "returned to sender")

# escalation, answerable side: topic -> reply, domain, phrase and templates.
ANSWER_TOPICS: dict[str, dict[str, Any]] = {
    "order_status": {
        "reply": "REPLY: we are checking your order status", "domain": "logistics",
        "phrase": "order status question",
        "plain": ("Where is my order {n}? It has been a week.", "Any news on order {n}?"),
        "hard": (("My lawyer friend recommended you! Where is order {n}?", "a lawyer"),),
        "real": ("order {n} still not here whats up",)},
    "refund_status": {
        "reply": "REPLY: your refund is being processed", "domain": "payments",
        "phrase": "refund timing question",
        "plain": ("When will the refund for order {n} reach my card?",
                  "I returned order {n}, when do I get my money?"),
        "hard": (("No need for a chargeback, just tell me when the refund for {n} arrives.",
                  "a chargeback"),),
        "real": ("wheres my refund for {n}",)},
    "address_change": {
        "reply": "REPLY: we will update your delivery address", "domain": "logistics",
        "phrase": "address change request",
        "plain": ("Can I still change the address on order {n}?",
                  "I moved, please send order {n} to my new flat."),
        "hard": (("I am dying to get order {n}, can it go to my office instead?", "dying"),),
        "real": ("new address for {n} pls",)},
    "password": {
        "reply": "REPLY: we have sent you a password reset link", "domain": "account",
        "phrase": "password question",
        "plain": ("I forgot my password, customer number {n}.",
                  "I cannot remember my login for account {n}."),
        "hard": (("My account {n} is not hacked, I just forgot the password.", "hacking"),),
        "real": ("forgot pw again lol, acct {n}",)},
    "feedback": {
        "reply": "REPLY: thank you for your feedback", "domain": "general",
        "phrase": "thank-you note",
        "plain": ("Just wanted to say order {n} was perfect!",
                  "Great service on order {n}, thanks."),
        "hard": (("This heater from order {n} is fire, best purchase ever!", "fire"),),
        "real": ("{n} was great ty",)},
}
CANNED_REPLIES: tuple[str, ...] = tuple(t["reply"] for t in ANSWER_TOPICS.values())
# escalation, must-escalate side: cue -> description, the topic a non-escalating teacher
# mistakes it for, domain, templates ("hard" ones hide the cue inside a routine request).
ESCALATION_CUES: dict[str, dict[str, Any]] = {
    "legal": {"cue": "a legal threat", "topic": "order_status", "domain": "legal",
              "plain": ("My lawyer will contact you about order {n}.",
                        "I am going to sue you over order {n}."),
              "hard": ("Where is order {n}? My solicitor says this delay breaks consumer law.",),
              "real": ("my lawyer is gonna hear about order {n}",)},
    "chargeback": {"cue": "a chargeback dispute", "topic": "refund_status", "domain": "payments",
                   "plain": ("I have opened a chargeback dispute with my bank over order {n}.",),
                   "hard": ("When is my refund for {n} due? My bank is reversing the payment.",),
                   "real": ("filed a chargeback for {n} with my bank",)},
    "breach": {"cue": "a possible data breach", "topic": "password", "domain": "security",
               "plain": ("I think your site leaked my card details, customer number {n}.",),
               "hard": ("Please reset my password for account {n}, I saw a login from abroad.",),
               "real": ("someone got into acct {n} and used my card",)},
    "safety": {"cue": "a safety hazard", "topic": "feedback", "domain": "safety",
               "plain": ("The charger from order {n} caught fire.",
                         "The heater from order {n} gave my child an electric shock."),
               "hard": ("Order {n} was fine, but the battery swelled and got very hot.",),
               "real": ("the charger from {n} literally started smoking",)},
    "threat": {"cue": "a threat against staff", "topic": "order_status", "domain": "security",
               "plain": ("If order {n} is not fixed today I will come to your office and "
                         "make you regret it.",),
               "hard": ("Order {n} is late again. Your staff should watch their backs.",),
               "real": ("fix {n} or i show up at ur office, ur warned",)},
}

LIMITS: dict[str, tuple[str, ...]] = {
    "billing": ("If the charge is still pending, route to payments.",
                "Refund disputes over 500.00 go to a supervisor."),
    "shipping": ("If the parcel shows delivered, open a carrier claim first.",
                 "Customs delays are outside our control; route to logistics."),
    "technical": ("If the issue is a payment failure, route to billing instead.",
                  "Ask for the app version before escalating to engineering."),
    "account": ("Identity must be verified before any account change.",
                "Closing an account cancels open orders; confirm first."),
    "order_fields": ("If several amounts appear, the order total is used.",
                     "Currency symbols map to ISO codes; C$ is CAD.",
                     "Amounts are normalized to two decimals."),
    "tool_decision": ("Look up the order before promising a date.",
                      "Refunds above 500.00 need a supervisor.",
                      "Do not call tools for greetings or general questions."),
    "escalation": ("Escalate any legal, safety, security or fraud mention.",
                   "Never promise compensation in a reply."),
}
OPENERS = ("hey ", "hi, ", "ok so ", "hello?? ", "", "ugh ")
TAILS = (" pls", " thx", "!!", " asap", " - sent from my phone", "??")
# One shared encoder: compact, UTF-8 text kept as is; records are trees, so no cycle check.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
# Precomputed orders: one uniform index instead of random.shuffle in the hot loop.
_TEACHER_ORDERS: tuple[tuple[str, ...], ...] = tuple(itertools.permutations(TEACHERS))
_UNIT_BLOCKS: tuple[tuple[str, ...], ...] = tuple(itertools.permutations(UNITS))


class Answer(NamedTuple):
    """One teacher's answer: final text, error kind/note (None when right), evidence."""

    final: str
    kind: str | None
    note: str | None
    rationale: str
    partial: bool            # a one-field / one-argument slip (judge may give partial credit)
    call: tuple[str, str, str | None] | None  # (tool, order_id, amount) behind a tool call


class Item(NamedTuple):
    """One prompt with its gold answer and the facts the simulated teachers reason from."""

    unit: str
    prompt: str
    reference: str
    difficulty: str
    domain: str
    must: bool               # escalation item that must be escalated (False for other units)
    right: Answer            # what any teacher says when it is right (built once per item)
    facts: dict[str, Any]    # unit-specific facts used to render realistic errors


Rnd = Callable[[], float]


# --------------------------------------------------------------------------------------
# Small helpers (hot path: index with rnd() instead of random.choice, which is slower)
# --------------------------------------------------------------------------------------
def _pick(rnd: Rnd, seq: Sequence[Any]) -> Any:
    """Uniform pick from a non-empty sequence."""
    return seq[int(rnd() * len(seq))]


def _pick_other(rnd: Rnd, seq: Sequence[str], exclude: str) -> str:
    """Uniform pick from ``seq`` without ``exclude``."""
    return _pick(rnd, [x for x in seq if x != exclude])


class _Weighted:
    """Draw keys of ``(key, weight)`` pairs (weights summing to 1) by bisecting the CDF."""

    def __init__(self, table: Sequence[tuple[str, float]]) -> None:
        self.keys = [k for k, _ in table]
        self.cuts = list(itertools.accumulate(w for _, w in table))[:-1]  # last bin open-ended

    def draw(self, rnd: Rnd) -> str:
        return self.keys[bisect.bisect_right(self.cuts, rnd())]


def _stream_seed(seed: int, stream: str) -> int:
    """Independent, platform-stable integer seed per stream (train / eval)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "big")


def _money(cents: int) -> str:
    """Normalized amount: '42.10'."""
    return f"{cents // 100}.{cents % 100:02d}"


def _prompt_tokens(prompt: str) -> int:
    """Prompt token estimate: words * 1.3, rounded."""
    return int((prompt.count(" ") + prompt.count("\n") + 1) * 1.3 + 0.5)


def _realify(rnd: Rnd, text: str) -> str:
    """Make a message look like real traffic: lowercase, a typo or two, opener, noisy tail."""
    words = text.lower().rstrip(".").split(" ")
    for _ in range(1 + (rnd() < 0.5)):
        j = int(rnd() * len(words))
        w = words[j]
        if len(w) >= 4 and w.isalpha():  # never touch numbers: the gold answer depends on them
            k = 1 + int(rnd() * (len(w) - 2))
            words[j] = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    return _pick(rnd, OPENERS) + " ".join(words) + _pick(rnd, TAILS)


def _amount_surface(rnd: Rnd, cents: int, cur: str, difficulty: str) -> str:
    """Render an amount the way customers write it; harder items use rarer forms."""
    num = _money(cents)
    if difficulty == "easy":
        return CURRENCY_SYMBOL[cur] + num if rnd() < 0.5 else f"{num} {cur}"
    whole, frac = divmod(cents, 100)
    if difficulty == "medium":
        short = str(whole) if frac == 0 else (f"{whole}.{frac // 10}" if frac % 10 == 0 else num)
        forms = (f"{cur} {num}", CURRENCY_SYMBOL[cur] + short, f"{short} {CURRENCY_WORD[cur]}")
        return _pick(rnd, forms)
    return _pick(rnd, (f"{whole},{frac:02d} {cur}", CURRENCY_SYMBOL[cur] + num,
                       f"{num} {CURRENCY_WORD[cur]}"))


def _prompt(unit: str, message: str) -> str:
    return PROMPT_PREFIX + message + PROMPT_SUFFIX[unit]


# The two JSON finals are assembled by hand: their values are digits, ISO codes or currency
# symbols (never quotes or backslashes), and this is 5x faster than the json encoder.
def _tool_json(name: str, order_id: str, amount: str | None) -> str:
    """Compact tool-call text; ``name`` first, arguments order_id then amount."""
    if amount is None:
        return f'{{"name":"{name}","arguments":{{"order_id":"{order_id}"}}}}'
    return (f'{{"name":"{name}","arguments":{{"order_id":"{order_id}",'
            f'"amount":"{amount}"}}}}')


def _fields_json(order_id: str | None, amount: str | None, currency: str | None) -> str:
    """Compact JSON with sorted keys (amount, currency, order_id); None drops the field."""
    parts = []
    if amount is not None:
        parts.append(f'"amount":"{amount}"')
    if currency is not None:
        parts.append(f'"currency":"{currency}"')
    if order_id is not None:
        parts.append(f'"order_id":"{order_id}"')
    return "{" + ",".join(parts) + "}"


def _route_reason(cue: str, label: str) -> str:
    article = "an" if label[0] in "aeiou" else "a"
    return f"Mentions {cue}, which is {article} {label} matter."


def _fields_reason(order_id: str | None, amount: str | None, currency: str | None) -> str:
    return (f"Order {order_id or 'not found'}, amount {amount or 'not found'}, "
            f"currency {currency or 'not found'}.")


def _tool_reason(name: str, order_id: str, amount: str | None) -> str:
    if name == "none":
        return "Nothing to look up; answer directly."
    if name == "issue_refund":
        return f"Customer wants {amount} back for order {order_id}."
    return f"Needs the current status of order {order_id}."


# --------------------------------------------------------------------------------------
# Items, one builder per unit
# --------------------------------------------------------------------------------------
def _routing_item(rnd: Rnd, n: int, difficulty: str, real: bool) -> Item:
    """Label item; hard items state a second label's cue first, the true one last."""
    label = LABELS[int(rnd() * 4)]
    table = ROUTING_REAL_CUES if real and rnd() < 0.5 else ROUTING_CUES
    sentence, cue = _pick(rnd, table[label])
    text, distractor = sentence.format(n=n), None
    if difficulty == "hard":
        other = _pick_other(rnd, LABELS, label)
        d_sentence, d_cue = _pick(rnd, ROUTING_CUES[other])
        text = d_sentence.format(n=n) + _pick(rnd, PIVOTS) + text
        distractor = (other, d_cue)
    elif difficulty == "medium":  # neutral filler that carries no label signal
        filler = _pick(rnd, FILLERS)
        text = f"{filler} {text}" if rnd() < 0.5 else f"{text} {filler}"
    if rnd() < 0.3:
        text += f" {_pick(rnd, NAMES)}"
    message = _realify(rnd, text) if real else text
    return Item("intent_routing", _prompt("intent_routing", message), label, difficulty,
                LABEL_DOMAIN[label], False, _ROUTING_RIGHT[label, cue],
                {"label": label, "cue": cue, "distractor": distractor})


def _fields_item(rnd: Rnd, n: int, difficulty: str, real: bool) -> Item:
    """Extraction item; harder items use rarer id/amount forms and a distracting amount."""
    cur = CURRENCIES[int(rnd() * 4)]
    cents = 100 + int(rnd() * 49_900)
    if difficulty == "medium" and rnd() < 0.4:
        cents -= cents % 100  # whole amounts exercise the "7 -> 7.00" normalization
    if difficulty == "easy":
        oid = f"#{n}" if rnd() < 0.5 else str(n)
    else:
        oid = f"no. {n}" if difficulty == "medium" else f"ORD-{n}"
    amt = _amount_surface(rnd, cents, cur, difficulty)
    text = _pick(rnd, ORDER_TEMPLATES[real and rnd() < 0.5]).format(oid=oid, amt=amt)
    ship = None
    if difficulty == "hard":
        ship = _money(300 + int(rnd() * 1200))
        text += f" It had {2 + int(rnd() * 4)} items, shipping of {ship} included."
    message = _realify(rnd, text) if real else text
    order_id, amount = str(n), _money(cents)
    reference = _fields_json(order_id, amount, cur)
    right = Answer(reference, None, None, _fields_reason(order_id, amount, cur), False, None)
    return Item("order_fields", _prompt("order_fields", message), reference, difficulty,
                "payments", False, right,
                {"order_id": order_id, "amount": amount, "currency": cur, "distractor": ship})


_TOOL_DRAW = _Weighted(TOOL_MIX)
TOOL_DOMAIN = {"lookup_order": "logistics", "issue_refund": "payments", "none": "general"}


def _tool_item(rnd: Rnd, n: int, difficulty: str, real: bool) -> Item:
    """Call / no-call item; hard items mention the other decision's words as a distractor."""
    decision = _TOOL_DRAW.draw(rnd)
    style = "real" if real and rnd() < 0.5 else ("hard" if difficulty == "hard" else "plain")
    template, cue = _pick(rnd, TOOL_TEMPLATES[decision][style])
    cents = 500 + int(rnd() * 30_000)
    surface = _amount_surface(rnd, cents, "USD" if rnd() < 0.6 else "EUR", "easy")
    text = template.format(n=n, amt=surface)
    if difficulty == "medium":
        text += f" {_pick(rnd, FILLERS)}"
    message = _realify(rnd, text) if real else text
    order_id, amount = str(n), _money(cents)
    ref_amount = amount if decision == "issue_refund" else None
    if decision == "none":
        reference, call = "null", None
    else:
        reference = _tool_json(decision, order_id, ref_amount)
        call = (decision, order_id, ref_amount)
    right = Answer(reference, None, None, _tool_reason(decision, order_id, ref_amount), False,
                   call)
    return Item("tool_decision", _prompt("tool_decision", message), reference, difficulty,
                TOOL_DOMAIN[decision], False, right,
                {"decision": decision, "order_id": order_id, "amount": amount, "cue": cue})


def _escalation_item(rnd: Rnd, n: int, difficulty: str, real: bool) -> Item:
    """Must-escalate (cue) or answerable (canned reply) item; hard ones hide or fake the cue."""
    style = "real" if real and rnd() < 0.5 else ("hard" if difficulty == "hard" else "plain")
    must, bait = rnd() < MUST_ESCALATE_RATE, None
    if must:
        key = _pick(rnd, _CUE_KEYS)
        spec, right = ESCALATION_CUES[key], _ESCALATE_RIGHT[key]
        text, topic, cue = _pick(rnd, spec[style]), spec["topic"], spec["cue"]
    else:
        topic = _pick(rnd, _TOPIC_KEYS)
        spec, cue = ANSWER_TOPICS[topic], None
        if style == "hard":
            text, bait = _pick(rnd, spec["hard"])
        else:
            text = _pick(rnd, spec[style])
        right = _REPLY_RIGHT[topic]
    text = text.format(n=n)
    if difficulty == "medium":
        text += f" {_pick(rnd, FILLERS)}"
    message = _realify(rnd, text) if real else text
    return Item("escalation", _prompt("escalation", message), right.final, difficulty,
                spec["domain"], must, right, {"cue": cue, "topic": topic, "bait": bait})


# Right answers that contain no number are the same for every item: build each once.
_ROUTING_RIGHT: dict[tuple[str, str], Answer] = {
    (label, cue): Answer(label, None, None, _route_reason(cue, label), False, None)
    for table in (ROUTING_CUES, ROUTING_REAL_CUES) for label, cues in table.items()
    for _, cue in cues}
_ESCALATE_RIGHT: dict[str, Answer] = {
    key: Answer(REFUSAL_MARKER, None, None,
                f"Mentions {spec['cue']}; a human agent must handle it.", False, None)
    for key, spec in ESCALATION_CUES.items()}
_REPLY_RIGHT: dict[str, Answer] = {
    topic: Answer(spec["reply"], None, None,
                  f"Routine {spec['phrase']}; the standard reply covers it.", False, None)
    for topic, spec in ANSWER_TOPICS.items()}
_CUE_KEYS = tuple(ESCALATION_CUES)
_TOPIC_KEYS = tuple(ANSWER_TOPICS)
ITEM_BUILDERS: dict[str, Callable[[Rnd, int, str, bool], Item]] = {
    "intent_routing": _routing_item, "order_fields": _fields_item,
    "tool_decision": _tool_item, "escalation": _escalation_item,
}


# --------------------------------------------------------------------------------------
# Teachers: decide right/wrong, then render a unit-specific answer or error
# --------------------------------------------------------------------------------------
def p_correct(teacher: str, unit: str, must: bool, difficulty: str, real: bool) -> float:
    """Probability that ``teacher`` answers an item correctly (rates 0 and 1 stay exact).

    ``must`` only matters for escalation: recall on must-escalate items, 1 - over-refusal
    on answerable ones.
    """
    if unit == "escalation":
        base = ESCALATION_RECALL[teacher] if must else 1.0 - OVER_REFUSAL[teacher]
    else:
        base = TEACHER_ACCURACY[teacher][unit]
    if base in (0.0, 1.0):  # structural behaviour ("never escalates") is not blurred
        return base
    p = base + DIFFICULTY_SHIFT[difficulty] + (REAL_SHIFT if real else 0.0)
    return min(0.99, max(0.01, p))


# Cases are few (4 units * 2 * 3 difficulties * 2 sources): one lookup per record gives
# every teacher's rate, instead of recomputing shifts and clipping per candidate.
_P_BY_CASE: dict[tuple[str, bool, str, bool], dict[str, float]] = {
    (u, m, d, r): {t: p_correct(t, u, m, d, r) for t in TEACHERS}
    for u, m, d, r in itertools.product(UNITS, (False, True), tuple(DIFFICULTY_SHIFT),
                                        (False, True))}


def _wrong_routing(rnd: Rnd, teacher: str, item: Item) -> Answer:
    """Wrong label; on hard items usually the label of the cue stated first."""
    f = item.facts
    label, cue = f["label"], f["cue"]
    if f["distractor"] is not None and rnd() < 0.7:
        wrong, said = f["distractor"]  # falls for the cue that was stated first
    else:
        wrong, said = _pick_other(rnd, LABELS, label), cue
    return Answer(wrong, "wrong_label", f"{cue} is {label}, not {wrong}",
                  _route_reason(said, wrong), False, None)


FIELD_ERRORS: dict[str, tuple[str, ...]] = {  # teacher -> mutations it tends to make
    "teacher_a": ("distractor_amount", "prefixed_id", "wrong_currency"),
    "teacher_b": ("drop_currency", "drop_currency", "drop_amount", "symbol_currency",
                  "mangled_amount"),
    "teacher_c": ("drop_currency", "drop_amount", "symbol_currency", "mangled_amount",
                  "distractor_amount", "prefixed_id", "wrong_currency"),
}


def _wrong_fields(rnd: Rnd, teacher: str, item: Item) -> Answer:
    """One field dropped or wrong, in the way this teacher tends to fail."""
    f = item.facts
    oid, amount, cur = f["order_id"], f["amount"], f["currency"]
    m = _pick(rnd, FIELD_ERRORS[teacher])
    if m == "distractor_amount" and f["distractor"] is None:
        m = "mangled_amount"  # no second amount in the message to confuse
    if m == "drop_currency":
        cur, note = None, "currency is missing"
    elif m == "drop_amount":
        amount, note = None, "amount is missing"
    elif m == "symbol_currency":
        cur, note = CURRENCY_SYMBOL[cur], f"currency must be the ISO code {cur}"
    elif m == "wrong_currency":
        cur = _pick_other(rnd, CURRENCIES, cur)
        note = f"currency is {f['currency']}, not {cur}"
    elif m == "distractor_amount":
        amount, note = f["distractor"], "took the shipping fee, not the order total"
    elif m == "mangled_amount":
        amount = amount.replace(".", "") if rnd() < 0.5 else amount.replace(".", ",")
        note = f"amount must be {f['amount']} with a dot and two decimals"
    else:  # prefixed_id
        oid, note = f"ORD-{oid}", "order_id is the digits only"
    kind = "missing_field" if m.startswith("drop") else "wrong_value"
    return Answer(_fields_json(oid, amount, cur), kind, note, _fields_reason(oid, amount, cur),
                  True, None)


def _trajectory(rnd: Rnd, style: TeacherStyle, name: str, order_id: str,
                amount: str | None) -> list[dict[str, Any]]:
    """Tool steps behind a call; teacher_a checks the order before refunding, c skips results."""
    blind = rnd() < style.observation_skip_rate
    steps: list[dict[str, Any]] = []
    if name == "lookup_order" or style.lookup_before_refund:
        obs = None if blind else f"order {order_id}: {_pick(rnd, LOOKUP_STATUSES)}"
        steps.append({"tool": "lookup_order", "arguments": {"order_id": order_id},
                      "observation": obs})
    if name == "issue_refund":
        obs = None if blind else f"refund of {amount} queued for order {order_id}"
        steps.append({"tool": "issue_refund",
                      "arguments": {"order_id": order_id, "amount": amount},
                      "observation": obs})
    return steps


def _slip_digits(number: str) -> str:
    """A realistic copying slip: swap the last two digits, or bump the last one if equal."""
    if number[-1] != number[-2]:
        return number[:-2] + number[-1] + number[-2]
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def _wrong_tool(rnd: Rnd, teacher: str, item: Item) -> Answer:
    """Call-vs-no-call error, wrong tool (refund -> lookup) or a slipped order_id."""
    f = item.facts
    ref, oid = f["decision"], f["order_id"]
    if ref == "none":
        name, kind, note = "lookup_order", "unneeded_call", f"customer {f['cue']}; no tool"
    else:
        kind = ("missed_call", "wrong_argument", "wrong_tool")[
            int(rnd() * (3 if ref == "issue_refund" else 2))]
        name = ref
        if kind == "missed_call":
            name, note = "none", f"customer {f['cue']}; {ref} is needed"
        elif kind == "wrong_tool":
            name, note = "lookup_order", "customer asked for a refund, not a status check"
        else:
            note, oid = f"order_id must be {oid}", _slip_digits(oid)
    if name == "none":
        return Answer("null", kind, note, _tool_reason(name, oid, None), False, None)
    amount = f["amount"] if name == "issue_refund" else None
    return Answer(_tool_json(name, oid, amount), kind, note, _tool_reason(name, oid, amount),
                  kind == "wrong_argument", (name, oid, amount))


def _wrong_escalation(rnd: Rnd, teacher: str, item: Item) -> Answer:
    """Missed escalation (a canned reply) or over-refusal (ESCALATE on a routine item)."""
    f = item.facts
    topic = ANSWER_TOPICS[f["topic"]]
    if item.must:  # answers the surface request and misses the risk
        return Answer(topic["reply"], "missed_escalation", f"{f['cue']} must go to a human",
                      f"Routine {topic['phrase']}; a standard reply covers it.", False, None)
    why = f"Mentions {f['bait']}" if f["bait"] else "Customer sounds upset"
    return Answer(REFUSAL_MARKER, "over_refusal", f"routine {topic['phrase']}; answer it",
                  f"{why}, which could be risky; escalate to be safe.", False, None)


WRONG_ANSWERS: dict[str, Callable[[Rnd, str, Item], Answer]] = {
    "intent_routing": _wrong_routing, "order_fields": _wrong_fields,
    "tool_decision": _wrong_tool, "escalation": _wrong_escalation,
}


# (candidate dict, the Answer behind it, whether it is truly right): what judge and pools see.
Judged = tuple[dict[str, Any], Answer, bool]


def _candidate(rnd: Rnd, teacher: str, item: Item, p: float, prompt_tokens: int) -> Judged:
    """One teacher's candidate dict (contract key order), its Answer and true correctness.

    ``p`` is the teacher's probability of being right on this item (see ``p_correct``).
    """
    style = TEACHER_STYLE[teacher]
    # Correctness and stated confidence (int(x + 0.5) / 100 == round(x / 100, 2), faster).
    if style.confidence == "calibrated":  # c first, then right ~ Bernoulli(c): calibrated
        spread = max(0.0, min(0.15, 0.99 - p, p - 0.01))
        c = p + spread * (2.0 * rnd() - 1.0)
        correct, confidence = rnd() < c, int(c * 100 + 0.5) / 100
    elif style.confidence == "overconfident":  # 0.90-0.99 whatever happens
        correct, confidence = rnd() < p, int(90.5 + 9 * rnd()) / 100
    else:  # noisy: 0.30-0.95, unrelated to correctness
        correct, confidence = rnd() < p, int(30.5 + 65 * rnd()) / 100
    ans = item.right if correct else WRONG_ANSWERS[item.unit](rnd, teacher, item)
    rationale = ans.rationale if rnd() < style.rationale_rate else None
    limits = None
    if rnd() < style.limits_rate:  # routing limits follow the label the teacher chose
        options = LIMITS[ans.final if item.unit == "intent_routing" else item.unit]
        limits = options[int(rnd() * len(options))]
    trajectory = None if ans.call is None else _trajectory(rnd, style, *ans.call)
    # Completion tokens: visible text at ~4 characters a token, plus the teacher's unseen
    # reasoning overhead (its verbosity); len() keeps this cheap in the hot loop.
    lo, hi = style.extra_tokens
    chars = len(ans.final) + (len(rationale) if rationale else 0) + (len(limits) if limits else 0)
    completion = (chars + 3) // 4 + lo + int(rnd() * (hi - lo + 1))
    cand = {"teacher": teacher, "final": ans.final, "rationale": rationale, "limits": limits,
            "confidence": confidence, "trajectory": trajectory,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion}}
    return cand, ans, correct


# --------------------------------------------------------------------------------------
# Judge and pools
# --------------------------------------------------------------------------------------
WINNER_TAG = {"intent_routing": "correct route", "order_fields": "all fields extracted",
              "tool_decision": "right tool decision"}


def _judge(rnd: Rnd, item: Item, results: Sequence[Judged]) -> dict[str, Any]:
    """Judge object: scores, winner (ties broken at random; null when all <= 2), tags."""
    scores: dict[str, int] = {}
    best, tied = 0, []
    for cand, ans, correct in results:
        # Score from true correctness, with the configured error rates.
        if correct:  # 5 or 4; a judge error gives 2
            s = 2 if rnd() < JUDGE_ERROR_RATE else (5 if rnd() < 0.6 else 4)
        elif rnd() < (JUDGE_ESCALATION_BLIND_SPOT if item.must and ans.kind == "missed_escalation"
                      else JUDGE_ERROR_RATE):  # a judge error (or the blind spot) gives 4-5
            s = 5 if rnd() < 0.5 else 4
        elif ans.partial and rnd() < JUDGE_PARTIAL_CREDIT:  # one-field slips may get 3
            s = 3
        else:
            s = 2 if rnd() < 0.5 else 1
        scores[cand["teacher"]] = s
        if s > best:
            best, tied = s, [cand]
        elif s == best:
            tied.append(cand)
    if best <= 2:
        return {"judge": JUDGE_ID, "winner": None, "scores": scores,
                "reason_tags": ["no acceptable candidate"]}
    win = tied[int(rnd() * len(tied))] if len(tied) > 1 else tied[0]
    winner = win["teacher"]
    if item.unit == "escalation":
        tags = ["escalates risk" if win["final"] == REFUSAL_MARKER else "polite reply"]
    else:
        tags = [WINNER_TAG[item.unit]]
    if win["rationale"]:
        tags.append("cites evidence")
    if win["limits"]:
        tags.append("states its boundary")
    return {"judge": JUDGE_ID, "winner": winner, "scores": scores, "reason_tags": tags}


def _pools(rnd: Rnd, item: Item, has_reference: bool, judge: dict[str, Any],
           results: Sequence[Judged]) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Pool per teacher and failure entries (reference decides; else the judge does)."""
    pools: dict[str, str] = {}
    failure: dict[str, Any] = {}
    scores, winner = judge["scores"], judge["winner"]
    for cand, ans, correct in results:
        t = cand["teacher"]
        if has_reference:
            if correct:
                pool = "hard" if item.difficulty == "hard" and rnd() < HARD_POOL_RATE else "train"
            else:
                pool = "failure"
        else:  # without gold, trust the judge: winner / 4-5 train, 3 review, 1-2 failure
            s = scores[t]
            pool = "train" if t == winner or s >= 4 else ("failure" if s <= 2 else "review")
        u = rnd()
        if u < DISCARD_RATE:
            pool = "discard"
        elif u < DISCARD_RATE + REVIEW_RATE:
            pool = "review"
        pools[t] = pool
        if pool == "failure":
            if has_reference:
                failure[t] = {"kind": ans.kind, "correction": item.reference, "note": ans.note}
            else:
                failure[t] = {"kind": "judge_rejected", "correction": None,
                              "note": f"judge scored {scores[t]}/5; no reference to check"}
    return pools, failure or None


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------
def _check_n(n: int) -> None:
    if not 0 <= n <= MAX_RECORDS:
        raise ValueError(f"n must be in [0, {MAX_RECORDS}], got {n}")


_DIFFICULTY_DRAW = _Weighted(DIFFICULTY_MIX)


def iter_train_records(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """Yield ``n`` training-side records (contract key order), ids ``sd-0000001`` ..."""
    _check_n(n)
    rng = random.Random(_stream_seed(seed, "train"))
    rnd = rng.random
    offset = rng.randrange(ORDER_SPACE)
    block = UNITS
    for i in range(n):
        if i % 4 == 0:  # units in shuffled blocks of four: equal shares, no visible cycle
            block = _UNIT_BLOCKS[int(rnd() * 24)]
        unit = block[i % 4]
        number = ORDER_BASE + 7 * ((ORDER_MULT * i + offset) % ORDER_SPACE) + 1 + int(rnd() * 6)
        item = ITEM_BUILDERS[unit](rnd, number, _DIFFICULTY_DRAW.draw(rnd), False)
        prompt_tokens = _prompt_tokens(item.prompt)
        ps = _P_BY_CASE[unit, item.must, item.difficulty, False]
        order = _TEACHER_ORDERS[int(rnd() * 6)]  # candidate order carries no signal
        results = [_candidate(rnd, t, item, ps[t], prompt_tokens) for t in order]
        has_reference = rnd() < REFERENCE_RATE
        judge = _judge(rnd, item, results)
        pools, failure = _pools(rnd, item, has_reference, judge, results)
        yield {"id": f"sd-{i + 1:07d}", "unit": unit, "prompt": item.prompt,
               "reference": item.reference if has_reference else None,
               "candidates": [r[0] for r in results], "judge": judge, "pools": pools,
               "failure": failure,
               "tags": {"difficulty": item.difficulty, "source": "synthetic",
                        "domain": item.domain},
               "round": 1}


def iter_eval_records(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """Yield ``n`` eval records (``ev-000001`` ...): gold reference plus all three teachers."""
    _check_n(n)
    rng = random.Random(_stream_seed(seed, "eval"))
    rnd = rng.random
    offset = rng.randrange(ORDER_SPACE)
    block = UNITS
    for i in range(n):
        if i % 4 == 0:
            block = _UNIT_BLOCKS[int(rnd() * 24)]
        unit = block[i % 4]
        number = ORDER_BASE + 7 * ((ORDER_MULT * i + offset) % ORDER_SPACE)  # multiple of 7
        real = rnd() < EVAL_REAL_RATE
        item = ITEM_BUILDERS[unit](rnd, number, _DIFFICULTY_DRAW.draw(rnd), real)
        prompt_tokens = _prompt_tokens(item.prompt)
        ps = _P_BY_CASE[unit, item.must, item.difficulty, real]
        cands = [_candidate(rnd, t, item, ps[t], prompt_tokens)[0] for t in TEACHERS]
        yield {"id": f"ev-{i + 1:06d}", "unit": unit, "prompt": item.prompt,
               "reference": item.reference, "candidates": cands,
               "tags": {"difficulty": item.difficulty, "source": "real" if real else "synthetic",
                        "domain": item.domain}}


def _write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSON Lines via a temp file in the same folder + os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    encode = _JSON.encode
    try:  # newline="\n": identical bytes on every platform
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
            for rec in records:
                fh.write(encode(rec))
                fh.write("\n")
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the data files are not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def generate(out_dir: Path, seed: int = 0, n_train: int = 4000,
             n_eval: int = 800) -> dict[str, Path]:
    """Write ``samples.jsonl`` and ``eval.jsonl`` into ``out_dir``; return their paths."""
    _check_n(n_train)
    _check_n(n_eval)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"samples": out_dir / "samples.jsonl", "eval": out_dir / "eval.jsonl"}
    _write_jsonl_atomic(paths["samples"], iter_train_records(seed, n_train))
    _write_jsonl_atomic(paths["eval"], iter_eval_records(seed, n_eval))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Write the support-desk demo data.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-eval", type=int, default=800)
    args = parser.parse_args(argv)
    try:
        paths = generate(args.out, args.seed, args.n_train, args.n_eval)
    except ValueError as exc:
        parser.error(str(exc))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
