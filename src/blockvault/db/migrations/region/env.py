"""Alembic environment for the region database; the caller hands over an open connection."""

from alembic import context

from blockvault.db.tables import region_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=region_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
