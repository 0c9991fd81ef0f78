"""Provider error texts lose their secrets and keep their meaning."""

from __future__ import annotations

import pytest

from harness.teachers.redact import MARK, redact


@pytest.mark.parametrize(("text", "secret"), [
    ("Incorrect API key provided: sk-proj-****abcd. See https://platform.openai.com", "sk-proj"),
    ("Rate limit reached for gpt-4o in organization org-AbCdEf123456 on requests per min",
     "org-AbCdEf123456"),
    ("cannot connect to https://bob:hunter2@proxy.example.com:8080/v1", "hunter2"),
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ('api_key=QWERTY12345 and "token": "zzzz9999"', "QWERTY12345"),
    ('api_key=QWERTY12345 and "token": "zzzz9999"', "zzzz9999"),
    ("hf_AbCdEfGhIjKlMnOp refused", "hf_AbCdEfGhIjKlMnOp"),
    ("project proj_AbC123xyz is over quota", "proj_AbC123xyz"),
    ("leaked AbCdEfGhIjKlMnOpQrStUvWxYz0123456789xx here",
     "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789xx"),
])
def test_secrets_are_replaced(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and MARK in out


def test_the_reason_is_kept() -> None:
    text = ("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead. (model gpt-4o-mini-2024-07-18, max_tokens: 40)")
    assert redact(text) == text
