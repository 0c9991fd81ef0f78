"""The strict base's errors keep their words when a registry-dispatched model's errors are put
under its kind (:func:`harness.strict.relocated`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.strict import Strict, relocated


class _Options(Strict):
    layers: int = 1
    name: str = "x"


def test_relocated_errors_keep_type_message_and_gain_the_prefix():
    with pytest.raises(ValidationError) as caught:
        _Options.model_validate({"layers": True, "name": 3, "typo": 1})
    before = caught.value.errors(include_url=False)
    after = relocated(caught.value, ("student", "causal_lm")).errors(include_url=False)
    assert [e["type"] for e in after] == [e["type"] for e in before]
    assert "bool_as_number" in [e["type"] for e in after]  # the strict base's own error type
    assert [e["msg"] for e in after] == [e["msg"] for e in before]
    assert [tuple(e["loc"]) for e in after] == [("student", "causal_lm", *e["loc"])
                                                for e in before]


def test_relocated_says_an_error_in_other_words_where_asked():
    from pydantic_core import InitErrorDetails, PydanticCustomError

    with pytest.raises(ValidationError) as caught:
        _Options.model_validate({"typo": 1})

    def instead(e):
        if e["type"] != "extra_forbidden":
            return None
        return InitErrorDetails(type=PydanticCustomError("mine", "not here"), loc=("k", "typo"),
                                input=e["input"])

    (err,) = relocated(caught.value, ("k",), instead).errors(include_url=False)
    assert (err["type"], err["msg"], tuple(err["loc"])) == ("mine", "not here", ("k", "typo"))
