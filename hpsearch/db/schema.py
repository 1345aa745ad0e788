"""Both schema versions of a database, and the upgrade that brings them to head.

Optuna keeps its schema version in alembic's default table `alembic_version`; hpsearch's
tables are versioned in `VERSION_TABLE`, by the alembic history in the top-level `alembic/`
folder (shipped inside the package as `hpsearch/alembic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import StorageError
from .urls import mask_url

if TYPE_CHECKING:
    import optuna

VERSION_TABLE = "hpsearch_alembic_version"


@dataclass(frozen=True)
class SchemaVersions:
    optuna_current: str | None
    optuna_head: str
    ours_current: str | None
    ours_head: str

    @property
    def up_to_date(self) -> bool:
        return self.optuna_current == self.optuna_head and self.ours_current == self.ours_head



def versions_of(storage: "optuna.storages.RDBStorage", url: str) -> SchemaVersions:
    """Both versions; refuses a database a newer hpsearch has upgraded (nothing here can read
    its tables, and no migration of ours leads back)."""
    from alembic.runtime.migration import MigrationContext

    with storage.engine.connect() as conn:
        ours = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        optuna_current = MigrationContext.configure(conn).get_current_revision()
    if ours is not None and ours not in {r.revision for r in _script().walk_revisions()}:
        raise StorageError(
            f"storage {mask_url(url)}: the hpsearch schema is at {ours}, written by a newer "
            "hpsearch than this one; upgrade hpsearch (pip install -U hpsearch)"
        )
    return SchemaVersions(
        optuna_current=optuna_current,
        optuna_head=storage.get_head_version(),
        ours_current=ours,
        ours_head=_script().get_current_head() or "",
    )


def behind(url: str, which: str, current: str | None, head: str) -> str:
    return (
        f"storage {mask_url(url)}: the {which} schema is at {current or 'none'}, this hpsearch "
        f"needs {head}; run: hpsearch db upgrade --storage '{mask_url(url)}'"
    )


def migrations_dir() -> Path:
    """The alembic history: inside the installed package, or the source tree's top level."""
    here = Path(__file__).resolve().parent.parent
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


def alembic_upgrade(engine: sa.engine.Engine) -> None:
    import logging

    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
