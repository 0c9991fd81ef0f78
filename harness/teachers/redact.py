"""Nothing secret in the data: provider error text is redacted before it reaches a failure note,
the call cache or the terminal.

Providers echo what they were sent and who sent it: OpenAI's 401 says "Incorrect API key
provided: sk-proj-****abcd", its 429 names the organisation ("org-…"), proxies repeat URLs with
credentials in them. :func:`redact` replaces each such span with a fixed marker, so the text
still says what went wrong without saying whose key it was.
"""

from __future__ import annotations

import re

#: What replaces a secret.
MARK = "[redacted]"

#: (pattern, replacement): a replacement keeps group 1 (the name of the secret) and drops the rest.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # credentials inside a URL: scheme://user:password@host
    (re.compile(r"(://)[^\s/@:]+:[^\s/@]+@"), rf"\1{MARK}@"),
    # Authorization headers and key=value / "key": "value" pairs that name a secret
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), rf"\1{MARK}"),
    (re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|token|secret|password)[\"']?\s*[:=]\s*"
                r"[\"']?)[^\s\"',&}]+"), rf"\1{MARK}"),
    # organisation, project and user ids (OpenAI: org-…, proj_…, user-…)
    (re.compile(r"\b(?:org|proj|user)[-_][A-Za-z0-9]{6,}\b"), MARK),
    # known key prefixes (OpenAI, Anthropic, Hugging Face, Groq, xAI, Google, GitHub), including
    # the masked forms providers echo back (sk-proj-****abcd)
    (re.compile(r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_*\-]{6,}"), MARK),
    (re.compile(r"\b(?:hf|gsk|ghp|github_pat)_[A-Za-z0-9_*]{8,}"), MARK),
    (re.compile(r"\bxai-[A-Za-z0-9_*\-]{8,}"), MARK),
    (re.compile(r"\bAIza[A-Za-z0-9_\-]{20,}"), MARK),
    # anything else key-like: a long unbroken run of letters and digits with both cases and a digit
    (re.compile(r"\b(?=[A-Za-z0-9_\-]*[a-z])(?=[A-Za-z0-9_\-]*[A-Z])(?=[A-Za-z0-9_\-]*\d)"
                r"[A-Za-z0-9_\-]{32,}\b"), MARK),
)


def redact(text: str) -> str:
    """``text`` with every credential, key-like string and organisation id replaced by
    :data:`MARK`; the rest (status, reason, model name) kept."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
