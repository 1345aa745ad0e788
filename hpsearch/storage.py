"""Where results live: storage URLs, Optuna's RDB storage, and both schema versions.

    url = resolve_url(None)            # --storage, else $HPSEARCH_STORAGE, else sqlite:///hpsearch.db
    initialize(url)                    # once, before any worker: Optuna's tables + ours at head
    storage = open_storage(url)        # what workers and commands use afterwards

The database holds Optuna's schema (versioned in `alembic_version`) and hpsearch's tables
(versioned in `hpsearch_alembic_version`). SQLite is made safe for several local writers:
write-ahead logging, a busy timeout, and transactions that take the write lock up front
(`BEGIN IMMEDIATE`), so two processes never deadlock upgrading a read lock.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event, exc

from .errors import StorageError

if TYPE_CHECKING:
    import optuna

DEFAULT_URL = "sqlite:///hpsearch.db"
VERSION_TABLE = "hpsearch_alembic_version"
SQLITE_BUSY_SECONDS = 120
_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'hpsearch[postgres]'"),
    "mysql": ("pymysql", "pip install 'hpsearch[mysql]'"),
}


def resolve_url(url: str | None) -> str:
    """The storage to use: the flag, else $HPSEARCH_STORAGE, else SQLite in this directory."""
    url = url or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_URL
    try:
        parsed = sa.engine.make_url(url)
    except exc.ArgumentError:
        raise StorageError(
            f"storage: {mask_url(url)!r} is not a database URL; use e.g. sqlite:///hpsearch.db "
            "or postgresql+psycopg://user:password@host/db"
        ) from None
    # Optuna and SQLAlchemy default to drivers we do not ship; pick the ones we do.
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "mysql":
        parsed = parsed.set(drivername="mysql+pymysql")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for anything a person or a log sees."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory databases and servers)."""
    if not is_sqlite(url):
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    return {"pool_pre_ping": True, "pool_recycle": 3600}


def _make_sqlite_safe(engine: sa.engine.Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
        # With WAL, NORMAL syncs at checkpoints rather than on every commit: the database
        # cannot be corrupted, and only the last moments before a power cut could be lost.
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.engine.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

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

        def __init__(self, url: str, **kwargs: Any) -> None:
            super().__init__(url, engine_kwargs=_engine_kwargs(url), **kwargs)
            _make_sqlite_safe(self.engine)

        def __setstate__(self, state: dict[str, Any]) -> None:
            super().__setstate__(state)
            _make_sqlite_safe(self.engine)

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


def initialize(url: str) -> None:
    """Create whatever is missing, ONCE, before workers start: Optuna's tables, then ours.

    Refuses (with the command to run) a database whose schema is behind this version.
    """
    _quiet()
    Storage = _storage_class()
    path = sqlite_path(url)
    if path is not None and path.parent and not path.parent.exists():
        raise StorageError(f"storage {mask_url(url)}: folder {path.parent} does not exist")
    with _translated(url):
        storage = Storage(url, skip_compatibility_check=True)
        if path is not None:
            _enable_wal(storage.engine)
        versions = _versions(storage)
        if versions.optuna_current != versions.optuna_head:
            raise StorageError(_behind(url, "Optuna", versions.optuna_current, versions.optuna_head))
        if versions.ours_current is None:
            _alembic_upgrade(storage.engine)
        elif versions.ours_current != versions.ours_head:
            raise StorageError(_behind(url, "hpsearch", versions.ours_current, versions.ours_head))
        storage.engine.dispose()


def open_storage(url: str) -> "optuna.storages.RDBStorage":
    """Optuna's storage on an initialized database; never creates tables (no race)."""
    _quiet()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(
            f"storage {mask_url(url)}: no such database file; run `hpsearch launch STUDY_FILE` "
            "first, or pass --storage / set HPSEARCH_STORAGE"
        )
    Storage = _storage_class()
    with _translated(url):
        storage = Storage(url, skip_compatibility_check=True, skip_table_creation=True)
        versions = _versions(storage)
    if versions.optuna_current != versions.optuna_head:
        raise StorageError(_behind(url, "Optuna", versions.optuna_current, versions.optuna_head))
    if versions.ours_current != versions.ours_head:
        if versions.ours_current is None and versions.optuna_current is None:
            raise StorageError(
                f"storage {mask_url(url)}: not an hpsearch database (no tables); "
                "run `hpsearch launch STUDY_FILE` or `hpsearch db upgrade` first"
            )
        raise StorageError(_behind(url, "hpsearch", versions.ours_current, versions.ours_head))
    return storage


@dataclass(frozen=True)
class SchemaVersions:
    optuna_current: str | None
    optuna_head: str
    ours_current: str | None
    ours_head: str

    @property
    def up_to_date(self) -> bool:
        return self.optuna_current == self.optuna_head and self.ours_current == self.ours_head


def schema_versions(url: str) -> SchemaVersions:
    """Both schema versions of an existing database, without changing anything."""
    _quiet()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(f"storage {mask_url(url)}: no such database file")
    with _translated(url):
        storage = _storage_class()(url, skip_compatibility_check=True, skip_table_creation=True)
        return _versions(storage)


def upgrade(url: str) -> SchemaVersions:
    """Bring both schemas to head: Optuna's own migrations, then hpsearch's."""
    _quiet()
    with _translated(url):
        storage = _storage_class()(url, skip_compatibility_check=True)
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
        _alembic_upgrade(storage.engine)
        if sqlite_path(url) is not None:
            _enable_wal(storage.engine)
        return _versions(storage)


def rdb(study: "optuna.Study") -> "optuna.storages.RDBStorage":
    """The RDB storage under a study (Optuna wraps it in a caching layer)."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def _versions(storage: "optuna.storages.RDBStorage") -> SchemaVersions:
    from alembic.runtime.migration import MigrationContext

    with storage.engine.connect() as conn:
        ours = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        optuna_current = MigrationContext.configure(conn).get_current_revision()
    return SchemaVersions(
        optuna_current=optuna_current,
        optuna_head=storage.get_head_version(),
        ours_current=ours,
        ours_head=_script().get_current_head() or "",
    )


def _behind(url: str, which: str, current: str | None, head: str) -> str:
    return (
        f"storage {mask_url(url)}: the {which} schema is at {current or 'none'}, this hpsearch "
        f"needs {head}; run: hpsearch db upgrade --storage '{mask_url(url)}'"
    )


def migrations_dir() -> Path:
    """The alembic history: inside the installed package, or the source tree's top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError(f"hpsearch is installed without its migrations (looked in {here})")


def _alembic_config(connection: sa.engine.Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _alembic_upgrade(engine: sa.engine.Engine) -> None:
    import logging

    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
