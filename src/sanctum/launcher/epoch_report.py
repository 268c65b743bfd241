"""Report the encrypted directories' epochs (and finished rotations) to the manager (ADR 0116).

Once the directories are mounted, the launcher signs one report per directory with the attested
workload key and sends it, with the certificate the manager just issued, to
``POST /v1/workloads/encrypted-dirs/report``: ``rotated`` first when a key rotation is complete
(so the manager retires the older keys), then ``mounted`` with the epoch the index reached. The
manager raises the directory's rollback floor to that epoch; the next start refuses any older
copy of the directory.

A failed report does not stop the app (the manager was reachable a moment ago; the data is
already safe): the launcher logs an audit-worthy warning and the floor stays where it was. The
reporter's next round (or the next start) carries an epoch at least as high, so the floor
catches up.

While the app runs, a forked *epoch reporter* (:func:`start_epoch_reporter`) keeps the floor
close behind the directory: every ``interval`` seconds it reads each directory's index epoch
from the host (through a descriptor opened before the mount, so the FUSE view over the path
does not hide it; the index is authenticated, so the host can only show an epoch that was
really reached) and reports it when it grew, resending a finished rotation (``rotated``) until
the manager acknowledges it and counting an epoch as reported only once acknowledged. Where it
outlives the app it also waits for the final commit (the index marked clean) and reports a last
time; in a container it does not (the app, or the launcher in the tmpfs fallback, is the PID
namespace's init or the only child of ``catatonit``/``tini``, and its exit kills the reporter),
so the floor lags by up to one interval and the next start closes the gap (ADR 0116). A
rollback is then detectable to within one interval, not one start. :func:`build_reports` and
:func:`watch_epochs` are pure of I/O but for their callables; :func:`send_reports` posts
through a ``post`` callable.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import ValidationError

from sanctum.errors import SanctumError
from sanctum.launcher.encrypted import OpenedDirectory, read_epoch
from sanctum.launcher.manager_link import ManagerLink
from sanctum.protocol.dir_reports import DirReport, DirReportAnswer, sign_dir_report
from sanctum.protocol.messages import DirectoryKey

__all__ = [
    "REPORT_INTERVAL",
    "REPORT_PATH",
    "Poster",
    "Watched",
    "build_reports",
    "link_poster",
    "read_epoch",
    "report_opened",
    "send_reports",
    "start_epoch_reporter",
    "watch_epochs",
]

#: Seconds between the epoch reporter's checks.
REPORT_INTERVAL: Final = 60.0
#: Seconds the reporter waits, after the app exited, for the directories' final commit.
SETTLE_SECONDS: Final = 30.0
_GROUP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

#: The manager's route for workload reports.
REPORT_PATH = "/v1/workloads/encrypted-dirs/report"

#: Sends a JSON body to a path of the manager and returns the answer's body.
Poster = Callable[[str, dict[str, Any]], bytes]

_log = logging.getLogger(__name__)


def build_reports(opened: Iterable[OpenedDirectory], *, now: dt.datetime) -> list[DirReport]:
    """Return the reports to send for ``opened`` (FUSE and tmpfs; Gramine tracks no epoch).

    A directory whose rotation is complete gets a ``rotated`` report (the epoch right after it)
    before its ``mounted`` report.
    """
    reports: list[DirReport] = []
    for item in opened:
        if item.mode not in {"fuse", "tmpfs"} or item.epoch <= 0 or not item.tracked:
            continue
        if item.rotated:
            reports.append(
                DirReport(
                    event="rotated",
                    path=item.path,
                    version=item.version,
                    epoch=item.rotated_epoch or item.epoch - 1,
                    issued_at=now,
                )
            )
        reports.append(
            DirReport(
                event="mounted",
                path=item.path,
                version=item.version,
                epoch=item.epoch,
                issued_at=now,
            )
        )
    return reports


def link_poster(link: ManagerLink) -> Poster:
    """Return a :data:`Poster` over the launcher's pinned link to the manager."""

    def post(path: str, body: dict[str, Any]) -> bytes:
        # The link's POST maps transport failures and problem documents to typed errors.
        return bytes(link.post(path, body).content)

    return post


def send_reports(
    post: Poster,
    private_key: PrivateKeyTypes,
    certificate_pem: str,
    reports: Iterable[DirReport],
    *,
    log: Callable[[str], None],
) -> list[DirReportAnswer]:
    """Sign and send ``reports``; return the manager's answers (failures are logged, not raised).

    Args:
        post: Sends one body to the manager.
        private_key: The attested workload key.
        certificate_pem: The certificate the manager issued for it.
        reports: What to report, in order.
        log: Writes one launcher log line.

    Returns:
        The answers of the reports the manager accepted.
    """
    answers: list[DirReportAnswer] = []
    for report in reports:
        try:
            signed = sign_dir_report(private_key, certificate_pem, report)
            body = post(REPORT_PATH, signed.model_dump(mode="json"))
            answer = DirReportAnswer.model_validate_json(body)
        except (SanctumError, ValidationError) as error:
            code = getattr(error, "code", "dir_report.answer_invalid")
            _log.warning(
                "could not report encrypted directory %s (%s, epoch %d) to the manager: %s",
                report.path,
                report.event,
                report.epoch,
                error,
                extra={"event": "encfs.report_failed", "audit": True, "code": code},
            )
            log(
                f"encrypted directory {report.path}: {report.event} report failed ({code}); "
                "the rollback floor is not raised until the next start"
            )
            continue
        answers.append(answer)
        retired = f", key versions {answer.retired} retired" if answer.retired else ""
        log(
            f"encrypted directory {report.path}: {report.event} reported, rollback floor "
            f"{answer.min_epoch}{retired}"
        )
    return answers


def report_opened(
    connect: Callable[[], ManagerLink],
    private_key: PrivateKeyTypes,
    certificate_pem: str,
    opened: Iterable[OpenedDirectory],
    *,
    now: dt.datetime,
    log: Callable[[str], None],
) -> list[DirReportAnswer]:
    """Report every opened directory over a fresh link (failures are logged, not raised).

    Args:
        connect: Opens the pinned link to the manager.
        private_key: The attested workload key.
        certificate_pem: The certificate the manager issued for it.
        opened: The directories the launcher opened.
        now: The signing time.
        log: Writes one launcher log line.

    Returns:
        The answers of the reports the manager accepted.
    """
    reports = build_reports(opened, now=now)
    if not reports:
        return []
    try:
        link = connect()
    except SanctumError as error:
        _log.warning(
            "cannot reach the manager to report the encrypted directories: %s",
            error,
            extra={"event": "encfs.report_failed", "audit": True, "code": error.code},
        )
        log(f"encrypted directories: reports not sent ({error.code})")
        return []
    try:
        return send_reports(link_poster(link), private_key, certificate_pem, reports, log=log)
    finally:
        link.close()


@dataclass(frozen=True, slots=True)
class Watched:
    """One directory the epoch reporter follows.

    Attributes:
        path: The directory inside the image.
        version: The key version it is under.
        dir_fd: A descriptor of the host directory (opened before any mount over it).
        key: Its 32-byte key.
        reported: The epoch already reported.
        rotated_epoch: The epoch of a finished rotation to report (``rotated``) until the
            manager acknowledges it; 0: none.
    """

    path: str
    version: int
    dir_fd: int
    key: bytes = field(repr=False)
    reported: int
    rotated_epoch: int = 0


def watch_epochs(
    watched: Sequence[Watched],
    send: Callable[[list[DirReport]], Sequence[DirReportAnswer]],
    *,
    parent: int,
    interval: float,
    settle: float = SETTLE_SECONDS,
    poll: float = 0.5,
    parent_pid: Callable[[], int] = os.getppid,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> dict[str, int]:
    """Report each directory's epoch when it grew, every ``interval``, and after ``parent`` exits.

    ``send`` returns the manager's answers to the reports it could deliver: an epoch counts as
    reported only once acknowledged (a failed send is retried at the next round), and a
    finished rotation is reported (``rotated``) at every round until acknowledged, so a
    dropped report cannot keep the older keys released.

    After the parent (the app) is gone, waits up to ``settle`` seconds for every index to be
    marked clean (the final commit of the FUSE server or keeper), then reports a last time.
    Unreadable directories are logged and skipped (the next round tries again).

    Returns:
        The epoch last sent per directory.
    """
    reported = {item.path: item.reported for item in watched}
    pending = {item.path: item for item in watched if item.rotated_epoch > 0}

    def current() -> dict[str, tuple[int, bool]]:
        found: dict[str, tuple[int, bool]] = {}
        for item in watched:
            try:
                found[item.path] = read_epoch(item.dir_fd, item.key)
            except SanctumError as error:
                _log.warning("cannot read the epoch of %s: %s", item.path, error)
        return found

    def report(found: Mapping[str, tuple[int, bool]]) -> None:
        stamp = now()
        if pending:
            rotations = [
                DirReport(
                    event="rotated",
                    path=item.path,
                    version=item.version,
                    epoch=item.rotated_epoch,
                    issued_at=stamp,
                )
                for item in pending.values()
            ]
            for answer in send(rotations):
                pending.pop(answer.path, None)
        due = [
            DirReport(
                event="mounted", path=item.path, version=item.version, epoch=epoch, issued_at=stamp
            )
            for item in watched
            if item.path in found and (epoch := found[item.path][0]) > reported[item.path]
        ]
        if due:
            sent = {entry.path: entry.epoch for entry in due}
            for answer in send(due):
                if answer.path in sent:
                    reported[answer.path] = max(reported[answer.path], sent[answer.path])

    deadline = clock() + interval
    while parent_pid() == parent:
        sleep(poll)
        if clock() >= deadline:
            report(current())
            deadline = clock() + interval
    end = clock() + settle
    found = current()
    while clock() < end and not all(clean for _epoch, clean in found.values()):
        sleep(poll)
        found = current()
    report(found)
    return reported


def start_epoch_reporter(
    connect: Callable[[], ManagerLink],
    private_key: PrivateKeyTypes,
    certificate_pem: str,
    opened: Iterable[OpenedDirectory],
    keys: Mapping[str, DirectoryKey],
    *,
    interval: float = REPORT_INTERVAL,
) -> int | None:
    """Fork the epoch reporter for the opened FUSE and tmpfs directories; return its pid.

    Returns ``None`` when no directory has an epoch to follow (Gramine, or none opened).
    """
    watched = [
        Watched(
            path=item.path,
            version=item.version,
            dir_fd=item.host_fd,
            key=keys[item.path].key,
            reported=item.epoch,
            # Sent at start too; repeated until acknowledged (the manager's retirement of the
            # older keys is idempotent).
            rotated_epoch=(item.rotated_epoch or item.epoch - 1) if item.rotated else 0,
        )
        for item in opened
        if item.host_fd is not None and item.path in keys and item.tracked
    ]
    if not watched:
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the forked reporter; tested through the launcher)
        status = 1
        try:
            for number in _GROUP_SIGNALS:
                signal.signal(number, signal.SIG_IGN)

            def send(reports: list[DirReport]) -> list[DirReportAnswer]:
                try:
                    link = connect()
                except SanctumError as error:
                    _log.warning("cannot reach the manager to report epochs: %s", error)
                    return []
                try:
                    return send_reports(
                        link_poster(link), private_key, certificate_pem, reports, log=_log.info
                    )
                finally:
                    link.close()

            watch_epochs(watched, send, parent=parent, interval=interval)
            status = 0
        finally:
            os._exit(status)
    _log.info("encrypted-directory epoch reporter started (pid %d)", pid)
    return pid
