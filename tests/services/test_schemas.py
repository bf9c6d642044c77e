"""Every service's migrations, applied to an empty database, give exactly the
tables its ORM models describe (columns, nullability, indexes, unique and
foreign keys), on SQLite and PostgreSQL; a model change without a migration
fails here."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from servicekit.migrations import Schema
from services.actions.migrations import SCHEMA as ACTIONS
from services.actions.models import Base as ActionsBase
from services.concierge.migrations import SCHEMA as CONCIERGE
from services.concierge.models import Base as ConciergeBase
from services.escalation.migrations import SCHEMA as ESCALATION
from services.escalation.models import Base as EscalationBase
from services.outreach.migrations import SCHEMA as OUTREACH
from services.outreach.models import Base as OutreachBase
from services.triage.contacts import Base as TriageContactsBase
from services.triage.migrations import SCHEMA as TRIAGE
from services.triage.tier0_store import Base as TriageBase


def _merged(*metadatas: sa.MetaData) -> sa.MetaData:
    """One service's tables declared on several declarative bases, as one schema."""
    merged = sa.MetaData()
    for metadata in metadatas:
        for table in metadata.tables.values():
            table.to_metadata(merged)
    return merged


SERVICES = {
    "actions": (ACTIONS, ActionsBase.metadata),
    "concierge": (CONCIERGE, ConciergeBase.metadata),
    "escalation": (ESCALATION, EscalationBase.metadata),
    "outreach": (OUTREACH, OutreachBase.metadata),
    "triage": (TRIAGE, _merged(TriageBase.metadata, TriageContactsBase.metadata)),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_migrations_give_the_models_schema(service: str, engine: Engine) -> None:
    schema, metadata = SERVICES[service]
    assert schema.migrate(engine) == list(range(1, schema.latest + 1))

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = [
            d for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and d[1].name == schema.version_table)
        ]
    assert differences == []
    # Applied at every start: the second time there is nothing to do.
    assert schema.migrate(engine) == []


def test_services_sharing_a_database_keep_their_versions_apart(engine: Engine) -> None:
    schemas: list[Schema] = [schema for schema, _ in SERVICES.values()]
    for schema in schemas:
        schema.migrate(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {schema.version_table for schema in schemas} <= tables
    for schema in schemas:
        assert schema.migrate(engine) == []
