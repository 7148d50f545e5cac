"""Schema v1 of the identity database.

Revision 0001 creates the schema as db/tables.py defines it today. Before the first change to tables.py, freeze this
body into explicit op.create_table calls; every later change MUST come
with an explicit op-based migration; tests/unit/test_migrations.py fails when the migrated schema and tables.py differ.
"""

from alembic import op

from blockvault.db.tables import identity_metadata

revision = "identity_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity_metadata.create_all(bind=op.get_bind())


def downgrade() -> None:
    identity_metadata.drop_all(bind=op.get_bind())
