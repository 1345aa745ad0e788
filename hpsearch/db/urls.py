"""Storage URLs: which database, its driver, and the form a person or a log may see.

    url = resolve_url(None)     # --storage, else $HPSEARCH_STORAGE, else sqlite:///hpsearch.db
    mask_url(url)               # the password replaced by ***
    mask_secrets(command, url)  # every URL's password in a command line or log line replaced
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
    except ValueError:  # e.g. a port that is not a number: an unescaped ':' '/' or '@'
        raise StorageError(
            f"storage: {mask_url(url)!r} cannot be read as user:password@host:port/database; "
            "escape '@' ':' '/' in the user name or password as %40 %3A %2F"
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
    except (exc.ArgumentError, ValueError):
        return mask_secrets(url)


# scheme://user:password@ -- the password runs to the token's last '@' (it may hold an unescaped one).
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s]*@")


def mask_secrets(text: str, url: str | None = None) -> str:
    """Text (a command line, a log line) with every URL's password replaced by ***.

    Whatever form the URL took (`postgresql://`, `mysql://`, the resolved
    `postgresql+psycopg://`, escaped or not), and the password of `url` wherever it appears.
    """
    text = _CREDENTIALS.sub(lambda m: m["head"] + "***@", text)
    password = _password(url) if url else None
    if password and len(password) >= 4:  # a shorter one would mask unrelated text
        from urllib.parse import quote

        for form in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(form, "***")
    return text


def _password(url: str) -> str | None:
    try:
        return sa.engine.make_url(url).password  # type: ignore[return-value]
    except (exc.ArgumentError, ValueError):
        return None


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
