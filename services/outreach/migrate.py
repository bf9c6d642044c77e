"""Versioned schema migrations of the outreach store (Alembic), applied at start-up.

    python -m services.outreach.migrate            # upgrade DATABASE_URL (or the SQLite default) to head
    python -m services.outreach.migrate --current  # print the applied revision

The version lives in its own table, so outreach can share a database with
other services. On PostgreSQL an advisory lock makes replicas that start
together migrate one after the other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

VERSION_TABLE = "outreach_schema_version"
# The revision whose tables `create_all` made before migrations existed.
_PRE_MIGRATION_REVISION = "0001"
_LOCK_KEY = 0x6F757472  # "outr"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(Path(__file__).parent / "migrations"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is there already."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        config = _config(connection)
        inspector = sa.inspect(connection)
        if inspector.has_table("usage_events") and not inspector.has_table(VERSION_TABLE):
            # A database made by create_all before migrations existed holds revision 0001.
            command.stamp(config, _PRE_MIGRATION_REVISION)
        command.upgrade(config, revision)


def main() -> None:
    from servicekit.database import database_url, make_engine
    from services.outreach.settings import OutreachStoreSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--current", action="store_true", help="print the applied revision and exit")
    args = parser.parse_args()
    settings = OutreachStoreSettings()
    engine = make_engine(database_url(settings.database_url, settings.data_dir, "outreach"))
    try:
        if not args.current:
            upgrade(engine)
        print(current_revision(engine) or "none")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
