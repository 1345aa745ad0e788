"""Database faults: errors of the database's infrastructure, not of the study, and retrying them.

    if is_fault(error): ...                     # a dropped connection, a lock timeout, a locked file
    value = retrying(lambda: study.ask(), "asking for a trial")

A fault says nothing about the trial: a server restarted, a failover or a pooler dropped the
connection, a lock was held too long, another process held SQLite's file. Such an error is
retried with back-off (a fresh connection each time: SQLAlchemy drops an invalidated one);
when it persists, `DatabaseFault` carries it to the caller, which re-queues what it was doing.
Optuna wraps the driver's error in `StorageInternalError`; the cause is what is classified.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import sqlalchemy as sa

log = logging.getLogger("hpsearch.db")
T = TypeVar("T")
RETRIES = 8  # tries in all: 0.2 + 0.4 + ... + 3.2 + 5 + 5 s of waiting, about 16 s before giving up
FIRST_WAIT = 0.2
LONGEST_WAIT = 5.0

# Words of the drivers' messages for a fault (PostgreSQL, MySQL/MariaDB, SQLite).
FAULT_WORDS = (
    "database is locked",
    "database table is locked",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection refused",
    "connection reset",
    "connection timed out",
    "could not connect",
    "consuming input failed",
    "lost connection",
    "server has gone away",
    "lock wait timeout",
    "deadlock",
    "query_canceled",
    "canceling statement",
    "the database system is",  # starting up / shutting down / in recovery mode
    "ssl syscall",
    "broken pipe",
)
# MySQL's codes: 1205 lock wait timeout, 1213 deadlock, 2006 gone away, 2013 lost, 1927/1053 killed.
MYSQL_CODES = {1205, 1213, 2003, 2006, 2013, 1053, 1927, 2055}
# PostgreSQL's SQLSTATE classes 08 (connection), 57P (shut down), 40 (rollback), 55P03 (lock).
POSTGRES_STATES = ("08", "57P", "40001", "40P01", "55P03")


class DatabaseFault(Exception):
    """A fault that outlasted its retries; `what` says what the worker was doing."""

    def __init__(self, what: str, cause: BaseException):
        super().__init__(f"database fault while {what}: {describe(cause)}")
        self.what = what


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return seen


def is_fault(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) is a database fault, worth trying again."""
    if isinstance(error, DatabaseFault):
        return True
    for e in _chain(error):
        if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError)):
            return True
        args = getattr(e, "args", ())
        if args and isinstance(args[0], int) and args[0] in MYSQL_CODES:
            return True
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and state.startswith(POSTGRES_STATES):
            return True
        text = str(e).lower()
        if any(word in text for word in FAULT_WORDS):
            return True
    return False


def describe(error: BaseException) -> str:
    """One line: the driver's message, not SQLAlchemy's wrapping."""
    deepest = _chain(error)[-1] if not isinstance(error, DatabaseFault) else error
    lines = str(deepest).strip().splitlines() or [type(deepest).__name__]
    return f"{type(deepest).__name__}: {lines[0]}"


def retrying(call: Callable[[], T], what: str, tries: int = RETRIES) -> T:
    """`call()`, tried again with back-off while it raises a fault; then `DatabaseFault`.

    The call must be safe to run again after a rolled-back transaction.
    """
    wait = FIRST_WAIT
    for attempt in range(1, tries + 1):
        try:
            return call()
        except Exception as e:
            if isinstance(e, DatabaseFault) or not is_fault(e):
                raise
            if attempt == tries:
                raise DatabaseFault(what, e) from e
            log.warning("database fault while %s (try %d of %d, again in %.1fs): %s", what, attempt, tries, wait, describe(e))
            time.sleep(wait)
            wait = min(LONGEST_WAIT, 2 * wait)
    raise AssertionError("unreachable")


class _FaultsInOneLine(logging.Filter):
    """SQLAlchemy's pool logs a killed connection's failed reset with a traceback, then drops
    the connection and carries on; a fault is worth one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_fault(record.exc_info[1]):
            record.msg = f"{record.getMessage()}: {describe(record.exc_info[1])}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_pool_faults() -> None:
    # A logger's filters see only its own records, not its children's: name the pools.
    for name in ("sqlalchemy.pool", "sqlalchemy.pool.impl.QueuePool", "sqlalchemy.pool.impl.NullPool"):
        pool = logging.getLogger(name)
        if not any(isinstance(f, _FaultsInOneLine) for f in pool.filters):
            pool.addFilter(_FaultsInOneLine())
