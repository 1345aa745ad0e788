"""Alembic environment for hpsearch's own tables.

Optuna keeps its schema version in alembic's default table `alembic_version`, in the same
database, so ours lives in `hpsearch_alembic_version`, and autogenerate looks only at
`hpsearch_*` tables (otherwise it would propose dropping Optuna's). `render_as_batch` lets
later migrations alter tables on SQLite.
"""

from alembic import context
from sqlalchemy import create_engine

from hpsearch.db.schema import VERSION_TABLE
from hpsearch.db.tables import include_name, include_object, metadata


def run_migrations(connection):
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run_migrations(conn)
