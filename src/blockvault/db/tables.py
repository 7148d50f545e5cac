"""The metadata schema, as SQLAlchemy Core tables. Alembic migrations (db/migrations/) create and evolve it.

Two databases: the global identity database and one database per region (a region is self-contained).
Tags and other maps are JSON text. Times are timezone-aware UTC datetimes stored as ISO strings.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

identity_metadata = MetaData()
region_metadata = MetaData()

# --- identity (global) -------------------------------------------------------------------------------------------

tenancies = Table(
    "tenancies",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("home_region", String, nullable=False),
    Column("time_created", String, nullable=False),
)

compartments = Table(
    "compartments",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("parent_id", String, nullable=True),
    Column("name", String, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

users = Table(
    "users",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("tenancy_id", String, ForeignKey("tenancies.id"), nullable=False),
    Column("name", String, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

api_keys = Table(
    "api_keys",
    identity_metadata,
    Column("user_id", String, ForeignKey("users.id"), primary_key=True),
    Column("fingerprint", String, primary_key=True),
    Column("key_pem", Text, nullable=False),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

groups = Table(
    "groups",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("tenancy_id", String, ForeignKey("tenancies.id"), nullable=False),
    Column("name", String, nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

memberships = Table(
    "memberships",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("user_id", String, ForeignKey("users.id"), nullable=False, index=True),
    Column("group_id", String, ForeignKey("groups.id"), nullable=False, index=True),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

policies = Table(
    "policies",
    identity_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("name", String, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("statements", Text, nullable=False),  # JSON array of statement strings, as given
    Column("version_date", String, nullable=True),
    Column("state", String, nullable=False),
    Column("time_created", String, nullable=False),
)

# --- region ------------------------------------------------------------------------------------------------------

vaults = Table(
    "vaults",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("display_name", String, nullable=False),
    Column("vault_type", String, nullable=False),
    Column("state", String, nullable=False),
    Column("prev_state", String, nullable=True),
    Column("time_created", String, nullable=False),
    Column("time_of_deletion", String, nullable=True),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
    # vault replication (docs/design/vault-replication.md): a replica vault names its source vault and region;
    # a vault, key or version with no source is a primary (isPrimary)
    Column("source_vault_id", String, nullable=True, index=True),
    Column("source_region", String, nullable=True),
    Column("replication_id", String, nullable=True),
)

keys = Table(
    "keys",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("vault_id", String, ForeignKey("vaults.id"), nullable=False, index=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("display_name", String, nullable=False),
    Column("algorithm", String, nullable=False),
    Column("length", Integer, nullable=False),
    Column("curve_id", String, nullable=True),
    Column("protection_mode", String, nullable=False),
    Column("state", String, nullable=False),
    Column("prev_state", String, nullable=True),
    Column("current_version_id", String, nullable=False),
    Column("time_created", String, nullable=False),
    Column("time_of_deletion", String, nullable=True),
    Column("scheduled_with_vault", Boolean, nullable=False, default=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
    Column("source_key_id", String, nullable=True, index=True),  # replica: the primary key (ciphertext identity)
    Column("replication_id", String, nullable=True),
)

key_versions = Table(
    "key_versions",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("key_id", String, ForeignKey("keys.id"), nullable=False, index=True),
    Column("vault_id", String, nullable=False),
    Column("compartment_id", String, nullable=False),
    Column("state", String, nullable=False),
    Column("prev_state", String, nullable=True),
    Column("origin", String, nullable=False),
    Column("time_created", String, nullable=False),
    Column("time_of_deletion", String, nullable=True),
    Column("source_version_id", String, nullable=True, index=True),  # replica: the primary version
    Column("replication_id", String, nullable=True),
)

# Vault replication, kept by the source region: one row per (source vault, destination region) ever replicated to.
vault_replicas = Table(
    "vault_replicas",
    region_metadata,
    Column("id", String, primary_key=True),  # the replica vault's OCID (minted by the destination region)
    Column("vault_id", String, nullable=False, index=True),
    Column("region", String, nullable=False),
    Column("status", String, nullable=False),  # CREATING | CREATED | DELETING | DELETED
    Column("management_endpoint", String, nullable=False),
    Column("crypto_endpoint", String, nullable=False),
    Column("time_created", String, nullable=False),
)

# Replicated operations (GetReplicationStatus): per replication id and region, REPLICATING or REPLICATED.
replication_ops = Table(
    "replication_ops",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("replication_id", String, nullable=False, index=True),
    Column("vault_id", String, nullable=False),
    Column("region", String, nullable=False),
    Column("status", String, nullable=False),
    Column("time_created", String, nullable=False),
)

volumes = Table(
    "volumes",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),  # volume | bootvolume
    Column("compartment_id", String, nullable=False, index=True),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("size_gb", Integer, nullable=False),
    Column("vpus_per_gb", Integer, nullable=False),
    Column("state", String, nullable=False),
    Column("kms_key_id", String, nullable=True, index=True),  # None: the region's provider-managed key
    Column("key_version_id", String, nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("is_hydrated", Boolean, nullable=False),
    Column("source_type", String, nullable=True),
    Column("source_id", String, nullable=True),
    Column("clone_snapshot", String, nullable=True),  # snapshot of the source a hydrating clone reads through
    Column("faulty_reason", Text, nullable=True),
    Column("time_created", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
    Column("volume_group_id", String, nullable=True, index=True),  # at most one group (blockstorage/groups.py)
)

backups = Table(
    "backups",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),  # volume | bootvolume
    Column("volume_id", String, nullable=False, index=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("display_name", String, nullable=False),
    Column("type", String, nullable=False),
    Column("source_type", String, nullable=False),
    Column("state", String, nullable=False),
    Column("kms_key_id", String, nullable=True, index=True),
    Column("size_gb", Integer, nullable=False),
    Column("unique_size_bytes", Integer, nullable=False, default=0),
    Column("parent_id", String, nullable=True),
    Column("snapshot_seq", Integer, nullable=True),
    Column("snapshot_name", String, nullable=True),
    Column("faulty_reason", Text, nullable=True),
    Column("time_created", String, nullable=False),
    Column("time_request_received", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
    Column("expiration_time", String, nullable=True),  # scheduled (policy) backups only (R3.8)
)

# Every data key a backup needs to read its manifest and chunks, each wrapped under the backup's own key binding.
backup_deks = Table(
    "backup_deks",
    region_metadata,
    Column("backup_id", String, ForeignKey("backups.id"), primary_key=True),
    Column("dek_id", String, primary_key=True),
    Column("key_version_id", String, nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
)

jobs = Table(
    "jobs",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("operation", String, nullable=False),
    Column("resource_id", String, nullable=False, index=True),
    Column("compartment_id", String, nullable=False),
    Column("state", String, nullable=False),  # ACCEPTED | IN_PROGRESS | SUCCEEDED | FAILED
    Column("percent_complete", Float, nullable=False, default=0.0),
    Column("payload", Text, nullable=False, default="{}"),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("time_accepted", String, nullable=False),
    Column("time_started", String, nullable=True),
    Column("time_finished", String, nullable=True),
)
Index("ix_jobs_state", jobs.c.state)

# Volume attachments (NBD exports): one row per attachment; the credential is stored wrapped, never in the clear.
attachments = Table(
    "attachments",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("volume_id", String, nullable=False, index=True),
    Column("kind", String, nullable=False),  # volume | bootvolume
    Column("compartment_id", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("state", String, nullable=False),  # ATTACHING | ATTACHED | DETACHING | DETACHED
    Column("export_name", String, nullable=False, unique=True),
    Column("transport", String, nullable=False),  # plain | tls (x509 client certificate) | tls-psk (not yet)
    Column("psk_identity", String, nullable=True),
    Column("credential", LargeBinary, nullable=True),  # tls: the client certificate's SHA-256 fingerprint
    Column("key_version_id", String, nullable=True),  # what wrapped the credential
    Column("is_read_only", Boolean, nullable=False, default=False),
    Column("time_created", String, nullable=False),
)

retry_tokens = Table(
    "retry_tokens",
    region_metadata,
    Column("token", String, primary_key=True),
    Column("principal", String, primary_key=True),
    Column("request_hash", String, nullable=False),
    Column("status", Integer, nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("time_created", String, nullable=False),
)

# --- volume replication (blockstorage/replication.py, docs/design/replication.md) ------------------------------
# A block or boot volume replica, in its DESTINATION region: its DEK is wrapped by that region's key (xrrKmsKeyId)
# or provider key, never by a key of the source. `sync_count`/`synced_seq` name the last COMPLETED sync.
volume_replicas = Table(
    "volume_replicas",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),  # volume | bootvolume
    Column("compartment_id", String, nullable=False, index=True),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("source_region", String, nullable=False),
    Column("source_volume_id", String, nullable=False, index=True),
    Column("size_gb", Integer, nullable=False),
    Column("state", String, nullable=False),
    Column("kms_key_id", String, nullable=True, index=True),
    Column("key_version_id", String, nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
    Column("sync_count", Integer, nullable=False, default=0),
    Column("synced_seq", Integer, nullable=False, default=0),
    Column("bytes_transferred", Integer, nullable=False, default=0),
    Column("activating_volume_id", String, nullable=True),
    Column("faulty_reason", Text, nullable=True),
    Column("time_created", String, nullable=False),
    Column("time_last_synced", String, nullable=True),
    Column("next_sync_at", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
    # A member replica of a volume group replica: synced only by its group's coordinated sync (replication.md).
    Column("volume_group_replica_id", String, nullable=True, index=True),
)

# The SOURCE region's record of where each of its volumes replicates to (GET volume shows it; resize refuses).
replica_links = Table(
    "replica_links",
    region_metadata,
    Column("id", String, primary_key=True),  # the replica's OCID (it lives in `region`)
    Column("volume_id", String, nullable=False, index=True),
    Column("region", String, nullable=False),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("kms_key_id", String, nullable=True),
    Column("time_created", String, nullable=False),
    Column("volume_group_replica_id", String, nullable=True),  # set: the link is managed by its group (R5.20)
)

# Volume group replication (blockstorage/replication.py, docs/design/replication.md "Volume group replicas"):
# the DESTINATION's group replica (its members are volume_replicas rows naming it) ...
volume_group_replicas = Table(
    "volume_group_replicas",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("source_region", String, nullable=False),
    Column("source_group_id", String, nullable=False, index=True),
    Column("state", String, nullable=False),
    Column("kms_key_id", String, nullable=True),
    Column("sync_count", Integer, nullable=False, default=0),
    Column("activating_group_id", String, nullable=True),
    Column("faulty_reason", Text, nullable=True),
    Column("time_created", String, nullable=False),
    Column("time_last_synced", String, nullable=True),
    Column("next_sync_at", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
)

# ... and the SOURCE's record of where each of its volume groups replicates to (GET volume group shows it).
group_replica_links = Table(
    "group_replica_links",
    region_metadata,
    Column("id", String, primary_key=True),  # the group replica's OCID (it lives in `region`)
    Column("volume_group_id", String, nullable=False, index=True),
    Column("region", String, nullable=False),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("kms_key_id", String, nullable=True),
    Column("time_created", String, nullable=False),
)

# --- volume groups (blockstorage/groups.py, docs/design/volume-groups.md) ----------------------------------------
# Membership is volumes.volume_group_id (a volume is in at most one group); a group backup's members are ordinary
# volume backups, named in `members` (JSON: volume id -> backup id).
volume_groups = Table(
    "volume_groups",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("availability_domain", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("state", String, nullable=False),
    Column("source_details", Text, nullable=False, default="{}"),  # the CreateVolumeGroup sourceDetails, as given
    Column("time_created", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
)

volume_group_backups = Table(
    "volume_group_backups",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("volume_group_id", String, nullable=False, index=True),
    Column("display_name", String, nullable=False),
    Column("type", String, nullable=False),
    Column("state", String, nullable=False),
    Column("members", Text, nullable=False, default="{}"),
    Column("source_volume_group_backup_id", String, nullable=True),  # a cross-region copy: the group backup copied
    Column("source_type", String, nullable=False, default="MANUAL"),  # SCHEDULED: made by a backup policy
    Column("expiration_time", String, nullable=True),  # scheduled (policy) group backups only (R3.8)
    Column("time_created", String, nullable=False),
    Column("time_request_received", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
)

# Backup policies (blockstorage/scheduler.py): user-defined policies, assignments (one per asset), and what the
# scheduler did, so that it is idempotent across restarts (docs/design/backup-policies.md).
volume_backup_policies = Table(
    "volume_backup_policies",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("compartment_id", String, nullable=False, index=True),
    Column("display_name", String, nullable=False),
    Column("destination_region", String, nullable=True),
    Column("schedules", Text, nullable=False, default="[]"),  # JSON list of VolumeBackupSchedule (wire form)
    Column("time_created", String, nullable=False),
    Column("freeform_tags", Text, nullable=False, default="{}"),
    Column("defined_tags", Text, nullable=False, default="{}"),
)

volume_backup_policy_assignments = Table(
    "volume_backup_policy_assignments",
    region_metadata,
    Column("id", String, primary_key=True),
    Column("asset_id", String, nullable=False, unique=True),
    Column("policy_id", String, nullable=False, index=True),
    Column("xrc_kms_key_id", String, nullable=True),
    Column("time_created", String, nullable=False),
)

# The newest run instant of each (assignment, period) the scheduler has handled (ran or skipped).
backup_schedule_marks = Table(
    "backup_schedule_marks",
    region_metadata,
    Column("assignment_id", String, primary_key=True),
    Column("period", String, primary_key=True),
    Column("last_instant", String, nullable=False),
)

# One row per scheduled backup the scheduler decided to make: the intent is written before the backup, so a crash
# in between neither loses nor doubles it; the cross-region copy and its expiration are tracked here too.
scheduled_backups = Table(
    "scheduled_backups",
    region_metadata,
    Column("id", String, primary_key=True),  # assignment id + period + run instant
    Column("assignment_id", String, nullable=False, index=True),
    Column("asset_id", String, nullable=False),
    Column("period", String, nullable=False),
    Column("instant", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("backup_type", String, nullable=False),
    Column("retention_seconds", Integer, nullable=False),
    Column("state", String, nullable=False),  # PENDING | CREATED | COPYING | DONE | FAILED
    Column("backup_id", String, nullable=True),
    Column("destination_region", String, nullable=True),
    Column("xrc_kms_key_id", String, nullable=True),
    Column("copy_id", String, nullable=True),
    Column("error", Text, nullable=True),
    Column("time_created", String, nullable=False),
)
