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
