"""Schema v1 of the region database, frozen into explicit operations (tests/unit/test_migrations.py checks the
migrated schema against db/tables.py; every later change comes as its own revision)."""

import sqlalchemy as sa
from alembic import op

revision = "region_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("volume_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("export_name", sa.String(), nullable=False),
        sa.Column("transport", sa.String(), nullable=False),
        sa.Column("psk_identity", sa.String(), nullable=True),
        sa.Column("credential", sa.LargeBinary(), nullable=True),
        sa.Column("key_version_id", sa.String(), nullable=True),
        sa.Column("is_read_only", sa.Boolean(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("export_name"),
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachments_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "backups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("volume_id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("source_type", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("unique_size_bytes", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(), nullable=True),
        sa.Column("snapshot_seq", sa.Integer(), nullable=True),
        sa.Column("snapshot_name", sa.String(), nullable=True),
        sa.Column("faulty_reason", sa.Text(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_request_received", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_backups_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_backups_kms_key_id"), ["kms_key_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_backups_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("operation", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("percent_complete", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("time_accepted", sa.String(), nullable=False),
        sa.Column("time_started", sa.String(), nullable=True),
        sa.Column("time_finished", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_resource_id"), ["resource_id"], unique=False)
        batch_op.create_index("ix_jobs_state", ["state"], unique=False)

    op.create_table(
        "retry_tokens",
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("request_hash", sa.String(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("token", "principal"),
    )
    op.create_table(
        "vaults",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("vault_type", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("prev_state", sa.String(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_of_deletion", sa.String(), nullable=True),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vaults", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vaults_compartment_id"), ["compartment_id"], unique=False)

    op.create_table(
        "volumes",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("vpus_per_gb", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("key_version_id", sa.String(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("is_hydrated", sa.Boolean(), nullable=False),
        sa.Column("source_type", sa.String(), nullable=True),
        sa.Column("source_id", sa.String(), nullable=True),
        sa.Column("clone_snapshot", sa.String(), nullable=True),
        sa.Column("faulty_reason", sa.Text(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volumes_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_kms_key_id"), ["kms_key_id"], unique=False)

    op.create_table(
        "backup_deks",
        sa.Column("backup_id", sa.String(), nullable=False),
        sa.Column("dek_id", sa.String(), nullable=False),
        sa.Column("key_version_id", sa.String(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["backup_id"],
            ["backups.id"],
        ),
        sa.PrimaryKeyConstraint("backup_id", "dek_id"),
    )
    op.create_table(
        "keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("vault_id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("algorithm", sa.String(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("curve_id", sa.String(), nullable=True),
        sa.Column("protection_mode", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("prev_state", sa.String(), nullable=True),
        sa.Column("current_version_id", sa.String(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_of_deletion", sa.String(), nullable=True),
        sa.Column("scheduled_with_vault", sa.Boolean(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vault_id"],
            ["vaults.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_keys_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_keys_vault_id"), ["vault_id"], unique=False)

    op.create_table(
        "key_versions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("vault_id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("prev_state", sa.String(), nullable=True),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_of_deletion", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["keys.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("key_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_versions_key_id"), ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("key_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_versions_key_id"))

    op.drop_table("key_versions")
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_keys_vault_id"))
        batch_op.drop_index(batch_op.f("ix_keys_compartment_id"))

    op.drop_table("keys")
    op.drop_table("backup_deks")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_kms_key_id"))
        batch_op.drop_index(batch_op.f("ix_volumes_compartment_id"))

    op.drop_table("volumes")
    with op.batch_alter_table("vaults", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vaults_compartment_id"))

    op.drop_table("vaults")
    op.drop_table("retry_tokens")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state")
        batch_op.drop_index(batch_op.f("ix_jobs_resource_id"))

    op.drop_table("jobs")
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backups_volume_id"))
        batch_op.drop_index(batch_op.f("ix_backups_kms_key_id"))
        batch_op.drop_index(batch_op.f("ix_backups_compartment_id"))

    op.drop_table("backups")
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachments_volume_id"))

    op.drop_table("attachments")
