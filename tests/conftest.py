"""Fixtures shared by the tests: study files, and fresh databases on real servers.

Server-backed tests read their server URLs from the environment (`.ci/run` sets them):

    HPSEARCH_TEST_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    HPSEARCH_TEST_MYSQL=mysql+pymysql://root@127.0.0.1:3306/test

Each test gets a database of its own on that server, dropped afterwards. Under CI
(`CI=true`) a missing or unreachable server fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {"postgres": "HPSEARCH_TEST_POSTGRES", "mysql": "HPSEARCH_TEST_MYSQL"}

# A study small enough to run in about a second: 2 epochs on 300 digits.
TINY_STUDY = """
[study]
name = "tiny"

[model]
name = "mlp"
hidden = 16

[data]
name = "digits"
limit = 300

[train]
epochs = 2
batch_size = 64

[search]
n_trials = 4
sampler = "random"
seed = 1

[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.3, log = true }
"""


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study file: write_study(text=TINY_STUDY, name="tiny.toml", **replace)."""

    def write(text: str = TINY_STUDY, name: str = "study.toml", **replace: str) -> Path:
        text = textwrap.dedent(text)
        for old, new in replace.items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hpsearch.db'}"


def _server_or_skip(kind: str) -> str:
    variable = SERVERS[kind]
    url = os.environ.get(variable)
    why = f"{variable} is not set" if not url else None
    if url:
        try:
            engine = sa.create_engine(url)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as e:  # unreachable server or missing driver
            why = f"{kind} server at {variable} is not reachable: {str(e).splitlines()[0]}"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI must test against the real server)")
        pytest.skip(why)
    return url  # type: ignore[return-value]


def fresh_database(kind: str) -> Iterator[str]:
    """A new empty database on the server, as a URL; dropped afterwards."""
    server = sa.engine.make_url(_server_or_skip(kind))
    name = f"hps_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if kind == "postgres":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_database("postgres")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    yield from fresh_database("mysql")


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against SQLite, PostgreSQL and MySQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hpsearch.db'}"
    else:
        yield from fresh_database(request.param)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory with no storage or data directory inherited."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("HPSEARCH_DATA", raising=False)
