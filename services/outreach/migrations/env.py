"""Alembic environment of the outreach schema: always run from
services.outreach.migrate with a connection in config.attributes."""

from alembic import context

from services.outreach.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
