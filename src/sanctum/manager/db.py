"""Database access: engines for SQLite and PostgreSQL, sessions, locking and migrations.

SQLite (the embedded default) runs in WAL mode with foreign keys on; every transaction starts
with ``BEGIN IMMEDIATE`` so writers are serialised by the database, which is what makes
read-check-write sequences (task votes, audit chain appends) safe there. On PostgreSQL the same
sequences take row locks with ``SELECT ... FOR UPDATE`` (:func:`lock_for_update`), so several
manager processes on one database behave as one.

Migrations are Alembic scripts shipped inside the package (``migrations/``), applied on start
or by ``sanctum manager migrate``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Select, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from sanctum.errors import ConflictError, UnavailableError, UsageError

__all__ = ["Database", "Prepared", "driver_savepoint", "lock_for_update", "run_on_driver"]

_MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_log = logging.getLogger(__name__)
T = TypeVar("T", bound=tuple[Any, ...])


#: How long a SQLite transaction waits for another process's write lock (in milliseconds).
_BUSY_TIMEOUT_MS: Final = 10_000


class _DatabaseBusy(Exception):  # noqa: N818 (internal control flow, never escapes this module)
    """Another process holds the SQLite database: a caller that must not wait goes elsewhere."""


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's lazy BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class _SqliteWriterLock:
    """Serialises this process's SQLite transactions with a lock instead of SQLite's busy loop.

    SQLite's busy handler polls with sleeps of up to 100 ms, which turns contention between
    threads into long tail latencies. Inside one process a lock taken when a transaction begins
    (and released when its connection goes back to the pool, after commit or rollback) queues
    threads fairly; ``BEGIN IMMEDIATE`` and the busy timeout still serialise separate processes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = threading.local()  # Taken ahead by this thread for its next begin.
        # Event loops waiting for the next release (see Database.writer_released).
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()

    def notify_on_release(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        """Resolve ``future`` (on ``loop``) when the lock is next released, or now if it is free."""
        with self._waiters_lock:
            self._waiters.append((loop, future))
        if not self._lock.locked():  # Released before the waiter was registered.
            self._wake()

    def _release(self) -> None:
        self._lock.release()
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # That loop is closed: nobody waits any more.
                continue

    def held(self) -> bool:
        """Whether a transaction of this process holds the lock now."""
        return self._lock.locked()

    def take_now(self) -> bool:
        """Take the lock for this thread's next transaction if it is free; never wait.

        That transaction's ``BEGIN IMMEDIATE`` does not wait either: if another process holds
        the database, :meth:`begin` raises :class:`_DatabaseBusy` at once instead of waiting
        up to the busy timeout (the caller is an event loop).
        """
        if not self._lock.acquire(blocking=False):
            return False
        self._taken.value = True
        return True

    def give_back(self) -> None:
        """Release a lock :meth:`take_now` took if no transaction used it (it failed first)."""
        if getattr(self._taken, "value", False):
            self._taken.value = False
            self._release()

    def begin(self, connection: Any) -> None:
        """Take the lock (once per pooled connection checkout) and begin a write transaction.

        Raises:
            UnavailableError: The lock or the database stayed busy (``database.unavailable``).
        """
        nowait = False
        if not connection.info.get(_LOCKED):
            if getattr(self._taken, "value", False):
                self._taken.value = False  # Taken ahead by take_now: this transaction's.
                nowait = True
            elif not self._lock.acquire(timeout=60):
                raise UnavailableError(
                    "timed out waiting for the database", code="database.unavailable"
                )
            connection.info[_LOCKED] = True
        # Straight to the driver: SQLAlchemy's statement machinery for a constant BEGIN cost
        # about as much as a query (pysqlite runs in autocommit mode here, so SQLAlchemy's
        # commit and rollback end what this BEGIN starts, as they did with exec_driver_sql).
        driver = connection.connection.driver_connection
        if nowait:
            driver.execute("PRAGMA busy_timeout=0")
            try:
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:  # Another process holds the database.
                raise _DatabaseBusy from error
            finally:
                driver.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            return
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:  # Another process held the database too long.
            raise UnavailableError(
                "the database is unreachable", code="database.unavailable"
            ) from error

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_LOCKED, False):
            self._release()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_LOCKED: Final = "sanctum.sqlite_writer_lock"


def lock_for_update(statement: Select[T]) -> Select[T]:
    """Return ``statement`` with ``FOR UPDATE`` (a no-op on SQLite, where writes serialise)."""
    return statement.with_for_update()


class Prepared:
    """A Core statement compiled once per dialect and run on the driver's cursor directly.

    For the attestation's hot statements (ADR 0085) SQLAlchemy's per-execution machinery
    (cache lookup, execution context, result wrapping) cost several times the database's own
    work. This runs the SQL SQLAlchemy compiles for the connection's dialect, with the
    dialect's own bind and result processing of every column type, in the connection's
    current transaction. A driver error goes through the connection's own error handling
    (:func:`run_on_driver`): it is raised as SQLAlchemy's (so :func:`_mapped_errors` maps it as
    usual), and a lost connection is invalidated as SQLAlchemy would (ADR 0120).
    """

    def __init__(self, statement: Any, *, column_keys: list[str] | None = None) -> None:
        """Prepare ``statement`` (an INSERT names the columns it sets in ``column_keys``)."""
        self.statement = statement
        self.column_keys = column_keys
        self._plans: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _plan(self, dialect: Any) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is not None:
            return plan
        compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        defaults = dict(compiled.params)  # Every bind parameter, by its rendered name.
        binds = {
            key: compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect)
            for key in defaults
        }
        results: list[Any] = []
        if getattr(self.statement, "is_select", False):
            results = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            ]
        # Each parameter the driver receives, in its order: name, default, bind processor
        # (composed once here instead of merged and looked up on every execution).
        names = list(compiled.positiontup) if compiled.positional else list(defaults)
        plan = _Plan(
            sql=compiled.string,
            positional=bool(compiled.positional),
            slots=tuple((name, defaults[name], binds[name]) for name in names),
            results=results if any(results) else [],
        )
        with self._lock:
            self._plans[dialect] = plan
        return plan

    @staticmethod
    def _parameters(plan: _Plan, params: Mapping[str, Any]) -> Any:
        get = params.get
        values = [
            get(name, default) if process is None else process(get(name, default))
            for name, default, process in plan.slots
        ]
        if plan.positional:
            return tuple(values)
        return dict(zip([name for name, _, _ in plan.slots], values, strict=True))

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement; return its rows, processed like SQLAlchemy would."""
        plan = self._plan(connection.dialect)
        rows = run_on_driver(connection, plan.sql, [self._parameters(plan, params)], fetch=True)
        if not plan.results:
            return [tuple(row) for row in rows]
        processors = plan.results
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement; return how many rows it changed."""
        plan = self._plan(connection.dialect)
        return int(
            run_on_driver(connection, plan.sql, [self._parameters(plan, params)], fetch=False)
        )

    def execute_many(self, connection: Connection, params: list[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set (one driver call)."""
        plan = self._plan(connection.dialect)
        run_on_driver(
            connection, plan.sql, [self._parameters(plan, p) for p in params], fetch=False
        )


def run_on_driver(connection: Connection, sql: str, params: list[Any], *, fetch: bool) -> Any:
    """Run ``sql`` on ``connection``'s driver cursor, in its current transaction.

    One parameter set runs with ``execute``, several with ``executemany``. Returns the rows
    (``fetch``) or the driver's row count. A driver error is handed to the connection's own
    error handling, exactly as if SQLAlchemy had run the statement: it is raised as
    SQLAlchemy's ``DBAPIError`` subclass, the dialect decides whether the connection was lost,
    and if so the connection (and the pool's older connections) are invalidated and the error
    says ``connection_invalidated`` (``database.unavailable`` once mapped).

    Raises:
        DBAPIError: The driver refused the statement (a subclass: ``IntegrityError``...).
        UnavailableError: The connection was already closed (``database.unavailable``).
    """
    raw = connection.connection.driver_connection
    if raw is None:  # pragma: no cover (a checked-out connection has its driver connection)
        raise UnavailableError("the database is unreachable", code="database.unavailable")
    cursor = None
    try:
        cursor = raw.cursor()
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)
        return cursor.fetchall() if fetch else cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as error:
        # SQLAlchemy's own handling (disconnect detection, handle_error events, invalidation of
        # the connection and of the pool's older connections); it always raises.
        connection._handle_dbapi_exception(  # noqa: SLF001 (the one place it is decided)
            error, sql, params[0] if len(params) == 1 else params, cursor, None
        )
        raise  # pragma: no cover (the handler above raises)
    finally:
        if cursor is not None:
            cursor.close()


@contextmanager
def driver_savepoint(connection: Connection, name: str) -> Iterator[None]:
    """Run the block inside a savepoint made on the driver (released, or rolled back on error).

    The hot path's cheap form of ``Connection.begin_nested``: two statements on the driver
    instead of SQLAlchemy's nested transaction objects. SQLAlchemy does not track this
    savepoint, so the block must end any nested transaction it opens itself (ADR 0120).

    Raises:
        DBAPIError: The database refused a savepoint statement.
    """
    run_on_driver(connection, f"SAVEPOINT {name}", [()], fetch=False)
    try:
        yield
    except BaseException:
        if not connection.invalidated:
            run_on_driver(connection, f"ROLLBACK TO SAVEPOINT {name}", [()], fetch=False)
        raise
    run_on_driver(connection, f"RELEASE SAVEPOINT {name}", [()], fetch=False)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positional: bool
    slots: tuple[tuple[str, Any, Any], ...]
    results: list[Any]


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Create the engine (no connection is made yet).

        Raises:
            UsageError: The URL names an unsupported database (``database.unsupported``).
        """
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                parsed, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
            )
            writer = _SqliteWriterLock()
            self._writer: _SqliteWriterLock | None = writer
            event.listen(self.engine, "connect", _on_sqlite_connect)
            event.listen(self.engine, "begin", writer.begin)
            event.listen(self.engine.pool, "checkin", writer.checkin)
        elif backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(
                parsed, echo=echo, pool_pre_ping=True, pool_size=20, max_overflow=20
            )
            self._writer = None
        else:
            raise UsageError(
                f"unsupported database {backend!r}: use sqlite or postgresql",
                code="database.unsupported",
            )
        self.backend: str = backend
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.sessions, "after_begin", _mark_connected)

    @property
    def writer_busy(self) -> bool:
        """Whether a transaction of this process holds the SQLite writer lock now.

        Always false on PostgreSQL (row locks, no process-wide writer lock). For checks that
        slow work (a PCS round trip) happens outside every transaction.
        """
        return self._writer is not None and self._writer.held()

    async def writer_released(self, at_most: float) -> None:
        """Wait, without blocking the event loop, until the SQLite writer lock is released.

        Returns at once when it is free (or on PostgreSQL), else at its next release or after
        ``at_most`` seconds, whichever comes first. For an event loop that runs free
        transactions itself (:meth:`connection_if_free`): waiting here for another thread's
        transaction to end costs less than handing the work to a thread (ADR 0120).
        """
        writer = self._writer
        if writer is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        writer.notify_on_release(loop, future)
        try:
            await asyncio.wait_for(future, at_most)
        except TimeoutError:
            return

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session inside one transaction, committed on success, rolled back on error.

        Raises:
            UnavailableError: The database could not be reached (``database.unavailable``).
            ConflictError: A constraint refused the commit (``database.conflict``).
        """
        with _mapped_errors(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Yield a Core connection in one transaction (no ORM session), like :meth:`transaction`.

        For hot paths that only run Core statements: the same engine events apply (on SQLite
        the writer lock and ``BEGIN IMMEDIATE``), without the ORM session's bookkeeping.

        Raises:
            UnavailableError: The database could not be reached (``database.unavailable``).
            ConflictError: A constraint refused the commit (``database.conflict``).
        """
        with _mapped_errors(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def connection_if_free(self) -> Iterator[Connection | None]:
        """Like :meth:`connection`, but yield ``None`` at once rather than wait for the database.

        On SQLite, ``None`` when another transaction of this process holds the writer lock, the
        pool has no idle connection, or another process holds the database file (so that the
        caller, an event loop, never blocks on any of them; ADR 0120). On PostgreSQL always
        ``None``: its transactions wait on row locks and the network, which an event loop must
        not.

        Raises:
            UnavailableError: The database could not be reached (``database.unavailable``).
            ConflictError: A constraint refused the commit (``database.conflict``).
        """
        writer = self._writer
        # Only a queue pool says how many connections are idle (in-memory databases use others).
        checkedin = getattr(self.engine.pool, "checkedin", None)
        if writer is None or checkedin is None or checkedin() == 0 or not writer.take_now():
            yield None
            return
        busy = False
        try:
            with _mapped_errors(), self.engine.begin() as connection:
                yield connection
        except _DatabaseBusy:  # Raised by BEGIN, before anything was yielded.
            busy = True
        finally:
            writer.give_back()  # Only if no transaction began with it.
        if busy:
            yield None

    def commit(self, session: Session) -> None:
        """Commit ``session``'s transaction now (a handler finishing its unit of work early).

        The commit releases the connection (and, on SQLite, the writer lock) in the caller's
        thread; the enclosing :meth:`transaction` then has nothing left to do.

        Raises:
            UnavailableError: The database could not be reached (``database.unavailable``).
            ConflictError: A constraint refused the commit (``database.conflict``).
        """
        with _mapped_errors():
            session.commit()

    @staticmethod
    def holds_connection(session: Session) -> bool:
        """Whether ending ``session``'s transaction needs I/O.

        True while a transaction is open on a connection, or objects wait to be flushed (the
        commit would then connect, and on SQLite wait for the writer lock).
        """
        if not session.in_transaction():
            return False
        pending = bool(session.new or session.dirty or session.deleted)
        return pending or bool(session.info.get(_CONNECTED))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS_DIR))
        return config

    def migrate(self) -> str | None:
        """Apply every pending migration; return the resulting revision.

        Raises:
            UnavailableError: The database could not be reached.
        """
        config = self._alembic_config()
        try:
            with self.engine.begin() as connection:
                if self.backend == "postgresql":
                    # Serialise concurrent migrators (several replicas starting at once).
                    connection.execute(text("SELECT pg_advisory_xact_lock(7461726)"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as error:
            raise UnavailableError(
                f"could not migrate the database: {type(error).__name__}",
                code="database.migration_failed",
            ) from error
        return self.current_revision()

    def head_revision(self) -> str | None:
        """Return the newest revision shipped with this code."""
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def current_revision(self) -> str | None:
        """Return the revision the database is at (``None`` when unmigrated).

        Raises:
            UnavailableError: The database could not be reached (``database.unavailable``).
        """
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as error:
            raise UnavailableError(
                "the database is unreachable", code="database.unavailable"
            ) from error

    def check_ready(self) -> None:
        """Check that the database answers and its schema is current.

        Raises:
            UnavailableError: Unreachable (``database.unavailable``) or not migrated to the
                code's head revision (``database.migrations_pending``).
        """
        current = self.current_revision()
        head = self.head_revision()
        if current != head:
            raise UnavailableError(
                f"database schema is at {current}, the code needs {head}",
                code="database.migrations_pending",
                hint="run `sanctum manager migrate`",
            )


_CONNECTED: Final = "sanctum.connected"


def _mark_connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_CONNECTED] = True


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Turn database errors into Sanctum errors.

    Raises:
        ConflictError: A constraint refused the change (``database.conflict``).
        UnavailableError: The database could not be reached (``database.unavailable``).
    """
    try:
        yield
    except IntegrityError as error:
        # A constraint caught a race the service did not pre-check (two concurrent inserts
        # of one unique value): the request conflicts with what just happened.
        raise ConflictError(
            "the change conflicts with a concurrent one; retry", code="database.conflict"
        ) from error
    except SQLAlchemyError as error:
        if _is_connection_error(error):
            raise UnavailableError(
                "the database is unreachable", code="database.unavailable"
            ) from error
        raise


def _is_connection_error(error: SQLAlchemyError) -> bool:
    # Pool exhaustion (TimeoutError) is also "could not check now: retry".
    return bool(getattr(error, "connection_invalidated", False)) or type(error).__name__ in {
        "OperationalError",
        "InterfaceError",
        "TimeoutError",
    }
