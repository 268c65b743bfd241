"""The attestation's unit of work on a Core connection (ADR 0120).

Caches are filled only from committed state (the account CA, its PEM chain), a cached secret
value still needs its data key, the source's collateral is fetched before the transaction
(outside the SQLite writer lock), and a fetch failure is refused exactly where it used to be:
the nonce stays used and the refusal is audited. Both the ASGI lane and the FastAPI route
(reached with a JSON body whose media type is not ``application/json``) are covered.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from attest_helpers import Kit, Workload, simulation_pki, simulation_settings
from sqlalchemy import delete, select, update

from sanctum.errors import UnavailableError
from sanctum.manager import secretbox
from sanctum.manager.models import DataKey
from sanctum.manager.models_attestation import AccountCaRecord, App, AppSecret
from sanctum.manager.services import attestation
from sanctum.manager.services.certificates import CaCache
from sanctum.protocol.messages import AttestResponse


@pytest.fixture
def kit(harness_factory, tmp_path) -> Kit:
    pki = simulation_pki(tmp_path)
    return Kit(harness_factory(**simulation_settings(tmp_path)), pki)


@pytest.fixture
def bank(kit):
    kit.create_app("bank")
    platform = kit.platform("bank")
    build = kit.register_build("bank", platform)
    return platform, build


def _post(kit: Kit, request: dict, *, route: bool) -> object:
    if not route:
        return kit.client.post("/v1/attest", json=request)
    # A JSON media type other than application/json: the lane passes it on to the route.
    return kit.client.post(
        "/v1/attest",
        content=json.dumps(request).encode(),
        headers={"content-type": "application/x-sanctum-test+json"},
    )


def _account_id(kit: Kit) -> str:
    with kit.harness.runtime.db.transaction() as session:
        return session.scalars(select(App.account_id).where(App.name == "bank")).one()


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_a_ca_created_by_a_refused_attestation_is_never_cached(kit, bank, route, caplog):
    platform, _ = bank
    att = kit.harness.app.state.attestation
    account_id = _account_id(kit)
    db = kit.harness.runtime.db
    with db.transaction() as session:
        # The account has no CA yet, and the app's secret no longer opens: the attestation
        # creates the CA (inside its savepoint), then is refused, which rolls the CA back.
        session.execute(delete(AccountCaRecord).where(AccountCaRecord.account_id == account_id))
        session.execute(update(AppSecret).values(sealed_value=b"S1" + b"0" * 36 + b"x" * 40))
    att.ca_cache = CaCache()
    att.secret_values.clear()
    nonce = kit.challenge()
    with caplog.at_level(logging.INFO, logger="sanctum.audit"):
        refused = _post(kit, Workload.make(platform).request("bank", nonce), route=route)
    assert refused.status_code == 422, refused.text
    # Only the refusal is audited and logged: the CA's creation was rolled back with it.
    logged = [r.audit["action"] for r in caplog.records if r.name == "sanctum.audit"]
    assert logged == ["attestation.refused"]
    assert kit.audit_actions("certificate.ca_created") == []
    assert refused.json()["code"] in {"secret.key_missing", "secret.corrupt"}
    with db.transaction() as session:
        assert session.get(AccountCaRecord, account_id) is None
    # The rolled-back CA is nowhere in this process: neither the CA nor its chain.
    assert att.ca_cache.get(account_id) is None
    assert account_id not in att.ca_pem_cache


def test_a_ca_is_cached_once_its_record_is_committed(kit, bank):
    platform, _ = bank
    att = kit.harness.app.state.attestation
    account_id = _account_id(kit)
    with kit.harness.runtime.db.transaction() as session:
        session.execute(delete(AccountCaRecord).where(AccountCaRecord.account_id == account_id))
    att.ca_cache = CaCache()
    first = kit.attest(Workload.make(platform), "bank")
    assert first.status_code == 200, first.text
    # Created by that attestation: cached only by the next one, which reads it committed.
    assert att.ca_cache.get(account_id) is None
    second = kit.attest(Workload.make(platform), "bank")
    assert second.status_code == 200, second.text
    assert att.ca_cache.get(account_id) is not None
    with kit.harness.runtime.db.transaction() as session:
        record = session.get(AccountCaRecord, account_id)
        assert record is not None
        root = record.root_certificate_pem
    for response in (first, second):
        assert AttestResponse.model_validate_json(response.text).ca == root


def test_the_sealed_value_layout_matches_the_secret_box():
    # The cached-secret check reads the data key id where the secret box writes it.
    assert secretbox._MAGIC == attestation._SEALED_MAGIC
    assert secretbox._ID_LEN == attestation._SEALED_KEY_ID_LEN


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_a_cached_secret_is_withdrawn_with_its_data_key(kit, bank, route):
    platform, _ = bank
    att = kit.harness.app.state.attestation
    assert kit.attest(Workload.make(platform), "bank").status_code == 200
    assert att.secret_values  # Cached by the first attestation.
    with kit.harness.runtime.db.transaction() as session:
        session.execute(delete(DataKey))
    nonce = kit.challenge()
    refused = _post(kit, Workload.make(platform).request("bank", nonce), route=route)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "secret.key_missing"
    assert "sealed_secrets" not in refused.json()


class _Source:
    """A collateral source that records whether the SQLite writer lock was held when asked."""

    def __init__(self, kit: Kit, platform, error: Exception | None = None) -> None:
        self.db = kit.harness.runtime.db
        self.platform = platform
        self.error = error
        self.locked: list[bool] = []

    def for_quote(self, _quote, *, now):
        self.locked.append(self.db.writer_busy)
        if self.error is not None:
            raise self.error
        return self.platform.collateral(now=now)


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_collateral_is_fetched_outside_the_transaction(kit, bank, route):
    platform, _ = bank
    att = kit.harness.app.state.attestation
    source = _Source(kit, platform)
    att.collateral_source = source
    try:
        workload = Workload.make(platform)
        request = workload.request("bank", kit.challenge())
        # Collateral that does not chain to a known root: the manager's source is asked.
        request["collateral"]["tcb_info_issuer_chain"] = "not a certificate chain"
        response = _post(kit, request, route=route)
        assert response.status_code == 200, response.text
        assert source.locked == [False]
    finally:
        att.collateral_source = None


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_nothing_is_fetched_for_an_attempt_that_will_be_refused_first(kit, bank, route):
    # A fetch is a PCS round trip chosen by the (unverified) quote: as when it happened inside
    # the attestation, only an attempt within its rate limit, for a known app, with a live
    # nonce causes one.
    platform, _ = bank
    att = kit.harness.app.state.attestation
    source = _Source(kit, platform)
    att.collateral_source = source
    limiter = att.limiter
    try:
        request = Workload.make(platform).request("bank", kit.challenge())
        request["collateral"] = None
        forged = {**request, "nonce": request["nonce"][:-4] + "AAAA"}
        assert _post(kit, forged, route=route).json()["code"] == "attest.nonce_invalid"
        unknown = {**request, "app": "no-such-app"}
        assert _post(kit, unknown, route=route).json()["code"] == "attest.app_unknown"
        assert source.locked == []
        att.limiter = attestation.RateLimiter(0.001, 1)
        att.limiter.take("testclient", kit.harness.runtime.clock.now())  # The bucket is empty.
        for _ in range(5):
            refused = _post(kit, request, route=route)
            assert refused.json()["code"] == "attest.rate_limited", refused.text
        assert source.locked == []
        att.limiter = limiter
        accepted = _post(kit, request, route=route)  # The nonce is still live: one fetch.
        assert accepted.status_code == 200, accepted.text
        assert source.locked == [False]
    finally:
        att.collateral_source = None
        att.limiter = limiter


def test_the_writer_lock_is_seen_while_a_transaction_holds_it(kit):
    db = kit.harness.runtime.db
    assert not db.writer_busy
    with db.connection():
        # SQLite serialises a process's transactions with the lock; PostgreSQL has none.
        assert db.writer_busy is (db.backend == "sqlite")
    assert not db.writer_busy


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_a_failed_fetch_is_refused_where_it_was_and_spends_the_nonce(kit, bank, route, caplog):
    platform, _ = bank
    att = kit.harness.app.state.attestation
    att.collateral_source = _Source(
        kit, platform, UnavailableError("the PCS did not answer", code="collateral.unavailable")
    )
    try:
        request = Workload.make(platform).request("bank", kit.challenge())
        request["collateral"] = None
        with caplog.at_level(logging.INFO, logger="sanctum.audit"):
            refused = _post(kit, request, route=route)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "collateral.unavailable"
        entries = kit.audit_actions("attestation.refused")
        assert entries[-1].details["code"] == "collateral.unavailable"
        assert entries[-1].outcome == "failure"
        # The refusal's audit line is logged once its transaction committed.
        logged = [r for r in caplog.records if r.name == "sanctum.audit"]
        assert logged[-1].audit["id"] == entries[-1].id
        # The nonce was spent by the refused attempt: a retry needs a new challenge.
        again = _post(kit, request, route=route)
        assert again.json()["code"] == "attest.nonce_invalid"
        assert again.json()["details"]["reason"] == "replayed"
    finally:
        att.collateral_source = None


def test_an_accepted_attestation_commits_and_logs_its_audit_entries(kit, bank, caplog):
    platform, _ = bank
    with caplog.at_level(logging.INFO, logger="sanctum.audit"):
        response = kit.attest(Workload.make(platform), "bank", instance="pod-1")
    assert response.status_code == 200, response.text
    # The account's CA is created by its first attestation: both entries, in chain order.
    created = kit.audit_actions("certificate.ca_created")
    accepted = kit.audit_actions("attestation.accepted")
    logged = [r.audit for r in caplog.records if r.name == "sanctum.audit"]
    assert [line["id"] for line in logged] == [created[-1].id, accepted[-1].id]
    assert [line["entry_hash"] for line in logged] == [
        created[-1].entry_hash,
        accepted[-1].entry_hash,
    ]
    assert accepted[-1].request_id == response.headers["x-request-id"]


@pytest.mark.parametrize("route", [False, True], ids=["lane", "route"])
def test_audit_lines_are_logged_while_the_unit_still_holds_the_database(kit, bank, route):
    # On SQLite the writer lock is released when the connection goes back to the pool: lines
    # logged before that come out in the chain's order, whichever thread ran each unit.
    platform, _ = bank
    db = kit.harness.runtime.db
    held: list[bool] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "sanctum.audit":
                held.append(db.writer_busy)

    probe = Probe(logging.INFO)
    audit_log = logging.getLogger("sanctum.audit")
    audit_log.addHandler(probe)
    level = audit_log.level
    audit_log.setLevel(logging.INFO)
    try:
        request = Workload.make(platform).request("bank", kit.challenge())
        assert _post(kit, request, route=route).status_code == 200
    finally:
        audit_log.removeHandler(probe)
        audit_log.setLevel(level)
    assert held
    assert all(busy is (db.backend == "sqlite") for busy in held)


def test_an_attestation_waits_in_a_worker_while_another_transaction_runs(kit, bank):
    platform, _ = bank
    db = kit.harness.runtime.db
    nonce = kit.challenge()
    held, release = threading.Event(), threading.Event()

    def holder():
        with db.connection():
            held.set()
            release.wait(20)

    worker = threading.Thread(target=holder, daemon=True)
    worker.start()
    assert held.wait(20)
    answer: dict = {}

    def attest():
        answer["response"] = kit.client.post(
            "/v1/attest", json=Workload.make(platform).request("bank", nonce)
        )

    client = threading.Thread(target=attest, daemon=True)
    client.start()
    # The event loop did not block on the busy database: it still answers other requests.
    assert kit.client.get("/healthz").status_code == 200
    if db.backend == "sqlite":
        assert "response" not in answer  # Waiting in the serial worker for the writer lock.
    release.set()
    worker.join(20)
    client.join(20)
    assert answer["response"].status_code == 200, answer["response"].text


def test_the_loop_waits_for_a_short_transaction_rather_than_use_the_worker(kit, bank, monkeypatch):
    # Once work went to the worker, later attestations found the lock held by it and followed:
    # the loop now waits for the other transaction's release and runs the attestation itself.
    platform, _ = bank
    db = kit.harness.runtime.db
    nonce = kit.challenge()
    held, release, tried = threading.Event(), threading.Event(), threading.Event()
    threads: list[str] = []
    real_unit = attestation.attest_unit

    def unit(*args, **kwargs):
        outcome = real_unit(*args, **kwargs)
        if outcome is None:
            tried.set()  # The loop found the database busy.
        else:
            threads.append(threading.current_thread().name)
        return outcome

    monkeypatch.setattr(attestation, "attest_unit", unit)
    if db.backend != "sqlite":
        # PostgreSQL: always on the thread pool (its transactions wait on the network).
        response = kit.client.post(
            "/v1/attest", json=Workload.make(platform).request("bank", nonce)
        )
        assert response.status_code == 200, response.text
        assert threads[0].startswith("sanctum-attest")
        return

    def holder():
        with db.connection():
            held.set()
            release.wait(20)

    worker = threading.Thread(target=holder, daemon=True)
    worker.start()
    assert held.wait(20)
    answer: dict = {}

    def attest():
        answer["response"] = kit.client.post(
            "/v1/attest", json=Workload.make(platform).request("bank", nonce)
        )

    client = threading.Thread(target=attest, daemon=True)
    client.start()
    assert tried.wait(20)
    release.set()
    worker.join(20)
    client.join(20)
    assert answer["response"].status_code == 200, answer["response"].text
    assert len(threads) == 1
    assert not threads[0].startswith("sanctum-attest")  # The event loop's thread.
