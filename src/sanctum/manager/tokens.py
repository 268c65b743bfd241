"""Attestation result tokens: signed EAT Attestation Results (EAR) as JWTs.

After appraising a workload's evidence the manager hands out a token that any relying party can
check with an ordinary JWT library and the manager's published keys
(``/.well-known/jwks.json``). Its claims follow draft-ietf-rats-ear-04 (JSON serialisation) with
the AR4SI trustworthiness vector; see ``docs/adr/0082-attestation-result-tokens.md``::

    {
      "iss": "<manager id>", "iat": ..., "exp": ..., "jti": "...",
      "eat_profile": "tag:ietf.org,2026:rats/ear#04",
      "ear_verifier_id": {"developer": "https://sanctum.dev", "build": "sanctum 0.1.0"},
      "ear_status": "affirming",
      "eat_nonce": "<challenge nonce, base64url>",
      "submods": {
        "sgx-enclave": {
          "ear_status": "affirming",
          "ear_trustworthiness_vector": {"instance-identity": 2, "hardware": 2, ...},
          "ear_appraisal_policy_ids": ["urn:sanctum:policy:sha256:<hex>"],
          "ear_attester_claims": {"tee": "sgx", "mrenclave": "...", "isvsvn": 3, ...},
          "ear_verifier_claims": {"tcb_status": "UpToDate", "advisory_ids": [...],
                                  "simulated": false, "app": "...", "build": "...", ...}
        }
      }
    }

Signing is JWS compact serialisation with ES256 (ECDSA P-256 / SHA-256, the signature as the
64-byte ``r || s`` of RFC 7518 section 3.4), implemented on ``cryptography`` so the manager needs
no JWT dependency. :class:`SigningKeySet` holds the active key and the retired keys that still
verify tokens issued before a rotation; ``kid`` is the key's RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sanctum import __version__
from sanctum.errors import EvidenceError, UsageError

__all__ = [
    "EAR_PROFILE",
    "EarStatus",
    "SigningKey",
    "SigningKeySet",
    "TokenError",
    "TrustVector",
    "VerificationKey",
    "WorkloadResult",
    "b64url_decode",
    "b64url_encode",
    "ear_claims",
    "issue_ear",
    "keys_from_jwks",
    "tier_of",
    "verify_token",
]

#: The EAR profile this token follows (draft-ietf-rats-ear-04).
EAR_PROFILE: Final = "tag:ietf.org,2026:rats/ear#04"

#: Who built the verifier, for ``ear_verifier_id``.
VERIFIER_DEVELOPER: Final = "https://github.com/sanctum-cc/sanctum"

_ALG: Final = "ES256"
_COORDINATE: Final = 32
_MAX_TOKEN: Final = 64 * 1024

EarStatus = Literal["none", "affirming", "warning", "contraindicated"]

_TIER_RANK: Final[Mapping[EarStatus, int]] = {
    "none": 0,
    "affirming": 1,
    "warning": 2,
    "contraindicated": 3,
}


class TokenError(EvidenceError):
    """A token is malformed, not signed by a known key, or not valid at the given time."""

    default_code = "token.invalid"


def b64url_encode(data: bytes) -> str:
    """Return ``data`` as unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Return the bytes of unpadded base64url ``text``.

    Raises:
        TokenError: ``text`` is not unpadded base64url (code ``token.malformed``).
    """
    if "=" in text or len(text) % 4 == 1:
        raise TokenError("not unpadded base64url", code="token.malformed")
    try:
        data = base64.b64decode(
            text.encode("ascii") + b"=" * (-len(text) % 4), altchars=b"-_", validate=True
        )
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise TokenError("not unpadded base64url", code="token.malformed") from exc
    if b64url_encode(data) != text:
        raise TokenError("non-canonical base64url", code="token.malformed")
    return data


@functools.lru_cache(maxsize=64)
def _header_segment(kid: str) -> str:
    """Return the encoded JWS header of tokens signed by the key ``kid`` (the same every time)."""
    return b64url_encode(_json_bytes({"alg": _ALG, "kid": kid, "typ": "JWT"}))


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    """Return compact, key-sorted JSON bytes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------
# AR4SI trustworthiness vector.
# ---------------------------------------------------------------------------------------------


def tier_of(value: int) -> EarStatus:
    """Return the AR4SI trust tier of one trustworthiness claim value.

    AR4SI: -1..1 carry no claim; 2..31 (and -2..-31) are affirming; 32..95 (and -32..-95)
    warning; 96..127 (and -96..-128) contraindicated.
    """
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude <= 31:
        return "affirming"
    if magnitude <= 95:
        return "warning"
    return "contraindicated"


@dataclass(frozen=True, slots=True)
class TrustVector:
    """An AR4SI trustworthiness vector; ``None`` means "no claim made" (omitted).

    Sanctum uses these values (the AR4SI meanings are in ADR 0082):

    - ``instance_identity``: 2 genuine, recognised instance; 97 not recognised (simulated).
    - ``configuration``: 2 approved; 32 known vulnerabilities accepted by policy (TCB status
      not UpToDate); 96 unacceptable (debug, rejected advisory, status or expired collateral).
    - ``executables``: 2 approved build; 33 unrecognised; 96 revoked build or ISV mismatch.
    - ``hardware``: 2 genuine hardware, TCB up to date; 32 genuine with known vulnerabilities;
      97 not recognised as genuine hardware (the simulated platform).
    - ``runtime_opaque``: 2 memory encrypted and isolated; 32 readable (debug); 97 no memory
      protection at all (simulated).
    """

    instance_identity: int | None = None
    configuration: int | None = None
    executables: int | None = None
    file_system: int | None = None
    hardware: int | None = None
    runtime_opaque: int | None = None
    storage_opaque: int | None = None
    sourced_data: int | None = None

    def __post_init__(self) -> None:
        """Check every value is an AR4SI claim value.

        Raises:
            UsageError: A value is outside -128..127 (code ``token.vector_invalid``).
        """
        for name, value in self.claims():
            if not -128 <= value <= 127:
                raise UsageError(
                    f"trust claim {name}={value} is outside -128..127",
                    code="token.vector_invalid",
                )

    def claims(self) -> list[tuple[str, int]]:
        """Return the claims that are set, with their AR4SI (hyphenated) names."""
        pairs = [
            ("instance-identity", self.instance_identity),
            ("configuration", self.configuration),
            ("executables", self.executables),
            ("file-system", self.file_system),
            ("hardware", self.hardware),
            ("runtime-opaque", self.runtime_opaque),
            ("storage-opaque", self.storage_opaque),
            ("sourced-data", self.sourced_data),
        ]
        return [(name, value) for name, value in pairs if value is not None]

    def to_json(self) -> dict[str, int]:
        """Return the ``ear_trustworthiness_vector`` object."""
        return dict(self.claims())

    def status(self) -> EarStatus:
        """Return the overall tier: the worst tier of any claim (``none`` if none is set)."""
        worst: EarStatus = "none"
        for _name, value in self.claims():
            tier = tier_of(value)
            if _TIER_RANK[tier] > _TIER_RANK[worst]:
                worst = tier
        return worst


# ---------------------------------------------------------------------------------------------
# Keys.
# ---------------------------------------------------------------------------------------------


def _public_jwk_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """Return the required JWK members of a P-256 public key."""
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url_encode(numbers.x.to_bytes(_COORDINATE, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_COORDINATE, "big")),
    }


def _thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the RFC 7638 JWK SHA-256 thumbprint of ``public_key``."""
    return b64url_encode(hashlib.sha256(_json_bytes(_public_jwk_members(public_key))).digest())


def _require_p256(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    """Refuse a key that is not on P-256.

    Raises:
        UsageError: The key is on another curve (code ``token.key_invalid``).
    """
    if not isinstance(key.curve, ec.SECP256R1):
        raise UsageError("ES256 keys must be EC P-256", code="token.key_invalid")


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key that verifies tokens (the active key or a retired one).

    Attributes:
        kid: The key id (RFC 7638 thumbprint).
        public_key: The P-256 public key.
    """

    kid: str
    public_key: ec.EllipticCurvePublicKey

    @classmethod
    def from_public_key(cls, public_key: ec.EllipticCurvePublicKey) -> VerificationKey:
        """Return the verification key of ``public_key`` with its thumbprint as ``kid``.

        Raises:
            UsageError: The key is not on P-256.
        """
        _require_p256(public_key)
        return cls(_thumbprint(public_key), public_key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Return the key of a public EC P-256 JWK, checking that ``kid`` is its thumbprint.

        Raises:
            TokenError: The JWK is not a P-256 public key, or its ``kid`` is not its RFC 7638
                thumbprint (code ``token.jwk_invalid``).
        """
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
            raise TokenError("only public EC P-256 JWKs are accepted", code="token.jwk_invalid")
        try:
            x = b64url_decode(str(jwk["x"]))
            y = b64url_decode(str(jwk["y"]))
        except (KeyError, TokenError) as exc:
            raise TokenError("the JWK has no valid x and y", code="token.jwk_invalid") from exc
        if len(x) != _COORDINATE or len(y) != _COORDINATE:
            raise TokenError("JWK coordinates must be 32 bytes", code="token.jwk_invalid")
        try:
            public_key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
        except ValueError as exc:
            raise TokenError("the JWK is not a point on P-256", code="token.jwk_invalid") from exc
        key = cls.from_public_key(public_key)
        if jwk.get("kid", key.kid) != key.kid:
            raise TokenError("the JWK's kid is not its thumbprint", code="token.jwk_invalid")
        return key

    def jwk(self) -> dict[str, str]:
        """Return the public JWK (RFC 7517) with ``kid``, ``use`` and ``alg``."""
        return {**_public_jwk_members(self.public_key), "kid": self.kid, "use": "sig", "alg": _ALG}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key that signs tokens.

    Attributes:
        kid: The key id (RFC 7638 thumbprint of the public key).
        private_key: The P-256 private key.
    """

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
        """Return the signing key of ``private_key`` with its thumbprint as ``kid``.

        Raises:
            UsageError: The key is not on P-256.
        """
        _require_p256(private_key)
        return cls(_thumbprint(private_key.public_key()), private_key)

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a new random P-256 signing key."""
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    def private_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM, for the caller to seal at rest."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        """Return the signing key in PKCS#8 PEM ``data``.

        Raises:
            UsageError: ``data`` is not an EC P-256 private key (code ``token.key_invalid``).
        """
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise UsageError("not a PEM private key", code="token.key_invalid") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise UsageError("ES256 keys must be EC P-256", code="token.key_invalid")
        return cls.from_private_key(key)

    def verification_key(self) -> VerificationKey:
        """Return the matching verification key."""
        return VerificationKey(self.kid, self.private_key.public_key())


@dataclass(frozen=True, slots=True)
class SigningKeySet:
    """The active signing key and the retired keys that still verify older tokens.

    Attributes:
        active: The key that signs new tokens.
        retired: Public keys of earlier active keys, newest first; kept until every token they
            signed has expired.
    """

    active: SigningKey
    retired: tuple[VerificationKey, ...] = ()

    def rotate(self, new: SigningKey, *, keep: int = 2) -> SigningKeySet:
        """Return a set where ``new`` signs and the current key joins the retired keys.

        Args:
            new: The next signing key.
            keep: How many retired keys to keep (the oldest are dropped).

        Returns:
            The rotated key set.
        """
        retired = (self.active.verification_key(), *self.retired)[:keep]
        return SigningKeySet(new, retired)

    def verification_keys(self) -> tuple[VerificationKey, ...]:
        """Return every key that verifies tokens, the active one first."""
        return (self.active.verification_key(), *self.retired)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the JWK Set served at ``/.well-known/jwks.json``."""
        return {"keys": [key.jwk() for key in self.verification_keys()]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Return ``claims`` as a JWS compact ES256 token signed with the active key."""
        signing_input = f"{_header_segment(self.active.kid)}.{b64url_encode(_json_bytes(claims))}"
        der = self.active.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
        return f"{signing_input}.{b64url_encode(signature)}"

    def verify(
        self,
        token: str,
        *,
        now: datetime,
        issuer: str | None = None,
        leeway: timedelta = timedelta(seconds=30),
    ) -> dict[str, Any]:
        """Verify ``token`` against this set's keys and return its claims.

        Args:
            token: A JWS compact token.
            now: The verification time (timezone-aware).
            issuer: If given, the required ``iss``.
            leeway: Allowed clock difference for ``exp``, ``nbf`` and ``iat``.

        Returns:
            The verified claims.

        Raises:
            TokenError: Malformed (``token.malformed``), another algorithm
                (``token.algorithm_unsupported``), unknown key (``token.unknown_key``), bad
                signature (``token.signature_invalid``), expired or not yet valid
                (``token.expired``, ``token.not_yet_valid``), or another issuer
                (``token.issuer_mismatch``).
        """
        return verify_token(token, self.verification_keys(), now=now, issuer=issuer, leeway=leeway)


def keys_from_jwks(jwks: Mapping[str, Any]) -> tuple[VerificationKey, ...]:
    """Return the verification keys of a JWK Set (``/.well-known/jwks.json``).

    Raises:
        TokenError: The set or one of its keys is invalid (code ``token.jwk_invalid``).
    """
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
        raise TokenError("a JWK Set has a list of keys", code="token.jwk_invalid")
    return tuple(VerificationKey.from_jwk(k) for k in keys)


def verify_token(
    token: str,
    keys: Sequence[VerificationKey],
    *,
    now: datetime,
    issuer: str | None = None,
    leeway: timedelta = timedelta(seconds=30),
) -> dict[str, Any]:
    """Verify an ES256 JWS compact ``token`` with ``keys`` and return its claims.

    See :meth:`SigningKeySet.verify` for the arguments.

    Raises:
        TokenError: See :meth:`SigningKeySet.verify`.
    """
    if len(token) > _MAX_TOKEN:
        raise TokenError("token is too large", code="token.malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("a JWS compact token has three parts", code="token.malformed")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenError("token header or payload is not JSON", code="token.malformed") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("token header and payload must be objects", code="token.malformed")
    if header.get("alg") != _ALG:
        raise TokenError(
            f"token algorithm {header.get('alg')!r} is not accepted (only ES256)",
            code="token.algorithm_unsupported",
        )
    if "crit" in header:
        raise TokenError("critical header parameters are not supported", code="token.malformed")
    key = next((k for k in keys if k.kid == header.get("kid")), None)
    if key is None:
        raise TokenError(f"no key with kid {header.get('kid')!r}", code="token.unknown_key")
    signature = b64url_decode(parts[2])
    if len(signature) != 2 * _COORDINATE:
        raise TokenError("ES256 signatures are 64 bytes", code="token.signature_invalid")
    der = encode_dss_signature(
        int.from_bytes(signature[:_COORDINATE], "big"),
        int.from_bytes(signature[_COORDINATE:], "big"),
    )
    try:
        key.public_key.verify(
            der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise TokenError("token signature does not verify", code="token.signature_invalid") from exc
    _check_times(claims, now=now, leeway=leeway)
    if issuer is not None and claims.get("iss") != issuer:
        raise TokenError(
            f"token issuer {claims.get('iss')!r} is not {issuer!r}", code="token.issuer_mismatch"
        )
    return claims


def _check_times(claims: Mapping[str, Any], *, now: datetime, leeway: timedelta) -> None:
    """Check ``exp``, ``nbf`` and ``iat`` against ``now``.

    Raises:
        TokenError: A time claim is missing, malformed or violated.
    """
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware", code="token.parameters_invalid")
    current = now.timestamp()
    slack = leeway.total_seconds()
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise TokenError("token has no integer exp", code="token.malformed")
    if current > exp + slack:
        raise TokenError("token has expired", code="token.expired")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError(f"token {name} is not an integer", code="token.malformed")
        if value > current + slack:
            raise TokenError(f"token {name} is in the future", code="token.not_yet_valid")


# ---------------------------------------------------------------------------------------------
# EAR claims.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """The appraisal of one workload's evidence, as the token reports it.

    Attributes:
        tee: ``sgx`` or ``tdx``.
        measurements: Hex measurements by name (``mrenclave``, ``mrsigner``; or ``mr_td``,
            ``rtmr0``..``rtmr3``, ``mr_signer_seam``).
        isvprodid: ISVPRODID (SGX; ``None`` for TDX).
        isvsvn: ISVSVN (SGX; ``None`` for TDX).
        debug: Whether the enclave or TD runs in debug mode.
        tcb_status: Intel's TCB status.
        advisory_ids: Intel advisory IDs that apply.
        qe_status: The quoting enclave's status.
        tcb_date: The matched TCB level's date.
        collateral_earliest_expiration: Earliest expiry of the collateral used.
        collateral_latest_issue: Latest issue date of the collateral used.
        simulated: Whether the evidence came from the simulated platform.
        app: The app the workload attested as.
        build: The allowlisted build that matched.
        policy_hash: SHA-256 (hex) of the app's canonical attestation policy.
        vector: The AR4SI trustworthiness vector of this appraisal.
        nonce: The challenge nonce, echoed as ``eat_nonce`` (optional).
        certificate_serial: Serial of the certificate issued, if any.
    """

    tee: Literal["sgx", "tdx"]
    measurements: Mapping[str, str]
    isvprodid: int | None
    isvsvn: int | None
    debug: bool
    tcb_status: str
    advisory_ids: tuple[str, ...]
    qe_status: str
    tcb_date: datetime
    collateral_earliest_expiration: datetime
    collateral_latest_issue: datetime
    simulated: bool
    app: str
    build: str
    policy_hash: str
    vector: TrustVector
    nonce: bytes | None = None
    certificate_serial: int | None = None


def _rfc3339(value: datetime) -> str:
    """Return ``value`` as an RFC 3339 UTC timestamp."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def ear_claims(
    result: WorkloadResult,
    *,
    issuer: str,
    now: datetime,
    ttl: timedelta,
    token_id: str,
    verifier_build: str = f"sanctum {__version__}",
) -> dict[str, Any]:
    """Return the EAR claims set for ``result``.

    Args:
        result: The appraisal.
        issuer: The manager's identifier (``iss``).
        now: Issue time (``iat``).
        ttl: Lifetime (``exp`` = ``iat`` + ``ttl``).
        token_id: A unique id (``jti``), for audit correlation.
        verifier_build: The ``ear_verifier_id.build`` string.

    Returns:
        The JSON-ready claims.

    Raises:
        UsageError: ``ttl`` is not positive or ``now`` is naive (code
            ``token.parameters_invalid``).
    """
    if ttl <= timedelta(0) or now.tzinfo is None:
        raise UsageError(
            "ttl must be positive and now timezone-aware", code="token.parameters_invalid"
        )
    iat = int(now.timestamp())
    status = result.vector.status()
    attester: dict[str, Any] = {"tee": result.tee, **dict(result.measurements)}
    if result.isvprodid is not None:
        attester["isvprodid"] = result.isvprodid
    if result.isvsvn is not None:
        attester["isvsvn"] = result.isvsvn
    attester["debug"] = result.debug
    verifier: dict[str, Any] = {
        "tcb_status": result.tcb_status,
        "advisory_ids": list(result.advisory_ids),
        "qe_status": result.qe_status,
        "tcb_date": _rfc3339(result.tcb_date),
        "collateral_earliest_expiration": _rfc3339(result.collateral_earliest_expiration),
        "collateral_latest_issue": _rfc3339(result.collateral_latest_issue),
        "simulated": result.simulated,
        "app": result.app,
        "build": result.build,
    }
    if result.certificate_serial is not None:
        verifier["certificate_serial"] = format(result.certificate_serial, "x")
    appraisal: dict[str, Any] = {
        "ear_status": status,
        "ear_trustworthiness_vector": result.vector.to_json(),
        "ear_appraisal_policy_ids": [f"urn:sanctum:policy:sha256:{result.policy_hash}"],
        "ear_attester_claims": attester,
        "ear_verifier_claims": verifier,
    }
    claims: dict[str, Any] = {
        "iss": issuer,
        "iat": iat,
        "exp": iat + int(ttl.total_seconds()),
        "jti": token_id,
        "eat_profile": EAR_PROFILE,
        "ear_verifier_id": {"developer": VERIFIER_DEVELOPER, "build": verifier_build},
        "ear_status": status,
        "submods": {f"{result.tee}-{'enclave' if result.tee == 'sgx' else 'td'}": appraisal},
    }
    if result.nonce is not None:
        claims["eat_nonce"] = b64url_encode(result.nonce)
    return claims


def issue_ear(
    keys: SigningKeySet,
    result: WorkloadResult,
    *,
    issuer: str,
    now: datetime,
    ttl: timedelta,
    token_id: str,
) -> str:
    """Return a signed EAR JWT for ``result`` (see :func:`ear_claims` for the arguments).

    Raises:
        UsageError: See :func:`ear_claims`.
    """
    return keys.sign(ear_claims(result, issuer=issuer, now=now, ttl=ttl, token_id=token_id))
