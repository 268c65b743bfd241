"""The per-account certificate authority of the Enclave Manager (pure: no database, no clock).

- :mod:`~sanctum.manager.ca.authority`: create an account's root and issuing CA, and convert it to
  and from its storage form through caller-supplied key wrap/unwrap hooks.
- :mod:`~sanctum.manager.ca.issuance`: issue workload certificates (with the attestation
  extension) and plain server certificates.
- :mod:`~sanctum.manager.ca.extension`: the attestation extension's OID, DER encoding and decoder.
- :mod:`~sanctum.manager.ca.crl`: CRLs signed by the issuing CA.
"""

from sanctum.manager.ca.authority import (
    CLOCK_SKEW,
    AccountCa,
    StoredAccountCa,
    create_account_ca,
    load_account_ca,
    store_account_ca,
)
from sanctum.manager.ca.crl import RevokedCertificate, build_crl
from sanctum.manager.ca.errors import CsrError
from sanctum.manager.ca.extension import (
    ATTESTATION_EXTENSION_OID,
    SANCTUM_OID_ARC,
    AttestationClaims,
    decode_attestation_claims,
    encode_attestation_claims,
    read_attestation_extension,
)
from sanctum.manager.ca.issuance import (
    CertificateFacts,
    certificate_facts,
    issue_node_certificate,
    issue_server_certificate,
    issue_workload_certificate,
    load_csr,
    new_serial,
    parse_sans,
)

__all__ = [
    "ATTESTATION_EXTENSION_OID",
    "CLOCK_SKEW",
    "SANCTUM_OID_ARC",
    "AccountCa",
    "AttestationClaims",
    "CertificateFacts",
    "CsrError",
    "RevokedCertificate",
    "StoredAccountCa",
    "build_crl",
    "certificate_facts",
    "create_account_ca",
    "decode_attestation_claims",
    "encode_attestation_claims",
    "issue_node_certificate",
    "issue_server_certificate",
    "issue_workload_certificate",
    "load_account_ca",
    "load_csr",
    "new_serial",
    "parse_sans",
    "read_attestation_extension",
    "store_account_ca",
]
