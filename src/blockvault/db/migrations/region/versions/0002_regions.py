"""Schema v2 of the region database: regions (volume and vault replication, volume groups, backup policies)."""

import sqlalchemy as sa
from alembic import op

revision = "region_0002"
down_revision = "region_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_schedule_marks",
        sa.Column("assignment_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=False),
        sa.Column("last_instant", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("assignment_id", "period"),
    )
    op.create_table(
        "group_replica_links",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("volume_group_id", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("group_replica_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_replica_links_volume_group_id"), ["volume_group_id"], unique=False)

    op.create_table(
        "replica_links",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("volume_id", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("volume_group_replica_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("replica_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replica_links_volume_id"), ["volume_id"], unique=False)

    op.create_table(
        "replication_ops",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("replication_id", sa.String(), nullable=False),
        sa.Column("vault_id", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("replication_ops", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replication_ops_replication_id"), ["replication_id"], unique=False)

    op.create_table(
        "scheduled_backups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("assignment_id", sa.String(), nullable=False),
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=False),
        sa.Column("instant", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("backup_type", sa.String(), nullable=False),
        sa.Column("retention_seconds", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("backup_id", sa.String(), nullable=True),
        sa.Column("destination_region", sa.String(), nullable=True),
        sa.Column("xrc_kms_key_id", sa.String(), nullable=True),
        sa.Column("copy_id", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scheduled_backups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduled_backups_assignment_id"), ["assignment_id"], unique=False)

    op.create_table(
        "vault_replicas",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("vault_id", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("management_endpoint", sa.String(), nullable=False),
        sa.Column("crypto_endpoint", sa.String(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vault_replicas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vault_replicas_vault_id"), ["vault_id"], unique=False)

    op.create_table(
        "volume_backup_policies",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("destination_region", sa.String(), nullable=True),
        sa.Column("schedules", sa.Text(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_backup_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_backup_policies_compartment_id"), ["compartment_id"], unique=False)

    op.create_table(
        "volume_backup_policy_assignments",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("policy_id", sa.String(), nullable=False),
        sa.Column("xrc_kms_key_id", sa.String(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("asset_id"),
    )
    with op.batch_alter_table("volume_backup_policy_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_backup_policy_assignments_policy_id"), ["policy_id"], unique=False)

    op.create_table(
        "volume_group_backups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("volume_group_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("source_volume_group_backup_id", sa.String(), nullable=True),
        sa.Column("source_type", sa.String(), nullable=False),
        sa.Column("expiration_time", sa.String(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_request_received", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_group_backups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_group_backups_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_group_backups_volume_group_id"), ["volume_group_id"], unique=False)

    op.create_table(
        "volume_group_replicas",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("source_region", sa.String(), nullable=False),
        sa.Column("source_group_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("sync_count", sa.Integer(), nullable=False),
        sa.Column("activating_group_id", sa.String(), nullable=True),
        sa.Column("faulty_reason", sa.Text(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_last_synced", sa.String(), nullable=True),
        sa.Column("next_sync_at", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_group_replicas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_group_replicas_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_group_replicas_source_group_id"), ["source_group_id"], unique=False)

    op.create_table(
        "volume_groups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("source_details", sa.Text(), nullable=False),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_groups_compartment_id"), ["compartment_id"], unique=False)

    op.create_table(
        "volume_replicas",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("compartment_id", sa.String(), nullable=False),
        sa.Column("availability_domain", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("source_region", sa.String(), nullable=False),
        sa.Column("source_volume_id", sa.String(), nullable=False),
        sa.Column("size_gb", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("kms_key_id", sa.String(), nullable=True),
        sa.Column("key_version_id", sa.String(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("sync_count", sa.Integer(), nullable=False),
        sa.Column("synced_seq", sa.Integer(), nullable=False),
        sa.Column("bytes_transferred", sa.Integer(), nullable=False),
        sa.Column("activating_volume_id", sa.String(), nullable=True),
        sa.Column("faulty_reason", sa.Text(), nullable=True),
        sa.Column("time_created", sa.String(), nullable=False),
        sa.Column("time_last_synced", sa.String(), nullable=True),
        sa.Column("next_sync_at", sa.String(), nullable=False),
        sa.Column("freeform_tags", sa.Text(), nullable=False),
        sa.Column("defined_tags", sa.Text(), nullable=False),
        sa.Column("volume_group_replica_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("volume_replicas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volume_replicas_compartment_id"), ["compartment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_replicas_kms_key_id"), ["kms_key_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volume_replicas_source_volume_id"), ["source_volume_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_volume_replicas_volume_group_replica_id"), ["volume_group_replica_id"], unique=False
        )

    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiration_time", sa.String(), nullable=True))

    with op.batch_alter_table("key_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_version_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("replication_id", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_key_versions_source_version_id"), ["source_version_id"], unique=False)

    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_key_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("replication_id", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_keys_source_key_id"), ["source_key_id"], unique=False)

    with op.batch_alter_table("vaults", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_vault_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("source_region", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("replication_id", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_vaults_source_vault_id"), ["source_vault_id"], unique=False)

    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("volume_group_id", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_volumes_volume_group_id"), ["volume_group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_volume_group_id"))
        batch_op.drop_column("volume_group_id")

    with op.batch_alter_table("vaults", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vaults_source_vault_id"))
        batch_op.drop_column("replication_id")
        batch_op.drop_column("source_region")
        batch_op.drop_column("source_vault_id")

    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_keys_source_key_id"))
        batch_op.drop_column("replication_id")
        batch_op.drop_column("source_key_id")

    with op.batch_alter_table("key_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_versions_source_version_id"))
        batch_op.drop_column("replication_id")
        batch_op.drop_column("source_version_id")

    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("expiration_time")

    with op.batch_alter_table("volume_replicas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_replicas_volume_group_replica_id"))
        batch_op.drop_index(batch_op.f("ix_volume_replicas_source_volume_id"))
        batch_op.drop_index(batch_op.f("ix_volume_replicas_kms_key_id"))
        batch_op.drop_index(batch_op.f("ix_volume_replicas_compartment_id"))

    op.drop_table("volume_replicas")
    with op.batch_alter_table("volume_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_groups_compartment_id"))

    op.drop_table("volume_groups")
    with op.batch_alter_table("volume_group_replicas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_group_replicas_source_group_id"))
        batch_op.drop_index(batch_op.f("ix_volume_group_replicas_compartment_id"))

    op.drop_table("volume_group_replicas")
    with op.batch_alter_table("volume_group_backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_group_backups_volume_group_id"))
        batch_op.drop_index(batch_op.f("ix_volume_group_backups_compartment_id"))

    op.drop_table("volume_group_backups")
    with op.batch_alter_table("volume_backup_policy_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_backup_policy_assignments_policy_id"))

    op.drop_table("volume_backup_policy_assignments")
    with op.batch_alter_table("volume_backup_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_backup_policies_compartment_id"))

    op.drop_table("volume_backup_policies")
    with op.batch_alter_table("vault_replicas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_replicas_vault_id"))

    op.drop_table("vault_replicas")
    with op.batch_alter_table("scheduled_backups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduled_backups_assignment_id"))

    op.drop_table("scheduled_backups")
    with op.batch_alter_table("replication_ops", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replication_ops_replication_id"))

    op.drop_table("replication_ops")
    with op.batch_alter_table("replica_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replica_links_volume_id"))

    op.drop_table("replica_links")
    with op.batch_alter_table("group_replica_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_replica_links_volume_group_id"))

    op.drop_table("group_replica_links")
    op.drop_table("backup_schedule_marks")
