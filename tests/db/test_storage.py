"""Storage: one contract on SQLite, PostgreSQL and MySQL; migrations; real Optuna clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.request
import wsgiref.simple_server
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.db import tables
from hpsearch.db.schema import VERSION_TABLE, migrations_dir
from hpsearch.db.storage import initialize, open_storage, schema_versions, upgrade
from hpsearch.db.urls import mask_url, resolve_url
from hpsearch.errors import StorageError
from hpsearch.run.launcher import LaunchOptions, launch
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
OPTUNA = str(Path(sys.executable).parent / "optuna")


def run_tiny(write_study, url: str, **options) -> object:
    return launch(LaunchOptions(study_file=str(write_study()), storage=url, **options), progress=False)


def rows(url: str, table: sa.Table) -> list[sa.Row]:
    engine = sa.create_engine(resolve_url(url))
    with engine.connect() as conn:
        found = conn.execute(sa.select(table)).all()
    engine.dispose()
    return found


class TestStorageContract:
    """What every backend must do; `storage_url` is SQLite, PostgreSQL and MySQL in turn."""

    def test_a_launch_writes_both_schemas_and_our_records(self, storage_url, write_study) -> None:
        summary = run_tiny(write_study, storage_url)
        assert summary.outcome == "finished" and summary.counts == {"COMPLETE": 4}
        versions = schema_versions(resolve_url(storage_url))
        assert versions.up_to_date and versions.ours_current == versions.ours_head

        (study_file,) = rows(storage_url, tables.study_files)
        assert study_file.name == "tiny" and "[space]" in study_file.text and len(study_file.sha256) == 64
        (launch_row,) = rows(storage_url, tables.launches)
        assert launch_row.outcome == "finished" and launch_row.ended_at >= launch_row.started_at
        assert launch_row.study_file_sha256 == study_file.sha256 and launch_row.n_workers == 1
        assert launch_row.torch_version and launch_row.optuna_version == optuna.__version__
        assert json.loads(launch_row.devices) == ["cpu"] and launch_row.host and launch_row.username

        study = optuna.load_study(study_name="tiny", storage=storage_url)
        runs = {r.trial_id: r for r in rows(storage_url, tables.trial_runs)}
        assert len(runs) == 4
        for trial in study.trials:
            run = runs[trial._trial_id]
            assert (run.outcome, run.device, run.epochs_run, run.launch_id) == ("complete", "cpu", 2, launch_row.launch_id)
            assert run.seed == trial.user_attrs["config"]["seed"] and run.engine == trial.user_attrs["engine"]
            assert run.cohort_size == trial.user_attrs["cohort_size"] and run.train_seconds > 0
            assert trial.user_attrs["train_seconds"] == pytest.approx(run.train_seconds, abs=1e-3)

    def test_resume_and_schema_commands(self, storage_url, write_study) -> None:
        run_tiny(write_study, storage_url)
        again = run_tiny(write_study, storage_url, n_trials=6)
        assert again.counts == {"COMPLETE": 6}
        assert len(rows(storage_url, tables.launches)) == 2
        result = CliRunner().invoke(cli, ["db", "check", "--storage", storage_url])
        assert result.exit_code == 0 and result.stdout.count("up to date") == 2

    def test_alembic_keeps_to_its_own_tables(self, storage_url) -> None:
        url = resolve_url(storage_url)
        initialize(url)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            assert {"alembic_version", VERSION_TABLE, "trials", "hpsearch_trial_runs"} <= names
            optuna_version = MigrationContext.configure(conn).get_current_revision()
            assert optuna_version == optuna.storages.RDBStorage(url, skip_compatibility_check=True).get_head_version()
            # Autogenerate, limited as our env.py limits it, finds nothing to change: the
            # migrations match tables.py and Optuna's tables are left alone.
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": tables.include_name,
                    "include_object": tables.include_object,
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                },
            )
            assert compare_metadata(context, tables.metadata) == []
        engine.dispose()

    def test_real_optuna_clients_read_what_hpsearch_wrote(self, storage_url, write_study) -> None:
        run_tiny(write_study, storage_url)
        url = resolve_url(storage_url)
        upgraded = subprocess.run([OPTUNA, "storage", "upgrade", "--storage", url], capture_output=True, text=True, timeout=120)
        assert upgraded.returncode == 0 and "up-to-date" in (upgraded.stdout + upgraded.stderr)
        listed = subprocess.run(
            [OPTUNA, "trials", "--study-name", "tiny", "--storage", url, "-f", "json"], capture_output=True, text=True, timeout=120
        )
        assert listed.returncode == 0, listed.stderr
        assert sorted(t["number"] for t in json.loads(listed.stdout)) == [0, 1, 2, 3]

        import optuna_dashboard

        server = wsgiref.simple_server.make_server(
            "127.0.0.1", 0, optuna_dashboard.wsgi(open_storage(url)), handler_class=_QuietHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{server.server_port}"
            studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
            (ours,) = [s for s in studies if s["study_name"] == "tiny"]
            detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{ours['study_id']}", timeout=30))
            assert [t["number"] for t in detail["trials"]] == [0, 1, 2, 3]
            assert all(t["state"] == "Complete" for t in detail["trials"])
            assert any(a["key"] == "config" for a in detail["trials"][0]["user_attrs"])
        finally:
            server.shutdown()


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_passwords_never_show(postgres_url, write_study) -> None:
    with_password = sa.engine.make_url(postgres_url).set(password="hunter2").render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["launch", str(write_study()), "--storage", with_password])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "postgres:***@" in result.stdout
    (launch_row,) = rows(postgres_url, tables.launches)
    assert "hunter2" not in launch_row.command
    for log in Path("hpsearch-logs").rglob("*.log"):
        assert "hunter2" not in log.read_text()
    env = CliRunner().invoke(cli, ["env", "--storage", with_password])
    assert "hunter2" not in env.output and "***" in env.stdout


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://u:p%40ss@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert mask_url("sqlite:///hpsearch.db") == "sqlite:///hpsearch.db"
    assert mask_url("weird://user:pw@host") == "weird://user:***@host"


def test_missing_driver_and_refused_connection_are_one_line() -> None:
    with pytest.raises(StorageError, match=r"storage oracle://a:\*\*\*@h/x: the oracle driver is not installed"):
        initialize(resolve_url("oracle://a:b@h/x"))
    with pytest.raises(StorageError) as caught:
        initialize(resolve_url("mysql://root:pw@127.0.0.1:1/x"))
    assert str(caught.value).startswith("storage mysql+pymysql://root:***@127.0.0.1:1/x: cannot use the database: ")
    assert "pw@" not in str(caught.value)


# -- old databases ---------------------------------------------------------------------------


def fixture_copy(name: str, tmp_path: Path) -> str:
    target = tmp_path / name
    shutil.copy(FIXTURES / name, target)
    return f"sqlite:///{target}"


def test_an_optuna_database_gains_our_tables_and_keeps_its_studies(tmp_path, write_study) -> None:
    url = fixture_copy("optuna-only.sqlite3", tmp_path)
    versions = schema_versions(url)
    assert versions.ours_current is None and not versions.up_to_date
    with pytest.raises(StorageError, match=r"hpsearch schema is at none, this hpsearch needs .*; run: hpsearch db upgrade --storage 'sqlite:///"):
        open_storage(url)
    summary = run_tiny(write_study, url)  # a launch creates what is missing
    assert summary.outcome == "finished" and schema_versions(url).up_to_date
    assert len(optuna.load_study(study_name="plain-optuna", storage=url).trials) == 5


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sqlite3")))
def test_every_kept_schema_upgrades_to_head(name: str, tmp_path) -> None:
    url = fixture_copy(name, tmp_path)
    before = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url, include_best_trial=False)}
    result = CliRunner().invoke(cli, ["db", "upgrade", "--storage", url])
    assert result.exit_code == 0 and "up to date" in result.stdout
    assert schema_versions(url).up_to_date
    after = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url, include_best_trial=False)}
    assert after == before
    check = CliRunner().invoke(cli, ["db", "check", "--storage", url])
    assert check.exit_code == 0


def test_a_0002_database_upgrades_to_launch_heartbeats_and_keeps_its_rows(tmp_path) -> None:
    url = fixture_copy("hpsearch-0002.sqlite3", tmp_path)

    def table_rows(name: str) -> list[dict]:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            found = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name}"))]
        engine.dispose()
        return found

    names = ["hpsearch_study_files", "hpsearch_launches", "hpsearch_trial_runs", "hpsearch_comparisons"]
    before = {name: table_rows(name) for name in names}
    assert before["hpsearch_launches"] and all("heartbeat_at" not in row for row in before["hpsearch_launches"])
    result = CliRunner().invoke(cli, ["db", "upgrade", "--storage", url])
    assert result.exit_code == 0, result.output
    assert schema_versions(url).ours_current == "0003"
    after = {name: table_rows(name) for name in names}
    assert [{k: v for k, v in row.items() if k != "heartbeat_at"} for row in after["hpsearch_launches"]] == before["hpsearch_launches"]
    assert all(row["heartbeat_at"] is None for row in after["hpsearch_launches"])
    assert {name: after[name] for name in names if name != "hpsearch_launches"} == {
        name: before[name] for name in names if name != "hpsearch_launches"
    }
    listed = CliRunner().invoke(cli, ["launches", "--storage", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert {row["state"] for row in json.loads(listed.stdout)} == {row["outcome"] for row in before["hpsearch_launches"]}


def test_upgrade_creates_a_missing_sqlite_database(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    versions = upgrade(url)
    assert versions.up_to_date


def test_an_installed_wheel_can_upgrade_a_database(tmp_path) -> None:
    """Build the wheel, install it (not editable) in a fresh venv, upgrade a database with it."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], check=True, timeout=300)
    (wheel,) = dist.glob("hpsearch-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    # The venv borrows the dependencies (only: a path, so the test environment's editable
    # hpsearch is not visible) from the environment running the tests.
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "test-dependencies.pth").write_text("\n".join(deps) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(FIXTURES / "optuna-only.sqlite3", work / "db.sqlite3")
    where = subprocess.run(
        [str(python), "-c", "import hpsearch.db.schema as s; print(s.migrations_dir())"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert where.startswith(site) and where.endswith("hpsearch/alembic")
    result = subprocess.run(
        [str(python), "-m", "hpsearch", "db", "upgrade", "--storage", "sqlite:///db.sqlite3"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert schema_versions(f"sqlite:///{work / 'db.sqlite3'}").up_to_date
    assert migrations_dir() == ROOT / "alembic"  # the source tree's own, here


# -- many writers ------------------------------------------------------------------------------


QUICK = """
[study]
name = "quick"
[model]
name = "linreg"
[data]
name = "linear"
limit = 100
[train]
epochs = 1
batch_size = 32
[search]
n_trials = 160
sampler = "random"
seed = 1
[space]
optimizer = ["sgd", "adam"]
lr = { low = 1e-3, high = 0.3, log = true }
"""


def stress(url: str, workers: int, write_study) -> None:
    summary = launch(
        LaunchOptions(study_file=str(write_study(QUICK)), storage=url, workers=workers, engine="train"), progress=False
    )
    assert summary.outcome == "finished" and summary.errors == []
    counts = summary.counts
    assert counts.get("COMPLETE") == 160 and counts.get("FAIL", 0) == 0 and counts.get("RUNNING", 0) == 0
    runs = rows(url, tables.trial_runs)
    assert len(runs) == 160 and {r.outcome for r in runs} == {"complete"}
    for log in Path("hpsearch-logs/quick").glob("*-worker-*.log"):
        text = log.read_text()
        assert "Traceback" not in text and "locked" not in text and "worker stopped (budget)" in text
    assert len({r.pid for r in runs}) > 1


@pytest.mark.slow
def test_eight_processes_on_one_sqlite_file(sqlite_url, write_study) -> None:
    stress(sqlite_url, 8, write_study)


@pytest.mark.slow
def test_sixteen_processes_on_postgres(postgres_url, write_study) -> None:
    stress(postgres_url, 16, write_study)


@pytest.mark.slow
def test_sixteen_processes_on_mysql(mysql_url, write_study) -> None:
    stress(mysql_url, 16, write_study)


def test_a_database_behind_head_is_refused_with_the_upgrade_command(tmp_path, write_study) -> None:
    url = fixture_copy("hpsearch-0001.sqlite3", tmp_path)
    result = CliRunner().invoke(cli, ["launch", str(write_study()), "--storage", url])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"Error: storage {url}: the hpsearch schema is at 0001, this hpsearch needs "
        f"{schema_versions(url).ours_head}; run: hpsearch db upgrade --storage '{url}'"
    )
    check = CliRunner().invoke(cli, ["db", "check", "--storage", url])
    assert check.exit_code == 1 and "hpsearch schema: 0001" in check.stdout and "BEHIND" in check.stdout
    assert CliRunner().invoke(cli, ["db", "upgrade", "--storage", url]).exit_code == 0
    other = write_study(name="other.toml", **{'name = "tiny"': 'name = "other"'})
    assert CliRunner().invoke(cli, ["launch", str(other), "--storage", url]).exit_code == 0
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 3  # the old study is intact
    assert len(optuna.load_study(study_name="other", storage=url).trials) == 4


def _as_reader(args: list[str]) -> list[str]:
    """Run a command that may only read: root ignores file modes, so drop its capabilities
    (it stays the owner of the files, and of the checkout's venv wherever that is)."""
    import os

    drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
    return [*drop, *args] if os.geteuid() == 0 else args


@pytest.fixture
def read_only_db(write_study):
    """A finished study in a SQLite file nobody but its owner may write, and its folder."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="hpsearch-ro-"))
    url = f"sqlite:///{folder / 'h.db'}"
    run_tiny(write_study, url)
    import sqlite3

    finished = sqlite3.connect(folder / "h.db")
    finished.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as when every writer has closed
    finished.close()
    for extra in folder.glob("h.db-*"):
        extra.unlink()
    (folder / "h.db").chmod(0o444)
    folder.chmod(0o755)
    yield folder, url
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_read_commands_need_only_read_access(read_only_db) -> None:
    folder, url = read_only_db
    hpsearch = str(Path(sys.executable).parent / "hpsearch")
    # WAL reads need a -shm file: SQLite creates it in a writable folder; in a read-only one
    # the file is opened as immutable. Each command is tried once, in one or the other.
    cases = [(0o555, ["studies"]), (0o555, ["best", "tiny"]), (0o555, ["report", "tiny"]), (0o777, ["trials", "tiny"]), (0o777, ["export", "tiny"])]
    for folder_mode, command in cases:
        folder.chmod(folder_mode)
        out = subprocess.run(_as_reader([hpsearch, *command, "--storage", url]), check=False, capture_output=True, text=True, timeout=120, cwd="/")
        assert out.returncode == 0 and out.stdout.strip() and "Traceback" not in out.stderr, (command, out.stderr)


def test_a_launch_on_a_read_only_database_is_one_line(read_only_db, write_study, tmp_path) -> None:
    folder, url = read_only_db
    hpsearch = str(Path(sys.executable).parent / "hpsearch")
    db = folder / "h.db"
    cases = [
        (0o444, 0o755, f"the database file {db} is read-only; make it writable (chmod u+w {db}) or pass another --storage"),
        (0o644, 0o555, f"the database's folder {folder} is read-only, and SQLite writes its log files (h.db-wal, h.db-shm)"),
    ]
    for file_mode, folder_mode, expected in cases:
        db.chmod(file_mode)
        folder.chmod(folder_mode)
        out = subprocess.run(
            _as_reader([hpsearch, "launch", str(write_study()), "--storage", url, "--n-trials", "6"]),
            check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith(f"Error: storage {url}: {expected}"), out.stderr
    db.chmod(0o444)
    upgrade_ = subprocess.run(_as_reader([hpsearch, "db", "upgrade", "--storage", url]), check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert upgrade_.returncode == 1 and upgrade_.stderr.strip() == f"Error: storage {url}: {cases[0][2]}", upgrade_.stderr
    folder.chmod(0o755)
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 4  # nothing was written


def test_a_reader_never_holds_the_write_lock(sqlite_url, write_study) -> None:
    """A read transaction left open must not keep a writer waiting (deferred BEGIN)."""
    import sqlite3

    run_tiny(write_study, sqlite_url)
    reader = open_storage(resolve_url(sqlite_url), read_only=True)
    with reader.engine.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM trials")).scalar()  # inside a transaction now
        writer = sqlite3.connect(sa.engine.make_url(sqlite_url).database, timeout=0.5, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # raises 'database is locked' behind an IMMEDIATE reader
        writer.execute("UPDATE studies SET study_name = study_name")
        writer.execute("COMMIT")
        writer.close()


def test_a_database_ahead_of_this_hpsearch_is_refused_by_every_command(tmp_path, write_study) -> None:
    url = fixture_copy("hpsearch-0002.sqlite3", tmp_path)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    expected = (
        f"Error: storage {url}: the hpsearch schema is at 0099_from_the_future, written by a newer "
        "hpsearch than this one; upgrade hpsearch (pip install -U hpsearch)"
    )
    commands = [["launch", str(write_study())], ["studies"], ["trials", "tiny"], ["best", "tiny"], ["export", "tiny"], ["db", "check"], ["db", "upgrade"]]
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--storage", url])
        assert result.exit_code == 1 and result.stderr.strip() == expected, (command, result.output, result.exception)
    with engine.connect() as conn:  # nothing was migrated or stamped
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0099_from_the_future"
    engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_upgrade_creates_a_missing_server_database(kind) -> None:
    import uuid

    from tests.conftest import _server_or_skip

    server = sa.engine.make_url(_server_or_skip(kind))
    name = f"hps_new_{uuid.uuid4().hex[:10]}"
    url = server.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        result = CliRunner().invoke(cli, ["db", "upgrade", "--storage", url])
        assert result.exit_code == 0, result.output
        assert schema_versions(resolve_url(url)).up_to_date
        assert CliRunner().invoke(cli, ["db", "upgrade", "--storage", url]).exit_code == 0  # again: nothing to do
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if kind == "postgres" else ""))
        admin.dispose()
