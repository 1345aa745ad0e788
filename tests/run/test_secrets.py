"""A password in --storage or $HPSEARCH_STORAGE is never stored or logged. Real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.db.urls import mask_secrets
from tests.conftest import TINY_STUDY

PASSWORD = "Sekr3tPassw0rd"


def _user_database(kind: str, server_url: str) -> tuple[str, sa.Engine, callable]:  # type: ignore[valid-type]
    """A user with a password and a database of theirs; (plain URL for the user, admin, drop)."""
    server = sa.engine.make_url(server_url)
    user = f"hpsu_{uuid.uuid4().hex[:8]}"
    database = server.database
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if kind == "postgres":
            conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
            conn.exec_driver_sql(f"ALTER DATABASE {database} OWNER TO {user}")
            conn.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {user}")
            plain = f"postgresql://{user}:{PASSWORD}@{server.host}:{server.port or 5432}/{database}"
        else:
            conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{PASSWORD}'")
            conn.exec_driver_sql(f"GRANT ALL ON {database}.* TO '{user}'@'%%'")
            plain = f"mysql://{user}:{PASSWORD}@{server.host}:{server.port or 3306}/{database}"

    def drop() -> None:
        with admin.connect() as conn:
            if kind == "postgres":
                conn.exec_driver_sql(f"ALTER DATABASE {database} OWNER TO {server.username}")
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'")
                conn.exec_driver_sql(f"DROP OWNED BY {user} CASCADE")
                conn.exec_driver_sql(f"DROP ROLE {user}")
            else:
                conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()

    return plain, admin, drop


def _cells_holding(url: str, secret: str) -> list[str]:
    """Every cell of every table in the database that holds the secret, as table.column."""
    engine = sa.create_engine(url)
    found = []
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    for column, value in row._mapping.items():
                        if value is not None and secret in str(value):
                            found.append(f"{table.name}.{column}")
    finally:
        engine.dispose()
    return found


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_password_in_the_url_is_never_stored_or_logged(kind, request, write_study, tmp_path: Path) -> None:
    database_url = request.getfixturevalue(f"{kind}_url")
    plain, _admin, drop = _user_database(kind, database_url)
    try:
        spec = write_study(TINY_STUDY)
        logs = tmp_path / "logs"
        launched = subprocess.run(
            [sys.executable, "-m", "hpsearch", "launch", str(spec), "--storage", plain, "--workers", "2", "--log-dir", str(logs)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert launched.returncode == 0, launched.stdout + launched.stderr
        joined = subprocess.run(
            [sys.executable, "-m", "hpsearch", "worker", "tiny"], capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "HPSEARCH_STORAGE": plain},
        )
        assert joined.returncode == 0, joined.stderr
        joined_by_flag = CliRunner().invoke(cli, ["worker", "tiny", "--storage", plain])
        assert joined_by_flag.exit_code == 0, joined_by_flag.output

        commands = [row.command for row in sa.create_engine(plain.replace("://", "+psycopg://" if kind == "postgres" else "+pymysql://")).connect().execute(sa.text("SELECT command FROM hpsearch_launches"))]
        assert len(commands) == 3 and all("***" in c or "--storage" not in c for c in commands), commands
        admin_url = sa.engine.make_url(database_url).render_as_string(hide_password=False)
        assert _cells_holding(admin_url, PASSWORD) == []
        log_files = list(logs.rglob("*"))
        assert [f for f in log_files if f.is_file()], "the launch wrote no log"
        assert [f for f in log_files if f.is_file() and PASSWORD in f.read_text(errors="replace")] == []
        for output in (launched.stdout, launched.stderr, joined.stdout, joined.stderr, joined_by_flag.output):
            assert PASSWORD not in output
    finally:
        drop()


def test_a_password_with_unescaped_characters_is_one_line(tmp_path: Path, write_study) -> None:
    result = CliRunner().invoke(cli, ["studies", "--storage", "postgresql://me:p@ss:w/rd@127.0.0.1/db"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.startswith("Error: storage:") and "%40" in result.output and "p@ss" not in result.output


@pytest.mark.parametrize(
    "text",
    [
        "hpsearch launch s.toml --storage postgresql://me:pw1234@db/x",
        "hpsearch launch s.toml --storage=mysql://me:pw1234@db/x",
        "HPSEARCH_STORAGE=postgresql+psycopg://me:pw1234@db:5432/x hpsearch worker s",
        "--storage 'mysql+pymysql://me:pw1234@db/x'",
    ],
)
def test_every_url_form_is_masked(text: str) -> None:
    masked = mask_secrets(text)
    assert "pw1234" not in masked and "me:***@db" in masked
