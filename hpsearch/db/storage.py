"""Optuna's RDB storage on a database hpsearch has set up.

    initialize(url)                    # once, before any worker: Optuna's tables + ours at head
    storage = open_storage(url)        # what workers and commands use afterwards

The database holds Optuna's schema (versioned in `alembic_version`) and hpsearch's tables
(versioned in `hpsearch_alembic_version`). SQLite is made safe for several local writers:
write-ahead logging, a busy timeout, and transactions that take the write lock up front
(`BEGIN IMMEDIATE`), so two processes never deadlock upgrading a read lock.

Read commands open the storage with `read_only=True`: on SQLite the file is opened
read-only and transactions begin deferred, so a listing never holds the write lock (a
writer is never kept waiting behind a SELECT) and works on a file the user may only read.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event, exc

from ..errors import StorageError
from .schema import SchemaVersions, alembic_upgrade, behind, versions_of
from .urls import is_sqlite, mask_url, sqlite_path

if TYPE_CHECKING:
    import optuna

# How long a SQLite writer waits for another's lock before `database is locked` (retried then).
SQLITE_BUSY_SECONDS = float(os.environ.get("HPSEARCH_SQLITE_BUSY_SECONDS", "120"))
_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'hpsearch[postgres]'"),
    "mysql": ("pymysql", "pip install 'hpsearch[mysql]'"),
}


def _engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    return {"pool_pre_ping": True, "pool_recycle": 3600}


def _read_only_url(url: str) -> str:
    """A SQLite URL opened read-only; other databases unchanged (their grants decide)."""
    path = sqlite_path(url)
    if path is None:
        return url
    query = "mode=ro"
    wal = path.with_name(path.name + "-wal")
    if not os.access(path.parent, os.W_OK) and not wal.exists():
        # SQLite reads a WAL database through its -shm file and creates it if missing; in a
        # folder nobody may write, no writer can exist either, so the file cannot change.
        query += "&immutable=1"
    return f"sqlite:///file:{urllib.parse.quote(str(path.resolve()))}?{query}&uri=true"


def _make_sqlite_safe(engine: sa.engine.Engine, read_only: bool = False) -> None:
    if engine.dialect.name != "sqlite":
        return
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")
        # With WAL, NORMAL syncs at checkpoints rather than on every commit: the database
        # cannot be corrupted, and only the last moments before a power cut could be lost.
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.engine.Connection) -> None:
        conn.exec_driver_sql(begin)

    engine.dispose()  # connections made before the listeners existed are dropped


def _enable_wal(engine: sa.engine.Engine) -> None:
    # WAL is a property of the file (it persists), and cannot be set inside a transaction.
    raw = engine.raw_connection()
    try:
        raw.execute("PRAGMA journal_mode=WAL")
    finally:
        raw.close()


@functools.cache
def _storage_class() -> type:
    # Built on first use, so that importing this module does not import optuna.
    import optuna

    class Storage(optuna.storages.RDBStorage):
        """Optuna's RDB storage with hpsearch's connection settings (kept across pickling)."""

        def __init__(self, url: str, read_only: bool = False, **kwargs: Any) -> None:
            self.read_only = read_only
            super().__init__(url, engine_kwargs=_engine_kwargs(url), **kwargs)
            _make_sqlite_safe(self.engine, read_only)

        def __setstate__(self, state: dict[str, Any]) -> None:
            super().__setstate__(state)
            _make_sqlite_safe(self.engine, self.read_only)

    return Storage


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """Turn driver and connection failures into one line that names the masked URL."""
    masked = mask_url(url)
    password = sa.engine.make_url(url).password if "://" in url else None
    try:
        yield
    except ImportError as e:
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        driver, install = _DRIVERS.get(dialect, (dialect, "install its SQLAlchemy driver"))
        raise StorageError(
            f"storage {masked}: the {driver} driver is not installed ({e}); run: {install}"
        ) from None
    except Exception as e:
        # Optuna wraps the database's error in its own; the driver's message is the useful one.
        cause = e.__cause__ if _is_optuna_storage_error(e) and e.__cause__ is not None else e
        if not isinstance(cause, exc.SQLAlchemyError):
            raise
        detail = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        if password:
            detail = detail.replace(str(password), "***")
        raise StorageError(f"storage {masked}: cannot use the database: {detail}") from None


def _is_optuna_storage_error(error: BaseException) -> bool:
    import optuna

    return isinstance(error, optuna.exceptions.StorageInternalError)


def _quiet() -> None:
    """Optuna announces experimental arguments (heartbeats) on every open; say it once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def refuse_read_only(url: str) -> None:
    """For commands that write: a SQLite file (or folder) this user may not write is one line
    that says so, before SQLite's 'attempt to write a readonly database' deep in a launch.

    The folder counts: SQLite writes the write-ahead log and its index (`-wal`, `-shm`) there."""
    path = sqlite_path(url)
    if path is None:
        return
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(
            f"storage {mask_url(url)}: the database file {path} is read-only; make it writable "
            f"(chmod u+w {path}) or pass another --storage"
        )
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(
            f"storage {mask_url(url)}: the database's folder {folder} is read-only, and SQLite writes "
            f"its log files ({path.name}-wal, {path.name}-shm) beside the database; make the folder "
            "writable or pass another --storage"
        )


def initialize(url: str) -> None:
    """Create whatever is missing, ONCE, before workers start: Optuna's tables, then ours.

    Refuses (with the command to run) a database whose schema is behind this version, and a
    SQLite file this user may not write.
    """
    _quiet()
    Storage = _storage_class()
    path = sqlite_path(url)
    if path is not None and path.parent and not path.parent.exists():
        raise StorageError(f"storage {mask_url(url)}: folder {path.parent} does not exist")
    refuse_read_only(url)
    with _translated(url):
        storage = Storage(url, skip_compatibility_check=True)
        if path is not None:
            _enable_wal(storage.engine)
        versions = versions_of(storage, url)
        if versions.optuna_current != versions.optuna_head:
            raise StorageError(behind(url, "Optuna", versions.optuna_current, versions.optuna_head))
        if versions.ours_current is None:
            alembic_upgrade(storage.engine)
        elif versions.ours_current != versions.ours_head:
            raise StorageError(behind(url, "hpsearch", versions.ours_current, versions.ours_head))
        storage.engine.dispose()


def open_storage(url: str, read_only: bool = False) -> "optuna.storages.RDBStorage":
    """Optuna's storage on an initialized database; never creates tables (no race).

    `read_only`: for commands that only look (see the module's docstring)."""
    _quiet()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(
            f"storage {mask_url(url)}: no such database file; run `hpsearch launch STUDY_FILE` "
            "first, or pass --storage / set HPSEARCH_STORAGE"
        )
    Storage = _storage_class()
    with _translated(url):
        opened = _read_only_url(url) if read_only else url
        storage = Storage(opened, read_only, skip_compatibility_check=True, skip_table_creation=True)
        versions = versions_of(storage, url)
    storage.shown_url = url  # type: ignore[attr-defined]  # what the user gave, not the read-only form
    if versions.optuna_current != versions.optuna_head:
        raise StorageError(behind(url, "Optuna", versions.optuna_current, versions.optuna_head))
    if versions.ours_current != versions.ours_head:
        if versions.ours_current is None and versions.optuna_current is None:
            raise StorageError(
                f"storage {mask_url(url)}: not an hpsearch database (no tables); "
                "run `hpsearch launch STUDY_FILE` or `hpsearch db upgrade` first"
            )
        raise StorageError(behind(url, "hpsearch", versions.ours_current, versions.ours_head))
    return storage


def schema_versions(url: str) -> SchemaVersions:
    """Both schema versions of an existing database, without changing anything."""
    _quiet()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(f"storage {mask_url(url)}: no such database file")
    with _translated(url):
        storage = _storage_class()(url, skip_compatibility_check=True, skip_table_creation=True)
        return versions_of(storage, url)


def _create_server_database(url: str) -> None:
    """Create the database a PostgreSQL or MySQL URL names, when the server lacks it."""
    target = sa.engine.make_url(url)
    dialect = target.get_backend_name()
    if dialect not in ("postgresql", "mysql") or not target.database:
        return
    # PostgreSQL always has a `postgres` database to connect to; MySQL needs none.
    server = target._replace(database="postgres" if dialect == "postgresql" else None)  # URL is a namedtuple
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if dialect == "postgresql":
                found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first()
            else:
                found = conn.execute(sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"), {"n": target.database}).first()
            if found is None:
                conn.exec_driver_sql(f"CREATE DATABASE {admin.dialect.identifier_preparer.quote(target.database)}")
    finally:
        admin.dispose()


def upgrade(url: str) -> SchemaVersions:
    """Bring both schemas to head: Optuna's own migrations, then hpsearch's (creating a
    missing database first)."""
    _quiet()
    refuse_read_only(url)
    with _translated(url):
        _create_server_database(url)
        storage = _storage_class()(url, skip_compatibility_check=True)
        versions_of(storage, url)  # a schema ahead of this hpsearch is refused before any change
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
        alembic_upgrade(storage.engine)
        if sqlite_path(url) is not None:
            _enable_wal(storage.engine)
        return versions_of(storage, url)


def rdb(study: "optuna.Study") -> "optuna.storages.RDBStorage":
    """The RDB storage under a study (Optuna wraps it in a caching layer)."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


