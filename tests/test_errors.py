import pytest

from sanctum.errors import (
    AuthenticationError,
    ConflictError,
    EvidenceError,
    NotFoundError,
    PermissionDeniedError,
    SanctumError,
    UnavailableError,
    UsageError,
)


@pytest.mark.parametrize(
    ("cls", "parent", "retryable"),
    [
        (EvidenceError, SanctumError, False),
        (UnavailableError, SanctumError, True),
        (UsageError, SanctumError, False),
        (NotFoundError, UsageError, False),
        (ConflictError, UsageError, False),
        (AuthenticationError, UsageError, False),
        (PermissionDeniedError, UsageError, False),
    ],
)
def test_tree_is_split_by_fault(cls, parent, retryable):
    error = cls("something happened")
    assert isinstance(error, parent)
    assert error.retryable is retryable
    assert "." in error.code


def test_code_message_hint_and_dict():
    error = EvidenceError(
        "the quote signature does not verify",
        code="quote.signature_invalid",
        hint="was the quote modified?",
        details={"offset": 48},
    )
    assert str(error) == "quote.signature_invalid: the quote signature does not verify"
    assert error.to_dict() == {
        "code": "quote.signature_invalid",
        "message": "the quote signature does not verify",
        "hint": "was the quote modified?",
        "details": {"offset": 48},
    }
    assert "hint: was the quote modified?" in error.diagnostics()


@pytest.mark.parametrize(
    "bad", ["nodot", "Upper.case", "trailing.", ".leading", "a..b", "sp ace.x"]
)
def test_malformed_codes_are_programming_errors(bad):
    with pytest.raises(ValueError, match="dotted code"):
        EvidenceError("x", code=bad)
