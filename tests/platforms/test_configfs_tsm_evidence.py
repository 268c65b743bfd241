from __future__ import annotations

import errno
from pathlib import Path

import pytest
from fake_devices import SGX_QUOTE, TDX_QUOTE, TDX_REPORT_DATA_AT, FakeTsmKernel

from sanctum.errors import UsageError
from sanctum.platforms.configfs_tsm import ConfigfsTsmEvidenceSource
from sanctum.platforms.errors import PlatformConfigurationError, PlatformUnavailableError
from sanctum.platforms.evidence import EvidenceSource

REPORT_DATA = bytes(range(100, 164))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "tsm" / "report"
    path.mkdir(parents=True)
    return path


def test_quote_follows_the_kernel_contract(root: Path) -> None:
    kernel = FakeTsmKernel()
    source = ConfigfsTsmEvidenceSource(root, io=kernel)
    quote = source.quote(REPORT_DATA)
    assert quote[TDX_REPORT_DATA_AT : TDX_REPORT_DATA_AT + 64] == REPORT_DATA
    assert quote[:TDX_REPORT_DATA_AT] == TDX_QUOTE[:TDX_REPORT_DATA_AT]
    # One uniquely named entry was created and removed again.
    assert len(kernel.created) == 1
    assert kernel.removed == kernel.created
    assert kernel.created[0].name.startswith("sanctum-")
    assert list(root.iterdir()) == []


def test_each_quote_uses_a_fresh_entry(root: Path) -> None:
    kernel = FakeTsmKernel()
    source = ConfigfsTsmEvidenceSource(root, io=kernel)
    source.quote(b"a")
    source.quote(b"b")
    assert len(set(kernel.created)) == 2


def test_info_probes_the_provider(root: Path) -> None:
    kernel = FakeTsmKernel()
    source = ConfigfsTsmEvidenceSource(root, io=kernel)
    assert isinstance(source, EvidenceSource)
    info = source.info
    assert (info.name, info.tee, info.simulated) == ("configfs-tsm", "tdx", False)
    assert info.details["provider"] == "tdx_guest"
    assert kernel.removed == kernel.created


def test_sev_snp_report_is_returned_with_its_report_data(root: Path) -> None:
    report = bytes(0x4A0)
    kernel = FakeTsmKernel(provider="sev_guest", recorded_quote=report, report_data_at=0x50)
    source = ConfigfsTsmEvidenceSource(root, io=kernel)
    blob = source.quote(REPORT_DATA)
    assert blob[0x50:0x90] == REPORT_DATA
    assert source.info.tee == "sev-snp"


def test_short_sev_snp_report_is_refused(root: Path) -> None:
    kernel = FakeTsmKernel(
        provider="sev_guest",
        recorded_quote=bytes(0x4A0),
        report_data_at=0x50,
        truncate_outblob_to=0x200,
    )
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.short_read"


def test_missing_configfs_is_unavailable(tmp_path: Path) -> None:
    source = ConfigfsTsmEvidenceSource(tmp_path / "absent", io=FakeTsmKernel())
    with pytest.raises(PlatformUnavailableError) as caught:
        source.quote(REPORT_DATA)
    assert caught.value.code == "platform.unavailable"
    assert "6.7" in (caught.value.hint or "")


def test_unknown_provider_is_refused_and_the_entry_removed(root: Path) -> None:
    kernel = FakeTsmKernel(provider="arm_cca_guest")
    with pytest.raises(PlatformConfigurationError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.provider_unsupported"
    assert caught.value.details == {"provider": "arm_cca_guest"}
    assert kernel.removed == kernel.created
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("writes", [1, 2])
def test_concurrent_writer_is_detected_by_generation(root: Path, writes: int) -> None:
    kernel = FakeTsmKernel(concurrent_writes_during_read=writes)
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    error = caught.value
    assert error.code == "platform.concurrent_writer"
    assert error.retryable is True
    assert error.details == {"before": 0, "after": 1 + writes}
    assert list(root.iterdir()) == []


def test_unreadable_generation_is_refused(root: Path) -> None:
    kernel = FakeTsmKernel(generation_text="busy\n")
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.bad_generation"


def test_short_write_is_refused(root: Path) -> None:
    kernel = FakeTsmKernel(short_write=16)
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.short_write"
    assert kernel.removed == kernel.created


@pytest.mark.parametrize(
    ("length", "code"),
    [(0, "platform.empty_quote"), (47, "platform.short_read"), (700, "platform.short_read")],
)
def test_truncated_outblob_is_refused(root: Path, length: int, code: str) -> None:
    kernel = FakeTsmKernel(truncate_outblob_to=length)
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == code


def test_trailing_padding_after_the_quote_is_kept(root: Path) -> None:
    # Real TDX quotes come zero-padded (dcap.md 1.2); the padding is not a framing error.
    kernel = FakeTsmKernel(recorded_quote=TDX_QUOTE + bytes(100))
    quote = ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert len(quote) == len(TDX_QUOTE) + 100


def test_sgx_quote_from_tdx_provider_is_refused(root: Path) -> None:
    kernel = FakeTsmKernel(recorded_quote=SGX_QUOTE, report_data_at=48 + 320)
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.bad_quote"


def test_report_data_longer_than_64_bytes_is_a_usage_error(root: Path) -> None:
    kernel = FakeTsmKernel()
    with pytest.raises(UsageError):
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(bytes(65))
    assert kernel.created == []


class _FailingOutblob(FakeTsmKernel):
    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            raise OSError(errno.EIO, "Input/output error")
        return super().read(path)


def test_io_error_on_outblob_is_unavailable_and_the_entry_removed(root: Path) -> None:
    kernel = _FailingOutblob()
    with pytest.raises(PlatformUnavailableError) as caught:
        ConfigfsTsmEvidenceSource(root, io=kernel).quote(REPORT_DATA)
    assert caught.value.code == "platform.unavailable"
    assert "Input/output error" in caught.value.message
    assert kernel.removed == kernel.created
    assert list(root.iterdir()) == []
