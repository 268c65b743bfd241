from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fake_devices import SGX_QUOTE, SGX_REPORT_DATA_AT, TDX_QUOTE, FakeGramine, make_gramine_tree

from sanctum.errors import UnavailableError, UsageError
from sanctum.platforms.errors import PlatformConfigurationError, PlatformUnavailableError
from sanctum.platforms.evidence import EvidenceSource
from sanctum.platforms.gramine import GramineEvidenceSource, read_attestation_type

REPORT_DATA = bytes(range(64))


def test_quote_writes_report_data_and_returns_the_quote(tmp_path: Path) -> None:
    io = FakeGramine()
    source = GramineEvidenceSource(make_gramine_tree(tmp_path), io=io)
    quote = source.quote(REPORT_DATA)
    assert io.writes == [REPORT_DATA]
    assert (tmp_path / "dev/attestation/user_report_data").read_bytes() == REPORT_DATA
    assert quote[SGX_REPORT_DATA_AT : SGX_REPORT_DATA_AT + 64] == REPORT_DATA
    # Everything but the report data is the recorded hardware quote, byte for byte.
    assert quote[:SGX_REPORT_DATA_AT] == SGX_QUOTE[:SGX_REPORT_DATA_AT]
    assert quote[SGX_REPORT_DATA_AT + 64 :] == SGX_QUOTE[SGX_REPORT_DATA_AT + 64 :]


def test_short_report_data_is_zero_padded(tmp_path: Path) -> None:
    io = FakeGramine()
    GramineEvidenceSource(make_gramine_tree(tmp_path), io=io).quote(b"abc")
    assert io.writes == [b"abc" + b"\0" * 61]


def test_source_satisfies_the_protocol(tmp_path: Path) -> None:
    source = GramineEvidenceSource(make_gramine_tree(tmp_path))
    assert isinstance(source, EvidenceSource)
    assert source.info.name == "gramine"
    assert source.info.tee == "sgx"
    assert source.info.simulated is False


def test_real_os_io_against_a_static_recorded_quote_detects_foreign_report_data(
    tmp_path: Path,
) -> None:
    # Without the fake driver the tree serves the recorded quote as is: its report data is not
    # ours, exactly what a concurrent writer in the same enclave would cause.
    root = make_gramine_tree(tmp_path)
    (root / "dev/attestation/quote").write_bytes(SGX_QUOTE)
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(root).quote(REPORT_DATA)
    assert caught.value.code == "platform.report_data_mismatch"


def test_real_os_io_round_trip_when_the_tree_holds_a_matching_quote(tmp_path: Path) -> None:
    root = make_gramine_tree(tmp_path)
    recorded = SGX_QUOTE[SGX_REPORT_DATA_AT : SGX_REPORT_DATA_AT + 64]
    (root / "dev/attestation/quote").write_bytes(SGX_QUOTE)
    assert GramineEvidenceSource(root).quote(recorded) == SGX_QUOTE


def test_missing_device_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(tmp_path).quote(REPORT_DATA)
    assert caught.value.code == "platform.unavailable"
    assert isinstance(caught.value, UnavailableError)
    assert "Gramine" in (caught.value.hint or "")


@pytest.mark.parametrize("kind", ["none", "epid", "", "dcap-beta"])
def test_wrong_attestation_type_is_refused(tmp_path: Path, kind: str) -> None:
    io = FakeGramine()
    source = GramineEvidenceSource(make_gramine_tree(tmp_path, kind), io=io)
    with pytest.raises(PlatformConfigurationError) as caught:
        source.quote(REPORT_DATA)
    assert caught.value.code == "platform.attestation_type_unsupported"
    assert isinstance(caught.value, UsageError)
    assert io.writes == []


def test_attestation_type_is_read_stripped(tmp_path: Path) -> None:
    root = make_gramine_tree(tmp_path, "dcap\n")
    assert read_attestation_type(root) == "dcap"


def test_short_write_is_refused(tmp_path: Path) -> None:
    source = GramineEvidenceSource(make_gramine_tree(tmp_path), io=FakeGramine(short_write=32))
    with pytest.raises(PlatformUnavailableError) as caught:
        source.quote(REPORT_DATA)
    assert caught.value.code == "platform.short_write"
    assert caught.value.details == {"written": 32, "expected": 64}


@pytest.mark.parametrize(
    ("length", "code"),
    [
        (0, "platform.empty_quote"),
        (10, "platform.short_read"),
        (432, "platform.short_read"),
        (1000, "platform.short_read"),
        (len(SGX_QUOTE) - 1, "platform.short_read"),
    ],
)
def test_truncated_quote_is_refused(tmp_path: Path, length: int, code: str) -> None:
    io = FakeGramine(truncate_quote_to=length)
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(make_gramine_tree(tmp_path), io=io).quote(REPORT_DATA)
    assert caught.value.code == code


def test_non_quote_bytes_are_refused(tmp_path: Path) -> None:
    io = FakeGramine(recorded_quote=b"\xff" * 2000, patch=False)
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(make_gramine_tree(tmp_path), io=io).quote(REPORT_DATA)
    assert caught.value.code == "platform.bad_quote"


def test_tdx_quote_from_gramine_is_refused(tmp_path: Path) -> None:
    io = FakeGramine(recorded_quote=TDX_QUOTE, patch=False)
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(make_gramine_tree(tmp_path), io=io).quote(REPORT_DATA)
    assert caught.value.code == "platform.bad_quote"


def test_missing_quote_file_is_unavailable(tmp_path: Path) -> None:
    root = make_gramine_tree(tmp_path)
    (root / "dev/attestation/quote").unlink()
    with pytest.raises(PlatformUnavailableError) as caught:
        GramineEvidenceSource(root).quote(REPORT_DATA)
    assert caught.value.code == "platform.unavailable"


def test_report_data_longer_than_64_bytes_is_a_usage_error(tmp_path: Path) -> None:
    io = FakeGramine()
    with pytest.raises(UsageError) as caught:
        GramineEvidenceSource(make_gramine_tree(tmp_path), io=io).quote(b"x" * 65)
    assert caught.value.code == "platform.report_data_too_long"
    assert io.writes == []


def test_concurrent_quotes_in_one_process_each_get_their_own_report_data(tmp_path: Path) -> None:
    # /dev/attestation is per process: without serialisation, one thread's write to
    # user_report_data lands between another thread's write and read.
    source = GramineEvidenceSource(make_gramine_tree(tmp_path), io=FakeGramine())
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        for round_ in range(25):
            report_data = bytes([index, round_]) * 32
            try:
                quote = source.quote(report_data)
            except PlatformUnavailableError as error:  # pragma: no cover (a race)
                failures.append(error)
                return
            if quote[SGX_REPORT_DATA_AT : SGX_REPORT_DATA_AT + 64] != report_data:
                failures.append(AssertionError(f"thread {index} got another thread's quote"))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
