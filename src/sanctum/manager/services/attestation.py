"""The attestation protocol: challenge, attest (certificate, sealed secrets, token), dry run.

A workload proves itself with its quote; nothing else authorises it. The manager:

1. issues a single-use nonce (:func:`issue_challenge`), stored as a digest in the database so
   any replica can accept it, and consumed with one conditional ``UPDATE`` so two replicas
   cannot both accept it;
2. on ``POST /v1/attest`` (:func:`attest`) verifies the quote (Intel DCAP, with the collateral
   supplied or from the configured source, against the trust anchor its chain names, where the
   simulation root is trusted only if the settings enable it for the app's account), checks the
   report-data binding of the nonce and the CSR key, appraises the verified facts with the
   app's policy (allowlisted build, ISV floor, TCB status and advisories, debug, simulated,
   node), and checks every requested SAN is an approved domain of the app;
3. then issues a certificate with the attestation extension from the account's issuing CA,
   seals the app's secrets to the CSR key (HPKE, :mod:`sanctum.protocol.sealing`), and signs an
   EAR attestation result token (:mod:`sanctum.manager.tokens`).

Every attempt is audited (``attestation.accepted`` / ``attestation.refused`` with its reason
code) and counted in the metrics; a refusal issues nothing. :func:`dry_run` runs the same
checks without a nonce, issuing nothing, and explains each one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum.attestation.collateral import Collateral as VerifierCollateral
from sanctum.attestation.quote import parse_quote
from sanctum.attestation.result import SgxEnclaveIdentity, VerifiedQuote
from sanctum.attestation.trust import TrustAnchor
from sanctum.attestation.verify import Verifier
from sanctum.errors import EvidenceError, NotFoundError, SanctumError, UnavailableError, UsageError
from sanctum.manager.ca import AccountCa, issue_workload_certificate, load_csr
from sanctum.manager.db import Prepared, driver_savepoint
from sanctum.manager.errors import RateLimitedError
from sanctum.manager.models import Account, DataKey, new_id
from sanctum.manager.models_attestation import (
    App,
    AttestNonce,
    Node,
    NodeStatus,
    WorkloadInstance,
)
from sanctum.manager.policy import (
    Appraisal,
    AttestationPolicy,
    Check,
    attestation_claims,
    evaluate,
    workload_result,
)
from sanctum.manager.runtime import Runtime, load_or_create_secret
from sanctum.manager.schemas_attestation import VerifyEvidenceRequest
from sanctum.manager.services.apps import (
    AppRow,
    SecretRow,
    app_policy,
    open_sealed_secret,
    resolve_app,
    resolve_app_row,
    secret_rows,
)
from sanctum.manager.services.audit import Outcome, Severity, append, log_committed
from sanctum.manager.services.builds import builds_for_appraisal, builds_matching
from sanctum.manager.services.certificates import (
    CaCache,
    ensure_account_ca,
    insert_certificate_record,
    serial_hex,
)
from sanctum.manager.services.context import Actor, ServiceContext
from sanctum.manager.services.domains import approved_domain_names, approved_domains
from sanctum.manager.services.encrypted_dirs import seal_dir_keys
from sanctum.manager.tokens import SigningKey, SigningKeySet, issue_ear
from sanctum.platforms.collateral_source import CollateralSource
from sanctum.platforms.simulated.pki import ROOT_CN as SIMULATED_ROOT_CN
from sanctum.protocol.binding import check_binding, spki_der
from sanctum.protocol.errors import BindingError
from sanctum.protocol.messages import (
    AttestRequest,
    AttestResponse,
    ChallengeResponse,
    Collateral,
    SealedBoxWire,
    SealedSecret,
    SealingContext,
    VerifyEvidenceResponse,
)
from sanctum.protocol.sealing import seal, secret_aad

__all__ = [
    "EAR_KEY_NAME",
    "AttestationMetrics",
    "AttestationRefusedError",
    "AttestationRuntime",
    "FetchedCollateral",
    "PendingChallenge",
    "RateLimiter",
    "attest",
    "attest_unit",
    "build_attestation_runtime",
    "consume_nonce",
    "dry_run",
    "fetch_collateral",
    "fetch_needed",
    "issue_challenge",
    "jsonable",
    "new_challenge",
    "prefetch_for_attempt",
    "record_refusal",
    "store_challenges",
    "verify_for_account",
    "wire_collateral",
    "workload_actor",
]

_log = logging.getLogger(__name__)
EAR_KEY_NAME: Final = "ear_signing_key"
_NONCE_BYTES: Final = 32
_NONCE_SWEEP_EVERY: Final = 256
_COLLATERAL_CACHE_SIZE: Final = 64
_ANCHOR_CACHE_SIZE: Final = 64
_POLICY_CACHE_SIZE: Final = 256
_SECRET_CACHE_SIZE: Final = 4096
_METRIC_CHILDREN_CACHE_SIZE: Final = 1024


class AttestationRefusedError(EvidenceError):
    """An attestation was refused; ``code`` says why (``attest.*`` and verifier codes)."""

    default_code = "attest.refused"


class AttestationMetrics:
    """Prometheus counters of attestation outcomes, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the metrics in ``registry``."""
        self.outcomes = Counter(
            "sanctum_attestations",
            "Attestation attempts by endpoint, outcome and reason code.",
            ["endpoint", "outcome", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "sanctum_attestation_duration_seconds",
            "Time spent appraising and issuing per attestation.",
            ["endpoint"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        # Label children looked up once (``labels()`` validates and joins on every call).
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def count(self, endpoint: str, outcome: str, code: str) -> None:
        """Count one attempt."""
        key = (endpoint, outcome, code)
        child = self._counters.get(key)
        if child is None:
            child = self.outcomes.labels(endpoint, outcome, code)
            if len(self._counters) < _METRIC_CHILDREN_CACHE_SIZE:
                self._counters[key] = child
        child.inc()

    def observe_duration(self, endpoint: str, seconds: float) -> None:
        """Record the time one attempt of ``endpoint`` took."""
        child = self._durations.get(endpoint)
        if child is None:
            child = self._durations[endpoint] = self.duration.labels(endpoint)
        child.observe(seconds)


class RateLimiter:
    """Token buckets per key (source address), driven by the injected clock.

    In-process only: each replica limits what it serves, which bounds the verification work a
    caller can cause; nothing that matters for correctness lives here.
    """

    def __init__(self, rate_per_second: float, burst: int) -> None:
        """Refill ``rate_per_second`` tokens per second up to ``burst``."""
        self._rate = rate_per_second
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, dt.datetime]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: dt.datetime) -> None:
        """Spend one token of ``key``.

        Raises:
            RateLimitedError: The bucket is empty (``attest.rate_limited``).
        """
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
            elapsed = max(0.0, (now - last).total_seconds())
            tokens = min(self._burst, tokens + elapsed * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimitedError(
                    "too many attestation requests from this address; slow down",
                    retry_after_seconds=max(1, int((1.0 - tokens) / self._rate) + 1),
                    code="attest.rate_limited",
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()


AnchorKind = Literal["intel", "simulated", "simulated_untrusted", "unknown"]


@dataclass
class AttestationRuntime:
    """What the attestation endpoints share in one process (built once per app)."""

    runtime: Runtime
    intel: Verifier
    simulated: Verifier | None
    ear_keys: SigningKeySet
    issuer: str
    metrics: AttestationMetrics
    limiter: RateLimiter
    collateral_source: CollateralSource | None = None
    ca_cache: CaCache = field(default_factory=CaCache)
    anchor_kinds: dict[str, AnchorKind] = field(default_factory=dict)
    challenges: itertools.count[int] = field(default_factory=itertools.count)
    collaterals: dict[bytes, VerifierCollateral] = field(default_factory=dict)
    collaterals_lock: threading.Lock = field(default_factory=threading.Lock)
    policies: dict[tuple[str, int | None, int], AttestationPolicy] = field(default_factory=dict)
    secret_values: dict[tuple[str, str, bytes], bytes] = field(default_factory=dict)
    ca_pem_cache: dict[str, tuple[AccountCa, list[str], str]] = field(default_factory=dict)
    cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def policy_for(self, app: AppRow) -> AttestationPolicy:
        """Return the parsed attestation policy of ``app`` (what :func:`app_policy` returns).

        Cached by the stored policy text and the ISV floor, which are read with the app on
        every request: a policy changed on any replica is a new key, seen at once.

        Raises:
            UsageError: The stored policy is invalid (``policy.invalid``).
        """
        key = (app.policy_text, app.isvprodid, app.min_isvsvn)
        with self.cache_lock:
            found = self.policies.get(key)
        if found is not None:
            return found
        stored = json.loads(app.policy_text)
        if not isinstance(stored, dict):
            raise UsageError("the stored policy is not an object", code="policy.invalid")
        policy = AttestationPolicy.from_dict(
            {**stored, "isvprodid": app.isvprodid, "min_isvsvn": app.min_isvsvn}
        )
        with self.cache_lock:
            if len(self.policies) >= _POLICY_CACHE_SIZE:
                self.policies.clear()
            self.policies[key] = policy
        return policy

    def ca_pems(self, account_id: str, ca: AccountCa) -> tuple[list[str], str]:
        """Return the PEM chain and root of ``ca`` (kept with the cached CA of the account).

        Kept only for the CA in :attr:`ca_cache`, which holds only CAs whose record was
        committed (:func:`ensure_account_ca`): the chain of a CA created by a transaction that
        may still roll back is never kept.
        """
        with self.cache_lock:
            found = self.ca_pem_cache.get(account_id)
        if found is not None and found[0] is ca:
            return found[1], found[2]
        chain, root = ca.chain_pem(), ca.root_pem()
        if self.ca_cache.get(account_id) is ca:
            with self.cache_lock:
                self.ca_pem_cache[account_id] = (ca, chain, root)
        return chain, root

    def secret_value(
        self,
        ctx: ServiceContext,
        app_id: str,
        row: SecretRow,
        *,
        connection: Connection | None = None,
        present_keys: set[str] | None = None,
    ) -> bytes:
        """Return the clear value of an app secret, unsealing it only the first time.

        Cached by the sealed value itself (read on every request): a secret set again on any
        replica is sealed anew (fresh nonce), so its new value is a new key. The clear values
        stay in this process's memory, like the unsealed CA keys and data keys already do.
        A cached value is returned only while the data key that sealed it still exists (read
        on every request, as unsealing does): deleting a data key withdraws what it sealed at
        once (ADR 0120).

        Args:
            ctx: The unit of work.
            app_id: The secret's app.
            row: The stored secret.
            connection: The unit of work's connection (default: the session's).
            present_keys: Data key ids already found in this unit of work (filled in here),
                so secrets sealed under one key cost one lookup.

        Raises:
            EvidenceError: The sealed value does not open, or its data key is gone
                (``secret.*``).
        """
        key = (app_id, row.name, row.sealed_value)
        with self.cache_lock:
            found = self.secret_values.get(key)
        if found is not None:
            if connection is None:
                connection = ctx.connection or ctx.session.connection()
            _require_data_key(connection, row.sealed_value, present_keys)
            return found
        value = open_sealed_secret(ctx, app_id, row.name, row.sealed_value)
        with self.cache_lock:
            if len(self.secret_values) >= _SECRET_CACHE_SIZE:
                self.secret_values.clear()
            self.secret_values[key] = value
        return value

    def verifier_collateral(
        self, wire: Collateral, *, key: bytes | None = None
    ) -> VerifierCollateral:
        """Return the verifier form of supplied collateral (from the cache if it verified before).

        Workloads of a platform send the same collateral until it is refreshed; converting it
        normalises and checks every field, which is a pure function of the content, so the
        result (immutable) is reused once :meth:`remember_collateral` recorded that a quote
        verified with it. Collateral that never verified is never cached (an unauthenticated
        caller must not fill the cache). The verification itself still runs for every quote.

        ``key`` is :func:`_collateral_key` of ``wire`` when the caller already computed it.

        Raises:
            EvidenceError: A field has the wrong shape (``collateral.malformed``, ``crl.invalid``).
        """
        if key is None:
            key = _collateral_key(wire)
        with self.collaterals_lock:
            found = self.collaterals.get(key)
        if found is not None:
            return found
        return _verifier_collateral(wire)

    def remember_collateral(
        self, wire: Collateral, converted: VerifierCollateral, *, key: bytes | None = None
    ) -> None:
        """Cache ``converted`` under the SHA-256 of ``wire`` (call only after it verified).

        ``key`` is :func:`_collateral_key` of ``wire`` when the caller already computed it.
        """
        if key is None:
            key = _collateral_key(wire)
        with self.collaterals_lock:
            if key not in self.collaterals and len(self.collaterals) >= _COLLATERAL_CACHE_SIZE:
                self.collaterals.clear()
            self.collaterals[key] = converted

    def simulation_allowed_for(self, account_name: str) -> bool:
        """Whether the settings let this account's apps see simulated evidence at all."""
        allowed = self.runtime.settings.simulation_accounts
        return self.simulated is not None and ("*" in allowed or account_name in allowed)

    def anchor_kind(self, chain_pem: str) -> AnchorKind:
        """Return which root the TCB signing chain ``chain_pem`` ends in.

        Chains ending in a trusted root are cached by the SHA-256 of their text (a few
        entries); other chains are attacker-chosen and never cached.
        """
        key = hashlib.sha256(chain_pem.encode("utf-8", "surrogatepass")).hexdigest()
        found = self.anchor_kinds.get(key)
        if found is not None:
            return found
        kind: AnchorKind = "unknown"
        try:
            root = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[-1]
        except (ValueError, IndexError):
            root = None
        if root is not None:
            der = root.public_bytes(serialization.Encoding.DER)
            if der == self.intel.trust_anchor.der:
                kind = "intel"
            elif self.simulated is not None and der == self.simulated.trust_anchor.der:
                kind = "simulated"
            elif any(
                attribute.value == SIMULATED_ROOT_CN
                for attribute in root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            ):
                kind = "simulated_untrusted"
        if kind in {"intel", "simulated"} and len(self.anchor_kinds) < _ANCHOR_CACHE_SIZE:
            self.anchor_kinds[key] = kind
        return kind


_DATA_KEYS: Final = cast("Table", DataKey.__table__)
_DATA_KEY_PRESENT: Final = Prepared(
    select(_DATA_KEYS.c.id).where(_DATA_KEYS.c.id == bindparam("key_id"))
)
# The layout of a sealed value (:meth:`SecretBox.seal`): magic, data key id, nonce, ciphertext.
_SEALED_MAGIC: Final = b"S1"
_SEALED_KEY_ID_LEN: Final = 36


def _require_data_key(
    connection: Connection, sealed: bytes, present: set[str] | None = None
) -> None:
    """Refuse a sealed value whose data key is gone, as unsealing it would.

    Raises:
        EvidenceError: No data key row has the value's key id (``secret.key_missing``), or the
            value is not a sealed value (``secret.corrupt``).
    """
    if not sealed.startswith(_SEALED_MAGIC):  # pragma: no cover (it opened before)
        raise EvidenceError("a sealed secret is malformed", code="secret.corrupt")
    key_id = sealed[len(_SEALED_MAGIC) : len(_SEALED_MAGIC) + _SEALED_KEY_ID_LEN].decode(
        "ascii", errors="replace"
    )
    if present is not None and key_id in present:
        return
    if not _DATA_KEY_PRESENT.rows(connection, {"key_id": key_id}):
        raise EvidenceError("the data key of a sealed secret is missing", code="secret.key_missing")
    if present is not None:
        present.add(key_id)


def _new_ear_key() -> tuple[bytes, str | None]:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return der, None


def _issuer(runtime: Runtime) -> str:
    settings = runtime.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = "http" if settings.insecure_http else "https"
    return f"{scheme}://{settings.host}:{settings.port}"


def build_attestation_runtime(
    runtime: Runtime,
    registry: CollectorRegistry,
    *,
    simulated_root: TrustAnchor | None = None,
    collateral_source: CollateralSource | None = None,
) -> AttestationRuntime:
    """Build the attestation runtime: trust anchors, the token signing key, the limiter.

    The Intel root is always trusted; the simulation root only when ``simulated_root`` is given
    (the app factory passes it when the settings enable the simulated platform).

    Raises:
        EvidenceError: The shipped Intel root is corrupt, or a stored key does not unseal.
        UnavailableError: The database is unreachable.
    """
    with runtime.db.transaction() as session:
        der, _ = load_or_create_secret(
            session, runtime.box, EAR_KEY_NAME, _new_ear_key, runtime.clock.now()
        )
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):  # pragma: no cover (we wrote it)
        raise EvidenceError("the stored token key is not EC", code="secret.corrupt")
    settings = runtime.settings
    return AttestationRuntime(
        runtime=runtime,
        intel=Verifier(TrustAnchor.intel()),
        simulated=None if simulated_root is None else Verifier(simulated_root),
        ear_keys=SigningKeySet(SigningKey.from_private_key(key)),
        issuer=_issuer(runtime),
        metrics=AttestationMetrics(registry),
        limiter=RateLimiter(settings.attest_rate_per_second, settings.attest_rate_burst),
        collateral_source=collateral_source,
    )


def workload_actor(instance: str | None, app_ref: str) -> Actor:
    """Return the audit actor of a workload (identified by its instance id, if it gave one)."""
    return Actor(type="workload", id=instance, name=f"workload of {app_ref}"[:320])


# --- Nonces -------------------------------------------------------------------------------------


def _nonce_hash(nonce: bytes) -> str:
    return hashlib.sha256(b"sanctum-attest-nonce\x00" + nonce).hexdigest()


_NONCES: Final = cast("Table", AttestNonce.__table__)
_INSERT_NONCE: Final = Prepared(
    insert(_NONCES), column_keys=["nonce_hash", "created_at", "expires_at", "used_at"]
)
_CONSUME_NONCE: Final = Prepared(
    update(_NONCES)
    .where(
        _NONCES.c.nonce_hash == bindparam("digest"),
        _NONCES.c.used_at.is_(None),
        _NONCES.c.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("mark"))
)
_NONCE_STATE: Final = Prepared(
    select(_NONCES.c.used_at).where(_NONCES.c.nonce_hash == bindparam("digest"))
)
_NONCE_LIVE: Final = Prepared(
    select(_NONCES.c.nonce_hash).where(
        _NONCES.c.nonce_hash == bindparam("digest"),
        _NONCES.c.used_at.is_(None),
        _NONCES.c.expires_at > bindparam("now"),
    )
)


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    """A challenge made but not yet stored: its answer and the row that stores its digest."""

    response: ChallengeResponse
    row: dict[str, Any]


def new_challenge(att: AttestationRuntime, now: dt.datetime) -> PendingChallenge:
    """Make a nonce and its row; it is valid only once :func:`store_challenges` committed it."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    expires = now + dt.timedelta(seconds=att.runtime.settings.attest_nonce_ttl_seconds)
    row = {"nonce_hash": _nonce_hash(nonce), "created_at": now, "expires_at": expires}
    return PendingChallenge(ChallengeResponse(nonce=nonce, expires_at=expires), row)


def store_challenges(
    connection: Connection, att: AttestationRuntime, pending: list[PendingChallenge]
) -> None:
    """Store the digests of ``pending`` nonces (one ``INSERT``); sweep expired ones at times."""
    if not pending:
        return
    _INSERT_NONCE.execute_many(connection, [{**p.row, "used_at": None} for p in pending])
    sweeps = [next(att.challenges) % _NONCE_SWEEP_EVERY == 0 for _ in pending]
    if any(sweeps):
        latest = max(p.row["created_at"] for p in pending)
        connection.execute(
            delete(_NONCES).where(_NONCES.c.expires_at < latest - dt.timedelta(minutes=10))
        )


def issue_challenge(
    session: Session, att: AttestationRuntime, now: dt.datetime
) -> ChallengeResponse:
    """Create and store a single-use nonce (one Core ``INSERT``; expired ones swept at times)."""
    pending = new_challenge(att, now)
    store_challenges(session.connection(), att, [pending])
    return pending.response


def consume_nonce(session: Session, nonce: bytes, now: dt.datetime) -> None:
    """Mark ``nonce`` used, atomically: exactly one caller, on any replica, succeeds.

    One conditional ``UPDATE`` (unused and unexpired); only a refusal reads the row again to
    say why.

    Raises:
        AttestationRefusedError: Unknown, expired or already used (``attest.nonce_invalid``,
            with ``details["reason"]``).
    """
    _consume_nonce(session.connection(), nonce, now)


def _consume_nonce(connection: Connection, nonce: bytes, now: dt.datetime) -> None:
    """Do :func:`consume_nonce` on ``connection`` (the session's, already looked up)."""
    digest = _nonce_hash(nonce)
    if _CONSUME_NONCE.execute(connection, {"digest": digest, "now": now, "mark": now}) == 1:
        return
    rows = _NONCE_STATE.rows(connection, {"digest": digest})
    row = rows[0] if rows else None
    if row is None:
        reason, message = "unknown", "the nonce was not issued by this manager"
    elif row[0] is not None:
        reason, message = "replayed", "the nonce was already used (a replay)"
    else:
        reason, message = "expired", "the nonce has expired; ask for a new challenge"
    raise AttestationRefusedError(message, code="attest.nonce_invalid", details={"reason": reason})


# --- Verification -------------------------------------------------------------------------------


def _collateral_key(wire: Collateral) -> bytes:
    """Return the SHA-256 of every field of ``wire`` (length-prefixed, in a fixed order)."""
    digest = hashlib.sha256()
    for value in (
        wire.pck_crl_issuer_chain,
        wire.root_ca_crl,
        wire.pck_crl,
        wire.tcb_info_issuer_chain,
        wire.tcb_info,
        wire.tcb_info_signature,
        wire.qe_identity_issuer_chain,
        wire.qe_identity,
        wire.qe_identity_signature,
        wire.pck_certificate_chain,
    ):
        if value is None:
            digest.update(b"\xff" * 8)  # No length prefix is all ones: absent differs from empty.
            continue
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


def _verifier_collateral(wire: Collateral) -> VerifierCollateral:
    return VerifierCollateral(
        pck_crl=wire.pck_crl,
        pck_crl_issuer_chain=wire.pck_crl_issuer_chain,
        root_ca_crl=wire.root_ca_crl,
        tcb_info_text=wire.tcb_info.encode("utf-8"),
        tcb_info_signature=wire.tcb_info_signature,
        tcb_info_issuer_chain=wire.tcb_info_issuer_chain,
        qe_identity_text=wire.qe_identity.encode("utf-8"),
        qe_identity_signature=wire.qe_identity_signature,
        qe_identity_issuer_chain=wire.qe_identity_issuer_chain,
        pck_certificate_chain=wire.pck_certificate_chain,
    )


def wire_collateral(collateral: VerifierCollateral) -> Collateral:
    """Return the wire form of verifier collateral (what a workload sends with its quote)."""
    return Collateral(
        pck_crl_issuer_chain=collateral.pck_crl_issuer_chain,
        root_ca_crl=collateral.root_ca_crl,
        pck_crl=collateral.pck_crl,
        tcb_info_issuer_chain=collateral.tcb_info_issuer_chain,
        tcb_info=collateral.tcb_info_text.decode("utf-8"),
        tcb_info_signature=collateral.tcb_info_signature,
        qe_identity_issuer_chain=collateral.qe_identity_issuer_chain,
        qe_identity=collateral.qe_identity_text.decode("utf-8"),
        qe_identity_signature=collateral.qe_identity_signature,
        pck_certificate_chain=collateral.pck_certificate_chain,
    )


def verify_for_account(
    att: AttestationRuntime,
    account: Account,
    quote: bytes,
    collateral: Collateral | None,
    *,
    now: dt.datetime,
    allow_expired_collateral: bool,
    min_tcb_evaluation_data_number: int | None = None,
) -> VerifiedQuote:
    """Verify ``quote`` with the anchor its collateral names, as far as the account may trust it.

    When the manager has a collateral source (``pcs_url``, ``collateral_dir``), collateral
    sent with the quote is ignored and the source's is used; only simulated evidence, whose
    collateral the manager's simulation PKI signs, keeps the collateral it was sent with.
    Collateral sent with the quote and used is refused when its TCB evaluation data number is
    below ``min_tcb_evaluation_data_number`` (stale collateral).

    Raises:
        AttestationRefusedError: Simulated evidence where the settings do not trust it for this
            account (``attest.simulated_not_allowed``), no collateral to verify with
            (``attest.collateral_missing``), or stale supplied collateral
            (``attest.collateral_stale``).
        EvidenceError: The quote does not verify (``quote.*``, ``pck.*``, ``tcb.*``...).
        UnavailableError: The collateral source could not answer.
    """
    return _verify_for(
        att,
        account.name,
        quote,
        collateral,
        now=now,
        allow_expired_collateral=allow_expired_collateral,
        min_tcb_evaluation_data_number=min_tcb_evaluation_data_number,
    )


def _used_collateral(att: AttestationRuntime, collateral: Collateral | None) -> Collateral | None:
    """Return the supplied collateral that verification uses (``None``: the source's, if any).

    With a collateral source configured, supplied collateral is ignored unless it is simulated
    (the manager's simulation PKI signs it; no source has it).
    """
    if collateral is not None and att.collateral_source is not None:
        supplied_kind = att.anchor_kind(collateral.tcb_info_issuer_chain)
        if supplied_kind not in {"simulated", "simulated_untrusted"}:
            _log.debug("ignoring collateral sent with a quote: the manager has its own source")
            return None
    return collateral


@dataclass(frozen=True, slots=True)
class FetchedCollateral:
    """Collateral fetched from the source before a transaction began, or why it could not be.

    The error is raised where the fetch would have happened inside the transaction, so the
    refusal (its code, the used nonce, the audit entry) is the same as without prefetching.
    """

    collateral: VerifierCollateral | None
    error: SanctumError | None = None

    def get(self) -> VerifierCollateral:
        """Return the collateral, or raise what fetching it raised.

        Raises:
            SanctumError: The fetch failed (``UnavailableError``, or ``quote.*`` for a quote
                that does not parse).
        """
        if self.error is not None:
            raise self.error
        if self.collateral is None:  # pragma: no cover (one of the two is always set)
            raise UnavailableError("no collateral was fetched", code="collateral.unavailable")
        return self.collateral


def fetch_needed(att: AttestationRuntime, collateral: Collateral | None) -> bool:
    """Whether verifying a quote sent with ``collateral`` needs the source's collateral."""
    return att.collateral_source is not None and _used_collateral(att, collateral) is None


def fetch_collateral(
    att: AttestationRuntime, quote: bytes, collateral: Collateral | None, *, now: dt.datetime
) -> FetchedCollateral | None:
    """Fetch the source's collateral for ``quote`` if verification will need it, else ``None``.

    Call it before the attestation's transaction begins (ADR 0120): a fetch from the PCS may
    take seconds, and inside the transaction it would hold the database (on SQLite, the
    writer lock every other transaction waits for). Errors are kept, not raised, and come
    out at the point of the attestation where the fetch used to happen.
    """
    if att.collateral_source is None or _used_collateral(att, collateral) is not None:
        return None
    try:
        return FetchedCollateral(att.collateral_source.for_quote(parse_quote(quote), now=now))
    except SanctumError as error:
        return FetchedCollateral(None, error)


def prefetch_for_attempt(
    att: AttestationRuntime,
    body: AttestRequest,
    *,
    source_address: str | None,
    now: dt.datetime,
) -> tuple[FetchedCollateral | None, bool]:
    """Fetch the source's collateral for an attempt that passes the checks made before a fetch.

    A fetch is a PCS round trip chosen by the quote (its FMSPC comes from the unverified PCK
    certificate inside it), so, as when the fetch happened inside the attestation, it is only
    made for an attempt within its address's rate limit, for an app that exists and with a
    live nonce; an attempt failing one of these gets ``None`` and is refused by the unit of
    work with the usual code. The app and nonce are only read here: the unit of work checks
    and consumes them again in its transaction.

    Returns:
        The fetched collateral (or ``None``: nothing to fetch, or the attempt will be
        refused), and whether the rate-limit token was taken here (pass it to
        :func:`attest_unit` so that it is not taken twice).
    """
    try:
        att.limiter.take(source_address or "unknown", now)
    except SanctumError:
        return None, False  # The unit of work takes it again and records the refusal.
    if not fetch_needed(att, body.collateral):
        return None, True
    try:
        with att.runtime.db.connection() as connection:
            resolve_app_row(connection, body.app)
            live = _NONCE_LIVE.rows(connection, {"digest": _nonce_hash(body.nonce), "now": now})
    except SanctumError:
        return None, True
    if not live:
        return None, True
    return fetch_collateral(att, body.quote, body.collateral, now=now), True


def _verify_for(
    att: AttestationRuntime,
    account_name: str,
    quote: bytes,
    collateral: Collateral | None,
    *,
    now: dt.datetime,
    allow_expired_collateral: bool,
    min_tcb_evaluation_data_number: int | None,
    fetched: FetchedCollateral | None = None,
) -> VerifiedQuote:
    collateral = _used_collateral(att, collateral)
    collateral_key = None
    if collateral is not None:
        # Hashed once: the same key finds the cached conversion and, once verified, stores it.
        collateral_key = _collateral_key(collateral)
        verifier_collateral = att.verifier_collateral(collateral, key=collateral_key)
    elif fetched is not None:
        verifier_collateral = fetched.get()
    elif att.collateral_source is not None:
        verifier_collateral = att.collateral_source.for_quote(parse_quote(quote), now=now)
    else:
        raise AttestationRefusedError(
            "no collateral was supplied and the manager has no collateral source",
            code="attest.collateral_missing",
            hint="send the collateral with the quote, or configure pcs_url or collateral_dir",
        )
    kind = att.anchor_kind(verifier_collateral.tcb_info_issuer_chain)
    verifier = att.intel
    if kind in {"simulated", "simulated_untrusted"}:
        if att.simulated is None or kind == "simulated_untrusted":
            raise AttestationRefusedError(
                "the evidence comes from a simulated platform this manager does not trust",
                code="attest.simulated_not_allowed",
                hint="simulated evidence needs simulation_enabled and the matching simulation PKI",
            )
        if not att.simulation_allowed_for(account_name):
            raise AttestationRefusedError(
                f"simulated evidence is not enabled for the account {account_name!r}",
                code="attest.simulated_not_allowed",
                hint="list the account in the manager setting simulation_accounts",
            )
        verifier = att.simulated
    verified = verifier.verify(
        quote, verifier_collateral, now=now, allow_expired_collateral=allow_expired_collateral
    )
    if collateral is not None:
        if (
            min_tcb_evaluation_data_number is not None
            and verified.tcb_evaluation_data_number < min_tcb_evaluation_data_number
        ):
            raise AttestationRefusedError(
                f"the supplied collateral has TCB evaluation data number "
                f"{verified.tcb_evaluation_data_number}; the app requires at least "
                f"{min_tcb_evaluation_data_number}",
                code="attest.collateral_stale",
                hint="send current collateral (refresh it from the PCS or PCCS)",
            )
        att.remember_collateral(collateral, verifier_collateral, key=collateral_key)
    return verified


def _pck_identity(verified: VerifiedQuote) -> str:
    return f"{verified.platform.pce_id.hex()}:{verified.platform.ppid.hex()}"


_NODES: Final = cast("Table", Node.__table__)
_ACTIVE_NODE: Final = Prepared(
    select(_NODES.c.id)
    .where(
        _NODES.c.account_id == bindparam("account_id"),
        _NODES.c.pck_identity == bindparam("pck_identity"),
        _NODES.c.status == NodeStatus.active,
    )
    .limit(1)
)


def _node_registered(connection: Connection, account_id: str, verified: VerifiedQuote) -> bool:
    """Whether an active node of the account has the quote's PCK identity (read every time)."""
    rows = _ACTIVE_NODE.rows(
        connection, {"account_id": account_id, "pck_identity": _pck_identity(verified)}
    )
    return bool(rows)


def _appraise(
    ctx: ServiceContext, app: App, policy: AttestationPolicy, verified: VerifiedQuote
) -> Appraisal:
    allowlisted, revoked = builds_for_appraisal(ctx, app.id, simulated=verified.simulated)
    node = (
        _node_registered(ctx.session.connection(), app.account_id, verified)
        if policy.require_registered_node
        else None
    )
    return evaluate(
        policy,
        verified,
        allowlisted_builds=allowlisted,
        revoked_builds=revoked,
        node_registered=node,
    )


def _requested_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for general in extension.value:
        if isinstance(general, x509.DNSName):
            names.append(general.value.lower().rstrip("."))
        else:
            names.append(str(general.value))
    return names


def _certificate_subject(configured: object, sans: list[str]) -> x509.Name:
    """Return the workload certificate's subject: a common name only if it is a certified SAN.

    The common name the app configures is used only when it is one of ``sans`` (which are
    approved domains); otherwise the first SAN is; with no SAN the subject is empty, so a
    certificate never names something that was not approved.
    """
    wanted = str(configured).lower().rstrip(".") if configured else None
    names = {name.lower(): name for name in sans}
    chosen = names.get(wanted) if wanted is not None else None
    if chosen is None and sans:
        chosen = sans[0]
    if chosen is None or len(chosen) > 64:  # The X.520 bound of a common name.
        return x509.Name([])
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, chosen)])


def _domain_check(requested: list[str], approved: list[str]) -> Check:
    missing = [name for name in requested if name not in approved]
    if missing:
        return Check(
            "domains.approved",
            "fail",
            "attest.domain_not_approved",
            "the CSR asks for names that are not approved domains of the app: "
            + ", ".join(missing),
        )
    return Check(
        "domains.approved",
        "pass",
        "attest.domain_not_approved",
        "every requested name is an approved domain"
        if requested
        else "the CSR asks for no name; the certificate gets the approved domains",
    )


def _key_type(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ec-p256"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


# --- Attest -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Issued:
    response: AttestResponse
    serial: str
    build_id: str


def attest(
    ctx: ServiceContext,
    att: AttestationRuntime,
    body: AttestRequest,
    *,
    fetched: FetchedCollateral | None = None,
    rate_taken: bool = False,
) -> AttestResponse:
    """Run the whole attestation for ``body``; issue only if every check passes.

    The nonce is consumed first, in the caller's transaction, so that it stays used even when
    the attempt is refused. Every check runs before the first write, and the writes (the
    certificate record, the instance, the audit entry) come last. A savepoint around the
    checks and the writes makes a refusal raised after a write (the account CA created on first
    use, a directory key created) commit only the used nonce and the refusal's audit entry.

    The database work is a handful of prepared statements (:class:`~sanctum.manager.db.Prepared`)
    on the unit of work's connection (ADR 0085): the app with its account, the nonce, the builds
    with the quote's measurement, the approved domains, the secrets, then the writes. With a
    Core unit of work (``ctx.connection``, :func:`attest_unit`; ADR 0120) the savepoint is made
    on the driver and the session is only used by rare branches.

    Args:
        ctx: The unit of work.
        att: The attestation runtime.
        body: The request.
        fetched: The source's collateral, fetched before the transaction
            (:func:`prefetch_for_attempt`); ``None`` fetches it here if needed.
        rate_taken: Whether the caller already took this attempt's rate-limit token.

    Raises:
        RateLimitedError: Too many attempts from this address (``attest.rate_limited``).
        NotFoundError: Unknown app (``attest.app_unknown``).
        AttestationRefusedError: Refused (``attest.*``).
        EvidenceError: The quote, the CSR or the binding is refused (``quote.*``, ``ca.*``,
            ``attest.binding_mismatch``...).
        UnavailableError: Collateral could not be obtained.
    """
    started = time.perf_counter()
    if not rate_taken:
        att.limiter.take(ctx.source_address or "unknown", ctx.now)
    core = ctx.connection
    # The unit's connection, looked up once (a savepoint keeps using the same connection).
    connection = core if core is not None else ctx.session.connection()
    app = resolve_app_row(connection, body.app)
    ctx.extras["app"] = app
    _consume_nonce(connection, body.nonce, ctx.now)
    if core is None:
        with ctx.session.begin_nested():
            issued = _attest_checked(ctx, att, app, body, connection, fetched=fetched)
    else:
        with _core_savepoint(ctx, core):
            issued = _attest_checked(ctx, att, app, body, connection, fetched=fetched)
    att.metrics.count("attest", "accepted", "ok")
    att.metrics.observe_duration("attest", time.perf_counter() - started)
    return issued.response


@contextmanager
def _core_savepoint(ctx: ServiceContext, connection: Connection) -> Iterator[None]:
    """The savepoint of a Core unit of work, with the bound session's work inside it.

    The session (used only by rare branches) begins its own savepoint inside this one when it
    is first used (``join_transaction_mode="create_savepoint"``): it is committed (flushed,
    released) before this savepoint is released, or closed (rolled back, its objects
    forgotten) before this savepoint rolls back, so nothing it holds outlives a refusal; the
    log lines of audit entries written inside are dropped with them.

    Raises:
        DBAPIError: The database refused a savepoint statement.
    """
    session = ctx.session
    logged = len(ctx.audit_lines)
    with driver_savepoint(connection, "sanctum_attest"):
        try:
            yield
            if session.in_transaction():
                session.commit()  # A flush failing here rolls the savepoint back too.
        except BaseException:
            if session.in_transaction():
                session.close()
            del ctx.audit_lines[logged:]  # Entries rolled back with the savepoint: never logged.
            raise


def attest_unit(
    att: AttestationRuntime,
    body: AttestRequest,
    *,
    now: dt.datetime | None,
    request_id: str | None,
    source_address: str | None,
    fetched: FetchedCollateral | None = None,
    rate_taken: bool = False,
    wait: bool = True,
) -> AttestResponse | SanctumError | None:
    """Run one attestation as its own unit of work on a Core connection, and commit it.

    Returns the answer, or the refusal, which is committed too (the nonce stays used, the
    refusal is audited and counted). The transaction runs on a Core connection
    (:meth:`~sanctum.manager.db.Database.connection`): every statement of the attestation is
    a prepared one, so the ORM session's transaction bookkeeping is skipped (ADR 0120); a
    session bound to the connection serves the rare branches that need ORM objects (the
    account CA's creation, encrypted-directory keys, unsealing a secret the first time).
    Audit entries are logged once the transaction committed.

    Args:
        att: The attestation runtime.
        body: The request.
        now: The time of the attempt; ``None`` reads the runtime's clock when the unit of
            work begins (after a collateral fetch or a wait for the database, so that a nonce
            expiring meanwhile is refused and audit times follow the chain's order).
        request_id: The request id (audit entries).
        source_address: The caller's address (rate limit, audit entries).
        fetched: The source's collateral, fetched before (:func:`prefetch_for_attempt`).
        rate_taken: Whether the caller already took the attempt's rate-limit token.
        wait: ``False`` to do nothing and return ``None`` when the database would make the
            caller wait (:meth:`~sanctum.manager.db.Database.connection_if_free`).

    Raises:
        UnavailableError: The database could not be reached (``database.unavailable``).
        ConflictError: A constraint refused the commit (``database.conflict``).
    """
    db = att.runtime.db
    with db.connection() if wait else db.connection_if_free() as connection:
        if connection is None:
            return None
        session = db.sessions(bind=connection, join_transaction_mode="create_savepoint")
        ctx = ServiceContext(
            session=session,
            now=att.runtime.clock.now() if now is None else now,
            actor=workload_actor(body.instance, body.app),
            runtime=att.runtime,
            request_id=request_id,
            source_address=source_address,
            connection=connection,
        )
        outcome: AttestResponse | SanctumError
        try:
            outcome = attest(ctx, att, body, fetched=fetched, rate_taken=rate_taken)
        except SanctumError as error:
            outcome = error
            record_refusal(ctx, att, endpoint="attest", app_ref=body.app, error=error)
        if session.in_transaction():
            session.commit()  # Flushed and released: its work commits with the connection.
        connection.commit()
        # Logged once committed, while this process still holds the connection (on SQLite the
        # writer lock): lines of concurrent units come out in the chain's order.
        log_committed(ctx.audit_lines)
    return outcome


def _measurement(verified: VerifiedQuote) -> bytes:
    identity = verified.identity
    return identity.mrenclave if isinstance(identity, SgxEnclaveIdentity) else identity.mr_td


def _attest_checked(
    ctx: ServiceContext,
    att: AttestationRuntime,
    app: AppRow,
    body: AttestRequest,
    connection: Connection,
    *,
    fetched: FetchedCollateral | None,
) -> _Issued:
    policy = att.policy_for(app)
    csr = load_csr(body.csr)
    public_key = csr.public_key()
    verified = _verify_for(
        att,
        app.account_name,
        body.quote,
        body.collateral,
        now=ctx.now,
        allow_expired_collateral=policy.unsafe_allow_expired_collateral,
        min_tcb_evaluation_data_number=policy.min_tcb_evaluation_data_number,
        fetched=fetched,
    )
    check_binding(verified.report_data, body.nonce, spki_der(public_key))
    allowlisted, revoked = builds_matching(
        connection, app.id, _measurement(verified), simulated=verified.simulated
    )
    appraisal = evaluate(
        policy,
        verified,
        allowlisted_builds=allowlisted,
        revoked_builds=revoked,
        node_registered=(
            _node_registered(connection, app.account_id, verified)
            if policy.require_registered_node
            else None
        ),
    )
    appraisal.raise_if_refused()
    build = appraisal.build
    if build is None:  # pragma: no cover (an accepted appraisal has a build)
        raise AttestationRefusedError("no build matched", code="attest.build_not_allowlisted")
    config = app.certificate
    wanted = str(config.get("key_type", "ec-p256"))
    if _key_type(public_key) != wanted:
        raise AttestationRefusedError(
            f"the CSR key is {_key_type(public_key)}; the app's certificates use {wanted}",
            code="attest.key_type_mismatch",
        )
    approved = approved_domain_names(connection, app.id)
    requested = _requested_sans(csr)
    domains = _domain_check(requested, approved)
    if domains.outcome == "fail":
        raise AttestationRefusedError(domains.reason, code=domains.code)
    sans = requested or approved
    ca = ensure_account_ca(ctx, app.account_id, att.ca_cache)
    subject = _certificate_subject(config.get("subject"), sans)
    serial = x509.random_serial_number()
    crl_url = None
    if att.runtime.settings.public_url:
        crl_url = f"{att.issuer}/v1/accounts/{app.account_id}/ca/crl"
    claims = attestation_claims(verified)
    certificate = issue_workload_certificate(
        ca,
        csr,
        subject=subject,
        sans=sans,
        validity=dt.timedelta(seconds=int(config.get("validity_seconds", 86400))),
        serial=serial,
        attestation=claims,
        now=ctx.now,
        crl_url=crl_url,
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    context = SealingContext(manager_id=att.issuer, app=body.app, build=build.id, nonce=body.nonce)
    info = context.info()
    present_keys: set[str] = set()
    sealed = [
        _sealed_secret(
            row,
            public_key,
            att.secret_value(ctx, app.id, row, connection=connection, present_keys=present_keys),
            info,
        )
        for row in secret_rows(connection, app.id)
    ]
    sealed_dir_keys = []
    if app.encrypted_dirs:
        orm_app = ctx.session.get(App, app.id)
        if orm_app is None:  # pragma: no cover (deleted in a concurrent transaction)
            raise NotFoundError(f"no app {body.app!r}", code="attest.app_unknown")
        sealed_dir_keys = seal_dir_keys(ctx, orm_app, build.id, public_key, info=info)
    token = issue_ear(
        att.ear_keys,
        workload_result(
            verified,
            appraisal,
            app=app.id,
            build=build.id,
            nonce=body.nonce,
            certificate_serial=serial,
        ),
        issuer=att.issuer,
        now=ctx.now,
        ttl=dt.timedelta(seconds=att.runtime.settings.attest_token_ttl_seconds),
        token_id=uuid.uuid4().hex,
    )
    # The writes, last: nothing above wrote anything (but the used nonce).
    serial_text = serial_hex(serial)
    insert_certificate_record(
        connection,
        app.account_id,
        certificate,
        pem=certificate_pem,
        sans=sans,
        now=ctx.now,
        app_id=app.id,
        build_id=build.id,
        instance=body.instance,
    )
    if body.instance is not None:
        _record_instance(
            ctx, connection, app=app, build_id=build.id, instance=body.instance, serial=serial_text
        )
    append(
        ctx,
        "attestation.accepted",
        account_id=app.account_id,
        target_type="certificate",
        target_id=serial_text,
        details={
            "app_id": app.id,
            "build_id": build.id,
            "tee": claims.tee,
            "measurement": claims.measurement.hex(),
            "tcb_status": claims.tcb_status,
            "advisory_ids": list(claims.advisory_ids),
            "simulated": claims.simulated,
            "debug": claims.debug,
            "sans": sans,
            "instance": body.instance,
            "policy_hash": appraisal.policy_hash,
            "ear_status": appraisal.vector.status(),
        },
    )
    chain, root = att.ca_pems(app.account_id, ca)
    response = AttestResponse(
        certificate=certificate_pem,
        chain=chain,
        ca=root,
        sealing=context,
        sealed_secrets=sealed,
        sealed_dir_keys=sealed_dir_keys,
        token=token,
        expires_at=certificate.not_valid_after_utc,
    )
    return _Issued(response, serial_text, build.id)


def _sealed_secret(
    row: SecretRow, public_key: CertificatePublicKeyTypes, value: bytes, info: bytes
) -> SealedSecret:
    box = seal(
        public_key,
        value,
        info=info,
        aad=secret_aad(name=row.name, delivery=row.delivery, target=row.target),
    )
    target: dict[str, str] = (
        {"path": row.target} if row.delivery == "file" else {"env_name": row.target}
    )
    return SealedSecret.model_validate(
        {
            "name": row.name,
            "delivery": row.delivery,
            **target,
            "box": SealedBoxWire.from_box(box),
        }
    )


_INSTANCES: Final = cast("Table", WorkloadInstance.__table__)


def _instance_upsert(dialect: Any) -> Prepared:
    statement = dialect.insert(_INSTANCES)
    return Prepared(
        statement.on_conflict_do_update(
            index_elements=[_INSTANCES.c.app_id, _INSTANCES.c.instance],
            set_={
                "build_id": statement.excluded.build_id,
                "certificate_serial": statement.excluded.certificate_serial,
                "attestations": _INSTANCES.c.attestations + 1,
                "last_seen_at": statement.excluded.last_seen_at,
            },
        ),
        column_keys=[column.key for column in _INSTANCES.c],
    )


_UPSERT_INSTANCE: Final = {
    "postgresql": _instance_upsert(postgresql),
    "sqlite": _instance_upsert(sqlite),
}


def _record_instance(
    ctx: ServiceContext,
    connection: Connection,
    *,
    app: AppRow,
    build_id: str,
    instance: str,
    serial: str,
) -> None:
    """Insert or update the instance's row with one upsert (concurrent renewals both count)."""
    _UPSERT_INSTANCE[connection.dialect.name].execute(
        connection,
        {
            "id": new_id(),
            "account_id": app.account_id,
            "app_id": app.id,
            "instance": instance,
            "build_id": build_id,
            "certificate_serial": serial,
            "attestations": 1,
            "first_seen_at": ctx.now,
            "last_seen_at": ctx.now,
        },
    )


def record_refusal(
    ctx: ServiceContext,
    att: AttestationRuntime,
    *,
    endpoint: str,
    app_ref: str,
    error: SanctumError,
) -> None:
    """Audit and count a refused attempt (in the caller's transaction, which commits).

    Rate-limited attempts are only counted: auditing them would let a flood fill the log.
    """
    att.metrics.count(endpoint, "refused", error.code)
    if isinstance(error, RateLimitedError):
        return
    app = ctx.extras.get("app")
    account_id = app.account_id if isinstance(app, App | AppRow) else None
    append(
        ctx,
        "attestation.refused",
        account_id=account_id,
        target_type="app",
        target_id=app.id if isinstance(app, App | AppRow) else app_ref[:320],
        outcome=Outcome.failure if isinstance(error, UnavailableError) else Outcome.denied,
        severity=Severity.warning,
        details={
            "endpoint": endpoint,
            "code": error.code,
            "reason": error.message[:500],
            "details": jsonable(dict(error.details)) if error.details else {},
        },
    )


def jsonable(value: Any) -> Any:
    """Return ``value`` with anything JSON cannot hold turned into text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# --- Dry run ------------------------------------------------------------------------------------


def dry_run(
    ctx: ServiceContext,
    att: AttestationRuntime,
    body: VerifyEvidenceRequest,
    *,
    authorise: Callable[[App], None],
) -> VerifyEvidenceResponse:
    """Appraise a quote against an app's policy and explain every check; issue nothing.

    Args:
        ctx: The service context.
        att: The attestation runtime.
        body: The evidence and the app (with ``nonce`` and ``csr``, the binding and the
            requested names are checked too).
        authorise: Raises unless the caller may read the app (called once it is resolved).

    Raises:
        NotFoundError: Unknown app.
        PermissionDeniedError: The caller may not read the app.
        EvidenceError: The quote does not verify (``quote.*``, ``pck.*``, ``tcb.*``...) or
            simulated evidence the settings do not trust (``attest.simulated_not_allowed``).
        UnavailableError: Collateral could not be obtained.
    """
    app = resolve_app(ctx.session, body.app)
    authorise(app)
    account = ctx.session.get(Account, app.account_id)
    if account is None:  # pragma: no cover (foreign key)
        raise AttestationRefusedError("the app's account is gone", code="attest.app_unknown")
    policy = app_policy(app)
    try:
        verified = verify_for_account(
            att,
            account,
            body.quote,
            body.collateral,
            now=ctx.now,
            allow_expired_collateral=policy.unsafe_allow_expired_collateral,
            min_tcb_evaluation_data_number=policy.min_tcb_evaluation_data_number,
        )
    except SanctumError as error:
        att.metrics.count("verify-evidence", "refused", error.code)
        raise
    appraisal = _appraise(ctx, app, policy, verified)
    extra: list[Check] = []
    csr = None
    if body.csr is not None:
        try:
            csr = load_csr(body.csr)
        except EvidenceError as error:
            extra.append(Check("csr.valid", "fail", error.code, error.message))
    if csr is not None and body.nonce is not None:
        try:
            check_binding(verified.report_data, body.nonce, spki_der(csr.public_key()))
            extra.append(
                Check(
                    "binding.report_data",
                    "pass",
                    "attest.binding_mismatch",
                    "the report data binds this nonce and this CSR key",
                )
            )
        except BindingError as error:
            extra.append(Check("binding.report_data", "fail", error.code, error.message))
    if csr is not None:
        extra.append(_domain_check(_requested_sans(csr), approved_domains(ctx, app.id)))
    appraisal = appraisal.with_checks(extra)
    failures = appraisal.failures
    att.metrics.count(
        "verify-evidence",
        "refused" if failures else "accepted",
        failures[0].code if failures else "ok",
    )
    return VerifyEvidenceResponse.model_validate(
        {**appraisal.to_dict(), "verified": verified.to_dict()}
    )
