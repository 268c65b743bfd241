"""Quote parsing throughput: sanctum.attestation.quote.parse_quote against dcap_qvl.parse_quote.

Parsing is a small part of verification (a few ECDSA checks dominate), but it runs on every quote
and must stay cheap. For each real quote this prints parses per second on one core for Sanctum
(structure only, and structure plus the PEM chain split the verifier needs) and for PyPI
dcap-qvl's Rust parser measured in the same run, with the ratio.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import dcap_qvl

from sanctum.attestation.quote import parse_quote

CASES = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "dcap" / "cases"
DEFAULT_CASES = ("sgx-v3-phala", "tdx-v4-phala", "tdx-v5-gotdxguest")


def rate(function: Callable[[], object], seconds: float) -> float:
    """Return calls per second of ``function``, best of three runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(200):
                function()
            count += 200
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--case", action="append", help="case name (repeatable)")
    args = parser.parse_args()
    print(f"{'case':<22}{'sanctum/s':>12}{'+pem/s':>12}{'dcap-qvl/s':>12}{'ratio':>8}")
    for case in args.case or DEFAULT_CASES:
        data = (CASES / f"{case}.quote.bin").read_bytes()

        def ours(data: bytes = data) -> object:
            return parse_quote(data)

        def ours_with_chain(data: bytes = data) -> object:
            return parse_quote(data).signature.qe.certification.pck_chain_pem()

        def theirs(data: bytes = data) -> object:
            return dcap_qvl.parse_quote(data)

        a = rate(ours, args.seconds)
        b = rate(ours_with_chain, args.seconds)
        c = rate(theirs, args.seconds)
        print(f"{case:<22}{a:>12,.0f}{b:>12,.0f}{c:>12,.0f}{a / c:>8.2f}")


if __name__ == "__main__":
    main()
