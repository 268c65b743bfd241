"""Where the manager's per-attestation crypto time goes: the pure building blocks of /v1/attest.

The issue's goal is >= 300 complete attestations per second (p99 < 50 ms) on one manager process
with 2 cores, i.e. about 6.7 ms of CPU per attestation (3.3 ms of wall time) in total. This
measures, in one run and on this machine, each pure step the endpoint performs after quote
verification:

- CSR parse + self-signature check (ECDSA P-256 and RSA-2048 CSRs);
- report-data binding check;
- policy hash (canonical JSON + SHA-256);
- workload certificate issuance (with the attestation extension);
- sealing one secret (HPKE P-256; RSA-OAEP for RSA keys);
- signing the EAR token (ES256);
- building and serialising the response.

The baseline is one bare ECDSA P-256 signature (the unavoidable cost of issuing anything), and
each step is printed as a multiple of it. The last line adds the manager's steps up against
that budget. The workload's own costs (opening the boxes) are printed for the launcher.

    .venv/bin/python benchmarks/bench_attest_blocks.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.manager.ca import (
    AttestationClaims,
    create_account_ca,
    issue_workload_certificate,
    load_csr,
)
from sanctum.manager.policy import AttestationPolicy
from sanctum.manager.tokens import SigningKey, SigningKeySet, TrustVector, WorkloadResult, issue_ear
from sanctum.protocol.binding import check_binding, spki_der
from sanctum.protocol.messages import AttestResponse, SealedBoxWire, SealedSecret, SealingContext
from sanctum.protocol.sealing import open_sealed, seal, sealing_info, secret_aad
from sanctum.protocol.workload import build_csr, generate_workload_key, workload_report_data

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
NONCE = bytes(range(32))


def _time(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Return (median, p99) seconds of ``fn`` over ``rounds`` calls after a warm-up."""
    for _ in range(min(20, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds

    ca = create_account_ca("bench", now=NOW)
    ec_key = generate_workload_key("ec-p256")
    rsa_key = generate_workload_key("rsa-2048")
    ec_csr = build_csr(ec_key, common_name="bank.demo.local", sans=["bank.demo.local"])
    rsa_csr = build_csr(rsa_key, common_name="bank.demo.local", sans=["bank.demo.local"])
    parsed = load_csr(ec_csr)
    report_data = workload_report_data(NONCE, ec_key)
    claims = AttestationClaims(
        tee="sgx",
        measurement=b"\x01" * 32,
        signer=b"\x02" * 32,
        isvprodid=1,
        isvsvn=1,
        tcb_status="UpToDate",
    )
    info = sealing_info(manager_id="m", app="bank", build="b", nonce=NONCE)
    aad = secret_aad(name="DB_PASSWORD", delivery="env", target="DB_PASSWORD")
    keys = SigningKeySet(SigningKey.generate())
    policy = AttestationPolicy(isvprodid=1)
    result = WorkloadResult(
        tee="sgx",
        measurements={"mrenclave": "01" * 32, "mrsigner": "02" * 32},
        isvprodid=1,
        isvsvn=1,
        debug=False,
        tcb_status="UpToDate",
        advisory_ids=(),
        qe_status="UpToDate",
        tcb_date=NOW,
        collateral_earliest_expiration=NOW + timedelta(days=30),
        collateral_latest_issue=NOW,
        simulated=False,
        app="bank",
        build="b",
        policy_hash=policy.policy_hash(),
        vector=TrustVector(instance_identity=2, hardware=2),
    )
    baseline_key = ec.generate_private_key(ec.SECP256R1())
    ec_box = seal(ec_key.public_key(), b"hunter2", info=info, aad=aad)
    rsa_box = seal(rsa_key.public_key(), b"hunter2", info=info, aad=aad)
    cert = issue_workload_certificate(
        ca,
        parsed,
        subject="bank.demo.local",
        sans=["bank.demo.local"],
        validity=timedelta(days=1),
        serial=1,
        attestation=claims,
        now=NOW,
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    secret = SealedSecret(
        name="DB_PASSWORD",
        delivery="env",
        env_name="DB_PASSWORD",
        box=SealedBoxWire.from_box(ec_box),
    )
    context = SealingContext(manager_id="m", app="bank", build="b", nonce=NONCE)

    def response() -> str:
        return AttestResponse(
            certificate=cert_pem,
            chain=ca.chain_pem(),
            ca=ca.root_pem(),
            sealing=context,
            sealed_secrets=[secret],
            token="t",
            expires_at=NOW,
        ).model_dump_json()

    steps: list[tuple[str, Callable[[], object], bool]] = [
        (
            "baseline: one ECDSA P-256 sign",
            lambda: baseline_key.sign(b"x", ec.ECDSA(hashes.SHA256())),
            False,
        ),
        ("CSR parse + signature (P-256)", lambda: load_csr(ec_csr), True),
        ("CSR parse + signature (RSA-2048)", lambda: load_csr(rsa_csr), False),
        (
            "binding check",
            lambda: check_binding(report_data, NONCE, spki_der(parsed.public_key())),
            True,
        ),
        ("policy hash", policy.policy_hash, True),
        (
            "issue workload certificate",
            lambda: issue_workload_certificate(
                ca,
                parsed,
                subject="bank.demo.local",
                sans=["bank.demo.local"],
                validity=timedelta(days=1),
                serial=1,
                attestation=claims,
                now=NOW,
            ),
            True,
        ),
        (
            "seal one secret (HPKE P-256)",
            lambda: seal(ec_key.public_key(), b"hunter2", info=info, aad=aad),
            True,
        ),
        (
            "seal one secret (RSA-OAEP 2048)",
            lambda: seal(rsa_key.public_key(), b"hunter2", info=info, aad=aad),
            False,
        ),
        (
            "sign EAR token (ES256)",
            lambda: issue_ear(
                keys, result, issuer="m", now=NOW, ttl=timedelta(minutes=5), token_id="t"
            ),
            True,
        ),
        ("build + serialise response", response, True),
        (
            "workload: open secret (HPKE P-256)",
            lambda: open_sealed(ec_key, ec_box, info=info, aad=aad),
            False,
        ),
        (
            "workload: open secret (RSA-OAEP 2048)",
            lambda: open_sealed(rsa_key, rsa_box, info=info, aad=aad),
            False,
        ),
    ]
    baseline = None
    total = 0.0
    print(f"{'step':40s} {'median ms':>10s} {'p99 ms':>8s} {'x baseline':>11s}")
    for name, fn, counted in steps:
        median, p99 = _time(fn, rounds)
        baseline = baseline or median
        if counted:
            total += median
        print(f"{name:40s} {median * 1e3:10.3f} {p99 * 1e3:8.3f} {median / baseline:11.1f}")
    print(
        "\nmanager-side pure steps for one P-256 attestation with one secret: "
        f"{total * 1e3:.3f} ms "
        f"(budget for 300 attestations/s on 2 cores: {2 / 300 * 1e3:.1f} ms of CPU; "
        f"these steps use {total / (2 / 300) * 100:.0f}% of it)"
    )


if __name__ == "__main__":
    main()
