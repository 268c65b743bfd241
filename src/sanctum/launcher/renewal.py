"""The renewal supervisor: re-attest before the certificate expires (``SANCTUM_RENEW=1``).

The launcher ``exec``s the app, so the app keeps the launcher's PID. When renewal is asked for,
the launcher first forks a small supervisor child that holds the workload key in memory (it is
the same process image, so the key never touches anything but the configured key file). The
supervisor sleeps until two thirds of the certificate's lifetime have passed, re-attests with a
fresh challenge and quote, and rewrites certificate, chain, CA and file secrets atomically. It
exits when the app (its parent) exits. A failed renewal is retried with the launcher's bounded
backoff and then again at the next wake-up, never later than the certificate's expiry.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from typing import Final

from sanctum.errors import SanctumError
from sanctum.launcher.run import RenewalContext, StepLog, certificate_not_before, renew_once

__all__ = ["next_renewal", "start_supervisor", "supervise"]

#: Fraction of the certificate's lifetime after which the supervisor renews.
RENEW_FRACTION: Final = 2 / 3
#: Longest single sleep, so the supervisor notices its parent's exit promptly.
_POLL_SECONDS: Final = 5.0
_RETRY_SECONDS: Final = 30.0


def next_renewal(issued_at: dt.datetime, expires_at: dt.datetime) -> dt.datetime:
    """Return when to renew a certificate valid from ``issued_at`` to ``expires_at``."""
    return issued_at + (expires_at - issued_at) * RENEW_FRACTION


def supervise(
    context: RenewalContext,
    *,
    log: StepLog,
    now: Callable[[], dt.datetime],
    sleep: Callable[[float], None],
    parent_alive: Callable[[], bool],
    renew: Callable[[RenewalContext], tuple[dt.datetime, dt.datetime]] | None = None,
) -> int:
    """Renew until the parent exits; return the number of successful renewals.

    Args:
        context: What renewal needs (key, CSR, source, manager).
        log: Where step lines go.
        now: The clock (UTC).
        sleep: Waits (seconds).
        parent_alive: Whether the app still runs.
        renew: Performs one renewal and returns the new (issued_at, expires_at); defaults to
            :func:`~sanctum.launcher.run.renew_once`.
    """

    def default(ctx: RenewalContext) -> tuple[dt.datetime, dt.datetime]:
        answer = renew_once(ctx, log=log)
        return certificate_not_before(answer), answer.expires_at

    perform = renew or default
    issued_at, expires_at = context.issued_at, context.expires_at
    due = next_renewal(issued_at, expires_at)
    renewals = 0
    while parent_alive():
        remaining = (due - now()).total_seconds()
        if remaining > 0:
            sleep(min(remaining, _POLL_SECONDS))
            continue
        try:
            issued_at, expires_at = perform(context)
        except (SanctumError, OSError) as error:
            log.line(f"renewal failed ({error}); retrying in {_RETRY_SECONDS:g} s")
            due = min(now() + dt.timedelta(seconds=_RETRY_SECONDS), expires_at)
            continue
        renewals += 1
        due = next_renewal(issued_at, expires_at)
        log.line(f"certificate renewed; valid until {expires_at.isoformat()}")
    return renewals


def start_supervisor(context: RenewalContext, log: StepLog) -> int:
    """Fork the supervisor; return its PID in the parent (which then execs the app).

    The child never returns: it supervises, then exits with status 0.
    """
    parent = os.getpid()
    child = os.fork()
    if child:
        return child
    try:  # pragma: no cover (runs in the forked child; covered by the subprocess test)
        supervise(
            context,
            log=log,
            now=lambda: dt.datetime.now(dt.UTC),
            sleep=time.sleep,
            parent_alive=lambda: os.getppid() == parent,
        )
    finally:  # pragma: no cover
        sys.stderr.flush()
        os._exit(0)
