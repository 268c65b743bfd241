"""The TOML string writer's fast path (no escapes needed) agrees with its escaping path."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanctum.converter.gramine import _toml_string
from sanctum.converter.manifest_errors import BuildOptionError

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(_TEXT)
def test_every_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"k = {_toml_string(text)}")["k"] == text


@given(st.text(st.characters(min_codepoint=0x20, exclude_characters='"\\\x7f'), max_size=40))
def test_plain_strings_are_only_quoted(text: str) -> None:
    assert _toml_string(text) == f'"{text}"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/usr/lib/a b.so", '"/usr/lib/a b.so"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\u0007"'),
        ("del\x7f", '"del\\u007F"'),
    ],
)
def test_escapes(text: str, expected: str) -> None:
    assert _toml_string(text) == expected


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(BuildOptionError) as caught:
        _toml_string(text)
    assert caught.value.code == "build.option_invalid"
