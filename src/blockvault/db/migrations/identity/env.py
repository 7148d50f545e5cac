"""Alembic environment for the identity database; the caller hands over an open connection."""

from alembic import context

from blockvault.db.tables import identity_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=identity_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
