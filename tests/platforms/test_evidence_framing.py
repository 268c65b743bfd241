from __future__ import annotations

import pytest
from fake_devices import SGX_QUOTE, TDX_QUOTE, VECTORS
from hypothesis import given
from hypothesis import strategies as st

from sanctum.attestation.quote import parse_quote
from sanctum.errors import UsageError
from sanctum.platforms._framing import check_quote_framing, pad_report_data
from sanctum.platforms.errors import PlatformUnavailableError

QUOTES = sorted(VECTORS.glob("*.quote.bin"))


@pytest.mark.parametrize("path", QUOTES, ids=lambda p: p.name)
def test_every_real_quote_is_well_framed(path) -> None:
    data = path.read_bytes()
    framing = check_quote_framing(data, source="test")
    # The device-edge framing agrees with the full parser on where the quote ends and on the
    # report data (some vectors carry padding or test bytes after the quote).
    quote = parse_quote(data)
    assert framing.length == quote.length
    assert framing.report_data == quote.report_data
    assert framing.version == quote.version


@given(cut=st.integers(min_value=0, max_value=len(SGX_QUOTE) - 1))
def test_any_truncated_sgx_quote_is_refused(cut: int) -> None:
    with pytest.raises(PlatformUnavailableError):
        check_quote_framing(SGX_QUOTE[:cut], source="test")


@given(cut=st.integers(min_value=0, max_value=4935))
def test_any_truncated_tdx_quote_is_refused(cut: int) -> None:
    # The TDX vector ends at byte 4936 (followed by 70 bytes of zero padding).
    with pytest.raises(PlatformUnavailableError):
        check_quote_framing(TDX_QUOTE[:cut], source="test")


@given(tail=st.binary(max_size=200))
def test_trailing_bytes_are_tolerated_and_report_data_located(tail: bytes) -> None:
    framing = check_quote_framing(SGX_QUOTE + tail, source="test")
    assert framing.length == len(SGX_QUOTE)
    assert framing.report_data == SGX_QUOTE[368:432]
    assert (framing.version, framing.tee) == (3, "sgx")


def test_tdx_framing() -> None:
    framing = check_quote_framing(TDX_QUOTE, source="test")
    assert (framing.version, framing.tee, framing.length) == (4, "tdx", 4936)
    assert framing.report_data == TDX_QUOTE[568:632]


@given(st.binary(max_size=64))
def test_report_data_is_padded_to_64(data: bytes) -> None:
    padded = pad_report_data(data)
    assert len(padded) == 64
    assert padded.startswith(data)
    assert padded[len(data) :] == bytes(64 - len(data))


def test_report_data_over_64_is_refused() -> None:
    with pytest.raises(UsageError):
        pad_report_data(bytes(65))
