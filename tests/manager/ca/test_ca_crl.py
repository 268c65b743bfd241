from __future__ import annotations

from datetime import timedelta

import pytest
from ca_helpers import (  # noqa: F401 (importing these registers the fixtures)
    NOW,
    account_ca_fixture,
)
from cryptography import x509

from sanctum.errors import UsageError
from sanctum.manager.ca import AccountCa, RevokedCertificate, build_crl


def test_crl_contents(account_ca: AccountCa) -> None:
    crl = build_crl(
        account_ca,
        [
            RevokedCertificate(10, NOW - timedelta(hours=1), x509.ReasonFlags.superseded),
            RevokedCertificate(11, NOW - timedelta(hours=1), x509.ReasonFlags.unspecified),
            (12, NOW, None),
        ],
        now=NOW,
        next_update=NOW + timedelta(hours=6),
    )
    assert crl.issuer == account_ca.issuing_certificate.subject
    assert crl.is_signature_valid(account_ca.issuing_key.public_key())
    assert not crl.is_signature_valid(account_ca.root_key.public_key())
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(hours=6)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == int(NOW.timestamp())
    entry = crl.get_revoked_certificate_by_serial_number(10)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded
    for serial in (11, 12):
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        assert len(entry.extensions) == 0  # unspecified is omitted, as RFC 5280 asks
    assert crl.get_revoked_certificate_by_serial_number(13) is None


@pytest.mark.parametrize(
    ("revoked", "kwargs"),
    [
        ([(1, NOW, None), (1, NOW, None)], {}),
        ([], {"next_update": NOW}),
        ([], {"now": NOW.replace(tzinfo=None)}),
        ([(1, NOW.replace(tzinfo=None), None)], {}),
    ],
)
def test_bad_crl_parameters(
    account_ca: AccountCa, revoked: list[tuple[int, object, None]], kwargs: dict[str, object]
) -> None:
    arguments: dict[str, object] = {"now": NOW, "next_update": NOW + timedelta(hours=1), **kwargs}
    with pytest.raises(UsageError) as caught:
        build_crl(account_ca, revoked, **arguments)  # type: ignore[arg-type]
    assert caught.value.code == "ca.parameters_invalid"
