"""The launcher's rollback check, pending rotation and reports (no FUSE needed here).

The full path (real launcher, manager over HTTPS, FUSE) is in ``test_encrypted_dirs_e2e.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sanctum.encfs import EncfsIntegrityError, EncryptedDirectory, WrongKeyError
from sanctum.launcher.encrypted import OpenedDirectory, check_and_rotate
from sanctum.launcher.epoch_report import (
    REPORT_PATH,
    Watched,
    build_reports,
    read_epoch,
    send_reports,
    watch_epochs,
)
from sanctum.launcher.errors import ManagerUnavailableError
from sanctum.protocol.dir_reports import (
    DirReport,
    DirReportAnswer,
    SignedDirReport,
    verify_dir_report_signature,
)
from sanctum.protocol.messages import DirectoryKey, PreviousDirKey

OLD = bytes(range(32))
NEW = bytes(range(1, 33))
NOW = dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC)


def _fill(host: Path, key: bytes = OLD) -> int:
    with EncryptedDirectory.open(host, key, create=True, durable=False) as ed:
        ed.write_file("note", b"kept")
    with EncryptedDirectory.open(host, key, writable=False) as ed:
        return ed.epoch


def _key(key: bytes = OLD, *, floor: int = 0, previous: tuple[PreviousDirKey, ...] = ()) -> Any:
    return DirectoryKey(path="/data", version=2 if previous else 1, min_epoch=floor, key=key,
                        previous=previous)  # fmt: skip


def test_the_epoch_found_is_returned_when_at_or_above_the_floor(tmp_path):
    epoch = _fill(tmp_path / "d")
    assert check_and_rotate(tmp_path / "d", _key(floor=epoch), log=print) == (epoch, 0, False)


def test_an_older_copy_than_the_floor_is_refused_with_an_audit_line(tmp_path, caplog):
    host = tmp_path / "d"
    _fill(host)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(host, snapshot)
    with EncryptedDirectory.open(host, OLD, durable=False) as ed:
        ed.write_file("note", b"newer")
    with EncryptedDirectory.open(host, OLD, writable=False) as ed:
        floor = ed.epoch
    shutil.rmtree(host)
    shutil.copytree(snapshot, host)
    with caplog.at_level(logging.ERROR), pytest.raises(EncfsIntegrityError) as raised:
        check_and_rotate(host, _key(floor=floor), log=print)
    assert raised.value.code == "encfs.rollback"
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "encfs.integrity_failure"]
    assert record.audit is True
    assert record.code == "encfs.rollback"


def test_an_emptied_directory_with_a_floor_is_a_rollback(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(EncfsIntegrityError) as raised:
        check_and_rotate(tmp_path / "d", _key(floor=3), log=print)
    assert raised.value.code == "encfs.rollback"
    assert not any((tmp_path / "d").iterdir())  # Nothing was created.
    # Without a floor (first start) an empty directory is initialised.
    assert check_and_rotate(tmp_path / "d", _key(), log=print) == (1, 0, True)


def test_a_pending_rotation_is_finished_before_the_mount(tmp_path):
    host = tmp_path / "d"
    epoch = _fill(host)
    lines: list[str] = []
    key = _key(NEW, previous=(PreviousDirKey(version=1, min_epoch=epoch, key=OLD),))
    found, rotated, fresh = check_and_rotate(host, key, log=lines.append)
    assert not fresh
    assert found == rotated > 0
    assert "re-encrypted from key version 1 to 2" in lines[0]
    with EncryptedDirectory.open(host, NEW, writable=False) as ed:
        assert ed.read_file("note") == b"kept"
    # Already under the new key (a rotation finished but not reported): nothing more to do.
    assert check_and_rotate(host, key, log=lines.append) == (found, 0, False)


def test_a_pending_rotation_still_checks_the_old_floor(tmp_path):
    host = tmp_path / "d"
    epoch = _fill(host)
    key = _key(NEW, previous=(PreviousDirKey(version=1, min_epoch=epoch + 5, key=OLD),))
    with pytest.raises(EncfsIntegrityError) as raised:
        check_and_rotate(host, key, log=print)
    assert raised.value.code == "encfs.rollback"


def test_no_released_key_opens_the_directory(tmp_path):
    host = tmp_path / "d"
    _fill(host, bytes(32))
    with pytest.raises(WrongKeyError):
        check_and_rotate(host, _key(NEW, previous=(PreviousDirKey(version=1, key=OLD),)),
                         log=print)  # fmt: skip
    with pytest.raises(WrongKeyError):
        check_and_rotate(host, _key(NEW), log=print)


def _ack(sent: list[list[tuple[str, int]]], reports: list[DirReport]) -> list[DirReportAnswer]:
    sent.append([(r.path, r.epoch) for r in reports])
    return [DirReportAnswer(path=r.path, version=r.version, min_epoch=r.epoch) for r in reports]


def test_reports_name_fuse_directories_with_their_epochs():
    opened = [
        OpenedDirectory(
            path="/data", mode="fuse", version=2, epoch=9, rotated=True, rotated_epoch=8
        ),
        OpenedDirectory(path="/db", mode="fuse", version=1, epoch=4),
        OpenedDirectory(path="/g", mode="gramine", version=1, key_name="sanctum_fs_x"),
    ]
    reports = build_reports(opened, now=NOW)
    assert [(r.event, r.path, r.version, r.epoch) for r in reports] == [
        ("rotated", "/data", 2, 8),
        ("mounted", "/data", 2, 9),
        ("mounted", "/db", 1, 4),
    ]


def test_reports_are_signed_by_the_workload_key_and_failures_do_not_stop_the_start():
    key = ec.generate_private_key(ec.SECP256R1())
    sent: list[dict[str, Any]] = []

    def post(path: str, body: dict[str, Any]) -> bytes:
        assert path == REPORT_PATH
        sent.append(body)
        if len(sent) == 1:
            raise ManagerUnavailableError("down", code="launcher.manager_unreachable")
        report = SignedDirReport.model_validate(body).report()
        answer = {"path": report.path, "version": report.version, "min_epoch": report.epoch}
        return json.dumps(answer).encode()

    reports = build_reports(
        [
            OpenedDirectory(path="/a", mode="fuse", version=1, epoch=3),
            OpenedDirectory(path="/b", mode="fuse", version=1, epoch=5),
        ],
        now=NOW,
    )
    lines: list[str] = []
    answers = send_reports(post, key, "-----CERT-----" * 8, reports, log=lines.append)
    assert [a.path for a in answers] == ["/b"]
    assert "report failed (launcher.manager_unreachable)" in lines[0]
    assert "rollback floor 5" in lines[1]
    verified = verify_dir_report_signature(
        key.public_key(), SignedDirReport.model_validate(sent[1])
    )
    assert verified.epoch == 5


def test_read_epoch_follows_the_index_without_the_lock(tmp_path):
    host = tmp_path / "d"
    _fill(host)
    fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with EncryptedDirectory.open(host, OLD, durable=False) as writer:  # Holds the lock.
            epoch, clean = read_epoch(fd, OLD)
            assert (epoch, clean) == (writer.epoch, False)
            writer.write_file("more", b"x")
            assert read_epoch(fd, OLD)[0] == writer.epoch > epoch
        assert read_epoch(fd, OLD)[1] is True
        with pytest.raises(WrongKeyError):
            read_epoch(fd, NEW)
        index = host / "index"
        index.write_bytes(index.read_bytes()[:-1] + b"\0")
        with pytest.raises(EncfsIntegrityError) as raised:
            read_epoch(fd, OLD)
        assert raised.value.code == "encfs.tampered"
    finally:
        os.close(fd)


def test_the_reporter_sends_growth_periodically_and_the_final_commit(tmp_path):
    host = tmp_path / "d"
    _fill(host)
    writer = EncryptedDirectory.open(host, OLD, durable=False)
    fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY)
    sent: list[list[tuple[str, int]]] = []
    now = [0.0]
    polls = [0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        polls[0] += 1
        if polls[0] in {3, 5}:
            writer.write_file(f"f{polls[0]}", b"data")  # The app writes; the epoch grows.
        if polls[0] == 12:
            writer.close()  # The server's final commit, after the app exited.

    try:
        final = watch_epochs(
            [Watched(path="/data", version=1, dir_fd=fd, key=OLD, reported=writer.epoch)],
            lambda reports: _ack(sent, reports),
            parent=10,
            interval=1.0,
            poll=0.5,
            parent_pid=lambda: 10 if polls[0] < 10 else 1,
            sleep=sleep,
            clock=lambda: now[0],
            now=lambda: NOW,
        )
    finally:
        os.close(fd)
    epochs = [batch[0][1] for batch in sent]
    assert epochs == sorted(set(epochs))  # Only growth is reported.
    assert len(epochs) >= 2  # At least one periodic report, then the final one.
    with EncryptedDirectory.open(host, OLD, writable=False) as reader:
        assert epochs[-1] == final["/data"] == reader.epoch  # The clean, final epoch.


def test_a_pre_rotation_copy_is_a_rollback_once_the_new_key_has_a_floor(tmp_path):
    """The host dropped the ``rotated`` report, then restored the copy from before the rotation."""
    host = tmp_path / "d"
    epoch = _fill(host)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(host, snapshot)
    pending = _key(NEW, previous=(PreviousDirKey(version=1, min_epoch=epoch, key=OLD),))
    check_and_rotate(host, pending, log=print)
    with EncryptedDirectory.open(host, NEW, durable=False) as ed:
        ed.write_file("note", b"written under version 2")
        floor = ed.epoch
    shutil.rmtree(host)
    shutil.copytree(snapshot, host)
    # The manager recorded a floor under version 2 (its ``mounted`` report got through).
    reported = _key(NEW, floor=floor, previous=pending.previous)
    with pytest.raises(EncfsIntegrityError) as raised:
        check_and_rotate(host, reported, log=print)
    assert raised.value.code == "encfs.rollback"
    with EncryptedDirectory.open(host, OLD, writable=False) as ed:  # Left alone, not rotated.
        assert ed.read_file("note") == b"kept"


def test_an_empty_directory_during_a_pending_rotation_is_never_reported(tmp_path, monkeypatch):
    """A forgotten volume must not retire the keys that still hold its data."""
    from sanctum.launcher import encrypted  # noqa: PLC0415

    monkeypatch.setattr(encrypted, "fuse_available", lambda: "no FUSE in this test")
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "sanctum/encrypted/data").mkdir(parents=True)
    key = _key(NEW, previous=(PreviousDirKey(version=1, key=OLD),))
    lines: list[str] = []
    opened = encrypted.open_encrypted_dirs(
        root,
        ("/data",),
        {"/data": key},
        gramine=False,
        owner=None,
        log=lines.append,
        fallback_interval=3600,
        memory_fs=lambda _path: True,
    )
    try:
        [item] = opened
        assert not item.rotated
        assert not item.tracked
        assert build_reports(opened, now=NOW) == []
        assert any("not reported" in line for line in lines)
    finally:
        for item in opened:
            if item.host_fd is not None:
                os.close(item.host_fd)
            if item.session is not None:
                item.session.close(sync=False)


def test_a_failed_periodic_report_is_retried_and_a_rotation_resent_until_acknowledged(tmp_path):
    host = tmp_path / "d"
    _fill(host)
    with EncryptedDirectory.open(host, OLD, writable=False) as ed:
        epoch = ed.epoch
    fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY)
    sent: list[list[tuple[str, int]]] = []
    attempts = [0]
    now = [0.0]

    def send(reports: list[DirReport]) -> list[DirReportAnswer]:
        attempts[0] += 1
        sent.append([(r.event, r.epoch) for r in reports])  # type: ignore[misc]
        if attempts[0] <= 2:
            return []  # The manager was unreachable: nothing acknowledged.
        return [DirReportAnswer(path=r.path, version=r.version, min_epoch=r.epoch) for r in reports]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    try:
        final = watch_epochs(
            [
                Watched(
                    path="/data", version=2, dir_fd=fd, key=OLD, reported=epoch - 1, rotated_epoch=1
                )
            ],
            send,
            parent=10,
            interval=1.0,
            poll=1.0,
            parent_pid=lambda: 10 if now[0] < 3.5 else 1,
            sleep=sleep,
            clock=lambda: now[0],
            now=lambda: NOW,
            settle=0.0,
        )
    finally:
        os.close(fd)
    # Round 1: both fail; round 2: the rotation is resent (and is acknowledged), the epoch too.
    assert sent[0] == [("rotated", 1)]
    assert sent[1] == [("mounted", epoch)]
    assert sent[2] == [("rotated", 1)]
    assert sent[3] == [("mounted", epoch)]
    assert all(batch[0][0] == "mounted" for batch in sent[4:])  # Not resent once acknowledged.
    assert final["/data"] == epoch
