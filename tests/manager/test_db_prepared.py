"""Prepared statements on the driver (ADR 0085, 0120): SQLAlchemy's binds, errors and invalidation.

:class:`~sanctum.manager.db.Prepared` runs SQL on the driver's cursor, but a lost connection
must be handled as SQLAlchemy would: the connection is invalidated (never handed out again by
the pool), the error says so and maps to ``database.unavailable``, and on SQLite the writer
lock is released.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator

from sanctum.errors import ConflictError, UnavailableError
from sanctum.manager.db import Database, Prepared, driver_savepoint
from sanctum.manager.models import UTCDateTime

_META = MetaData()
_ROWS = Table(
    "prepared_rows",
    _META,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True),
    Column("at", UTCDateTime()),
)
_INSERT = Prepared(insert(_ROWS), column_keys=["id", "name", "at"])
_BY_NAME = Prepared(select(_ROWS.c.id, _ROWS.c.at).where(_ROWS.c.name == bindparam("name")))
_AT = dt.datetime(2026, 3, 1, 12, 30, 15, 1234, tzinfo=dt.UTC)


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'prepared.db'}")
    _META.create_all(database.engine)
    yield database
    database.dispose()


def test_binds_and_results_are_processed_like_sqlalchemy(db):
    with db.connection() as connection:
        _INSERT.execute(connection, {"id": 1, "name": "a", "at": _AT})
        # The same row through SQLAlchemy's own statement path.
        connection.execute(insert(_ROWS).values(id=2, name="b", at=_AT))
        raw = connection.exec_driver_sql("SELECT at FROM prepared_rows ORDER BY id").all()
        assert raw[0] == raw[1]  # Stored byte for byte alike.
        assert _BY_NAME.rows(connection, {"name": "a"}) == [(1, _AT)]
        assert _BY_NAME.rows(connection, {"name": "missing"}) == []


def _insert_again(db: Database) -> None:
    with db.connection() as connection:
        _INSERT.execute(connection, {"id": 2, "name": "a", "at": _AT})


def test_a_constraint_error_is_sqlalchemys_and_maps_to_a_conflict(db):
    with db.connection() as connection:
        _INSERT.execute(connection, {"id": 1, "name": "a", "at": _AT})
        with pytest.raises(IntegrityError):  # SQLAlchemy's class, as for its own statements.
            _INSERT.execute(connection, {"id": 2, "name": "a", "at": _AT})
    with pytest.raises(ConflictError):
        _insert_again(db)


def _read_after_losing_the_connection(db: Database, seen: dict) -> None:
    with db.connection() as connection:
        seen["driver"] = connection.connection.driver_connection
        seen["driver"].close()  # The database went away under the connection.
        try:
            _BY_NAME.rows(connection, {"name": "a"})
        finally:
            seen["invalidated"] = connection.invalidated


def test_a_lost_connection_is_invalidated_and_never_reused(db):
    seen: dict = {}
    with pytest.raises(UnavailableError) as raised:
        _read_after_losing_the_connection(db, seen)
    assert raised.value.code == "database.unavailable"
    assert getattr(raised.value.__cause__, "connection_invalidated", False)
    assert seen["invalidated"]
    # The writer lock was released and the pool hands out a live connection.
    assert not db.writer_busy
    done = threading.Event()

    def again():
        with db.connection() as connection:
            assert connection.connection.driver_connection is not seen["driver"]
            _INSERT.execute(connection, {"id": 1, "name": "a", "at": _AT})
        done.set()

    worker = threading.Thread(target=again, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done.is_set(), "the next transaction could not start"


def _refused_in_savepoint(connection) -> None:
    with driver_savepoint(connection, "sanctum_test"):
        _INSERT.execute(connection, {"id": 2, "name": "dropped", "at": _AT})
        raise ValueError


def test_a_driver_savepoint_rolls_back_only_its_block(db):
    with db.connection() as connection:
        _INSERT.execute(connection, {"id": 1, "name": "kept", "at": _AT})
        with pytest.raises(ValueError):
            _refused_in_savepoint(connection)
        with driver_savepoint(connection, "sanctum_test"):
            _INSERT.execute(connection, {"id": 3, "name": "released", "at": _AT})
    with db.connection() as connection:
        names = connection.exec_driver_sql("SELECT name FROM prepared_rows ORDER BY id").all()
    assert [name for (name,) in names] == ["kept", "released"]


@pytest.mark.parametrize(
    "dialect", [sqlite.dialect(), psycopg.dialect()], ids=["sqlite", "postgresql"]
)
@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis takes naive bounds)
        max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from(
            [
                dt.UTC,
                dt.timezone(dt.timedelta(hours=5, minutes=30)),
                dt.timezone(-dt.timedelta(hours=8)),
            ]
        ),
    )
)
def test_timestamps_bind_exactly_as_sqlalchemy_composes_them(dialect, moment):
    column_type = UTCDateTime().dialect_impl(dialect)  # As SQLAlchemy adapts it.
    ours = column_type.bind_processor(dialect)
    # SQLAlchemy's own composition: process_bind_param, then the dialect type's processor.
    generic = TypeDecorator.bind_processor(column_type, dialect)
    assert generic is not None
    expected = generic(moment)
    assert ours is not None
    assert ours(moment) == expected
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(moment.replace(tzinfo=None))


def test_connection_if_free_never_waits_for_the_writer_lock(db):
    held = threading.Event()
    release = threading.Event()

    def holder():
        with db.connection():
            held.set()
            release.wait(20)

    worker = threading.Thread(target=holder, daemon=True)
    worker.start()
    assert held.wait(20)
    try:
        with db.connection_if_free() as connection:
            assert connection is None  # Busy: the caller goes elsewhere, nothing waited.
    finally:
        release.set()
        worker.join(20)
    with db.connection_if_free() as connection:
        assert connection is not None
        assert db.writer_busy
        _INSERT.execute(connection, {"id": 1, "name": "a", "at": _AT})
    assert not db.writer_busy  # Released at check-in, as for any transaction.
    with db.connection() as connection:
        assert _BY_NAME.rows(connection, {"name": "a"}) == [(1, _AT)]


def test_connection_if_free_gives_the_lock_back_when_nothing_began(db, monkeypatch):
    def refuse():
        msg = "no connection"
        raise RuntimeError(msg)

    monkeypatch.setattr(db.engine, "begin", refuse)
    with pytest.raises(RuntimeError), db.connection_if_free():
        pass
    monkeypatch.undo()
    assert not db.writer_busy
    with db.connection() as connection:  # Would wait a minute for a leaked lock.
        _INSERT.execute(connection, {"id": 1, "name": "a", "at": _AT})


def test_connection_if_free_is_never_taken_on_postgresql(tmp_path):
    database = Database("postgresql://nobody@127.0.0.1:1/none")
    with database.connection_if_free() as connection:
        assert connection is None


def test_connection_if_free_never_waits_for_another_process(db, tmp_path):
    # Another process's write transaction on the same file (a second connection, outside
    # this Database's pool and writer lock).
    other = sqlite3.connect(tmp_path / "prepared.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with db.connection_if_free() as connection:
            # Without the no-wait BEGIN this would wait the 10 s busy timeout and then raise.
            assert connection is None
        assert not db.writer_busy  # The lock taken ahead was given back.
    finally:
        other.execute("ROLLBACK")
        other.close()
    with db.connection_if_free() as connection:  # The database is free again.
        assert connection is not None
        _INSERT.execute(connection, {"id": 2, "name": "b", "at": _AT})
        busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert busy == 10_000  # The ordinary wait is restored for the pooled connection.


def test_writer_released_wakes_the_loop_when_another_thread_ends_its_transaction(db):
    held = threading.Event()
    release = threading.Event()

    def holder():
        with db.connection():
            held.set()
            release.wait(20)

    async def main() -> list[str]:
        seen: list[str] = []
        worker = threading.Thread(target=holder, daemon=True)
        worker.start()
        assert held.wait(20)
        with db.connection_if_free() as connection:
            assert connection is None  # Held by the other thread.
        waiting = asyncio.ensure_future(db.writer_released(60))
        await asyncio.sleep(0)
        seen.append("waiting" if not waiting.done() else "done too early")
        release.set()  # The other thread commits: its check-in wakes this loop.
        await asyncio.wait_for(waiting, 10)  # Woken by the release, not by its own limit.
        with db.connection_if_free() as connection:
            seen.append("free" if connection is not None else "busy")
        worker.join(20)
        await db.writer_released(30)  # Free: returns at once.
        return seen

    assert asyncio.run(main()) == ["waiting", "free"]
