"""Storage URLs: which database, its driver, and the form a person or a log may see.

    url = resolve_url(None)     # --storage, else $HPSEARCH_STORAGE, else sqlite:///hpsearch.db
    mask_url(url)               # the password replaced by ***
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc

from ..errors import StorageError

DEFAULT_URL = "sqlite:///hpsearch.db"


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
