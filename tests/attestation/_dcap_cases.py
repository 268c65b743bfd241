"""Shared loaders for the real DCAP vectors in tests/vectors/dcap (used by the verify tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sanctum.attestation.collateral import Collateral, load_collateral_bundle
from sanctum.attestation.trust import TrustAnchor

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
EXPECTED: dict[str, Any] = json.loads((VECTORS / "expected.json").read_text())
CASES: dict[str, dict[str, Any]] = {case["case"]: case for case in EXPECTED["cases"]}
CASE_NAMES = sorted(CASES)
ACCEPTED = sorted(
    name
    for name, case in CASES.items()
    if case["intel_qvl_logic_expected"]["status"] != "TcbNotSupported"
)
NOT_SUPPORTED = sorted(set(CASE_NAMES) - set(ACCEPTED))


def quote_bytes(name: str) -> bytes:
    return (VECTORS / CASES[name]["quote_file"]).read_bytes()


def collateral_text(name: str) -> bytes:
    return (VECTORS / CASES[name]["collateral_file"]).read_bytes()


@cache
def collateral(name: str) -> Collateral:
    return load_collateral_bundle(collateral_text(name))


def verify_time(name: str) -> datetime:
    return datetime.fromtimestamp(CASES[name]["verify_at_unix"], UTC)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@cache
def intel() -> TrustAnchor:
    return TrustAnchor.intel()
