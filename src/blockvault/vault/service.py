"""The Vault (KMS) of one region: vaults, keys, key versions, crypto operations, and data keys for services.

Key material lives only in the keystore (one handle per key version, plus the region's provider-managed key).
Every use of a key asks its state first (D1): a disabled, pending-deletion or deleted key refuses with KeyUnusable,
naming the key and its state. Listeners (the Block Volume service) hear of every key state change, so they can
drop cached plaintext data keys at once.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import Engine

from blockvault import ids
from blockvault.clock import Clock
from blockvault.crypto.envelope import encode_context
from blockvault.db import tables
from blockvault.db.repos import TableRepo
from blockvault.errors import (
    Conflict,
    DecryptionFailed,
    InvalidArgument,
    KeyUnusable,
    NotFound,
    RelatedResourceNotFound,
)
from blockvault.vault import ciphertext, lifecycle
from blockvault.vault.keystore.base import Keystore, MaterialDestroyed
from blockvault.vault.model import Key, KeyVersion, ReplicationOp, Vault, VaultReplica, WrappedDek
from blockvault.vault.replication import (
    KeySnapshot,
    ReplicaReadOnly,
    ReplicaVaultInfo,
    ReplicaVaultSpec,
    VaultPeer,
    VersionSnapshot,
    material_context,
)

VAULT_TYPES = ("DEFAULT", "VIRTUAL_PRIVATE", "EXTERNAL")
PROTECTION_MODES = ("HSM", "SOFTWARE")
MAX_ASSOCIATED_DATA = 4096  # R6.27: the string form must be under 4096 characters
MAX_PLAINTEXT = 4096  # OCI's documented Encrypt limit (oci-wire.md §5.4)
_DEK_DOMAIN = b"blockvault.resource-dek.v1"

KeyListener = Callable[[str, str], None]  # (key id, new state)

REPLICABLE_VAULT_TYPES = ("VIRTUAL_PRIVATE",)  # R6.34: isVaultReplicable (docs/design/vault-replication.md)
CREATING, CREATED, DELETING = "CREATING", "CREATED", "DELETING"  # VaultReplicaSummary.status (R6.36)
REPLICATED = "REPLICATED"
_LIVE_REPLICA = (CREATING, CREATED)


def _iso(value: datetime) -> str:
    return value.isoformat()


def _iso_opt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt_opt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _tags_json(freeform: dict[str, str], defined: dict[str, Any]) -> str:
    return json.dumps({"freeform": freeform, "defined": defined}, sort_keys=True)


# A replication in progress: where it goes and the id of the operation being replicated.
_Replication = tuple[VaultReplica, str]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialized(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a state-changing Vault operation under the service's replication lock: read, push to the replica and
    commit happen one operation at a time, so the replica receives states in commit order."""

    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with cast("VaultService", args[0])._replicating:
            return method(*args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = method.__doc__, method.__name__
    return wrapper


_ACTION_OPERATIONS = {
    "enable": "EnableKey",
    "disable": "DisableKey",
    "schedule_deletion": "ScheduleKeyDeletion",
    "cancel_deletion": "CancelKeyDeletion",
}


def provider_handle(region: str) -> str:
    return f"provider/{region}/v1"


class VaultService:
    """Thread-safe: state lives in the database; the keystore and the listener list have their own locks."""

    def __init__(
        self,
        *,
        engine: Engine,
        keystore: Keystore,
        clock: Clock,
        region: str,
        region_key: str,
        endpoint: str,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.region, self.region_key, self.endpoint = region, region_key, endpoint.rstrip("/")
        self._engine, self._keystore, self._clock, self._random = engine, keystore, clock, random
        self.vaults = TableRepo(engine, tables.vaults, Vault)
        self.keys = TableRepo(engine, tables.keys, Key)
        self.versions = TableRepo(engine, tables.key_versions, KeyVersion)
        self.replicas = TableRepo(engine, tables.vault_replicas, VaultReplica)
        self.replication_ops = TableRepo(engine, tables.replication_ops, ReplicationOp)
        self._peers: dict[str, VaultPeer] = {}
        self._peer_keys: dict[str, bytes] = {}
        self._listeners: list[KeyListener] = []
        self._lock = threading.Lock()
        # Replicated operations push-then-commit one at a time in this process, so the replica receives the source's
        # states in the order they are committed (docs/design/vault-replication.md, Locks and concurrency).
        self._replicating = threading.RLock()
        self._keystore.create(provider_handle(region), 32)

    # --- events -----------------------------------------------------------------------------------------------

    def subscribe(self, listener: KeyListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _notify(self, key_id: str, state: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(key_id, state)

    # --- vaults -----------------------------------------------------------------------------------------------

    def management_endpoint(self, vault_id: str) -> str:
        return f"{self.endpoint}/kms/{vault_id}/management"

    def crypto_endpoint(self, vault_id: str) -> str:
        return f"{self.endpoint}/kms/{vault_id}/crypto"

    def create_vault(
        self,
        *,
        compartment_id: str,
        display_name: str,
        vault_type: str,
        freeform_tags: dict[str, str],
        defined_tags: dict[str, Any],
    ) -> Vault:
        if vault_type not in VAULT_TYPES:
            raise InvalidArgument(field="vaultType", reason=f"must be one of {', '.join(VAULT_TYPES)}")
        if vault_type == "EXTERNAL":
            raise InvalidArgument(field="vaultType", reason="EXTERNAL vaults (external key managers) are not supported")
        prefix = base64.b32encode(self._random(10)).decode().lower().rstrip("=")[:13]
        vault = Vault(
            id=ids.new("vault", self.region_key, future_use=prefix, random=self._random),
            compartment_id=compartment_id,
            display_name=display_name,
            vault_type=vault_type,
            state=lifecycle.ACTIVE,
            time_created=self._clock.now(),
            freeform_tags=freeform_tags,
            defined_tags=defined_tags,
        )
        self.vaults.insert(vault)
        return vault

    def get_vault(self, vault_id: str) -> Vault:
        vault = self.vaults.get(vault_id)
        if vault is None:
            raise NotFound(kind="vault", ident=vault_id)
        return vault

    def list_vaults(self, compartment_id: str) -> list[Vault]:
        return self.vaults.find(
            tables.vaults.c.compartment_id == compartment_id, order_by=[tables.vaults.c.time_created]
        )

    @_serialized
    def update_vault(
        self,
        vault_id: str,
        *,
        display_name: str | None,
        freeform_tags: dict[str, str] | None,
        defined_tags: dict[str, Any] | None,
    ) -> Vault:
        vault = self.get_vault(vault_id)
        self._require_primary(vault, "UpdateVault")
        lifecycle.vault_transition(vault_id, vault.state, "update")
        updated = replace(
            vault,
            display_name=display_name if display_name is not None else vault.display_name,
            freeform_tags=freeform_tags if freeform_tags is not None else vault.freeform_tags,
            defined_tags=defined_tags if defined_tags is not None else vault.defined_tags,
        )
        repl = self._replication(vault_id)
        if repl is not None:
            updated = replace(updated, replication_id=repl[1])
            self._push_vault(repl, updated)
        with self._engine.begin() as conn:
            self.vaults.save(updated, conn, expect={"state": vault.state})
            self._record(repl, vault_id, conn)
        return updated

    @_serialized
    def schedule_vault_deletion(self, vault_id: str, when: datetime | None) -> tuple[Vault, str]:
        """R2.13: every key not already scheduled goes to PENDING_DELETION with the vault; a key scheduled after
        the vault's time refuses the call (409)."""
        vault = self.get_vault(vault_id)
        self._require_primary(vault, "ScheduleVaultDeletion")
        transition = lifecycle.vault_transition(vault_id, vault.state, "schedule_deletion")
        now = self._clock.now()
        at = lifecycle.deletion_time(now, when)
        keys = self.keys.find(tables.keys.c.vault_id == vault_id)
        for key in keys:
            if key.state == lifecycle.PENDING_DELETION and key.time_of_deletion and key.time_of_deletion > at:
                raise Conflict(
                    kind="vault", ident=vault_id, reason=f"key {key.id} is scheduled for deletion after {at}"
                )
        changed = [
            (
                key,
                replace(
                    key,
                    state=lifecycle.PENDING_DELETION,
                    prev_state=key.state,
                    time_of_deletion=at,
                    scheduled_with_vault=True,
                ),
            )
            for key in keys
            if key.state in (lifecycle.ENABLED, lifecycle.DISABLED)
        ]
        updated = replace(vault, state=transition.final, prev_state=vault.state, time_of_deletion=at)
        return self._commit_vault_change(vault, updated, changed), transition.shown

    def _commit_vault_change(self, vault: Vault, updated: Vault, changed: list[tuple[Key, Key]]) -> Vault:
        """Replicate (RPO 0: the replica first), then commit the vault and its changed keys in one transaction."""
        with self._replicating:
            repl = self._replication(vault.id)
            if repl is not None:
                fresh = self.vaults.get(vault.id)
                if fresh is None or fresh.state != vault.state:
                    raise Conflict(kind="vault", ident=vault.id, reason="it was changed concurrently; try again")
                for old, _ in changed:
                    self._unchanged(old)
                updated = replace(updated, replication_id=repl[1])
                changed = [(old, replace(new, replication_id=repl[1])) for old, new in changed]
                self._push_vault(repl, updated)
                for _, new in changed:
                    self._push_key(repl, new, self._versions_of(new.id))
            with self._engine.begin() as conn:
                for old, new in changed:
                    self.keys.save(new, conn, expect={"state": old.state})
                self.vaults.save(updated, conn, expect={"state": vault.state})
                self._record(repl, vault.id, conn)
        for _, new in changed:
            self._notify(new.id, new.state)
        return updated

    @_serialized
    def cancel_vault_deletion(self, vault_id: str) -> tuple[Vault, str]:
        """R2.14: keys scheduled together with the vault return to their earlier state; keys scheduled before
        keep their own deletion."""
        vault = self.get_vault(vault_id)
        self._require_primary(vault, "CancelVaultDeletion")
        transition = lifecycle.vault_transition(vault_id, vault.state, "cancel_deletion")
        changed = [
            (
                key,
                replace(
                    key,
                    state=key.prev_state or lifecycle.ENABLED,
                    prev_state=None,
                    time_of_deletion=None,
                    scheduled_with_vault=False,
                ),
            )
            for key in self.keys.find(tables.keys.c.vault_id == vault_id)
            if key.state == lifecycle.PENDING_DELETION and key.scheduled_with_vault
        ]
        updated = replace(vault, state=transition.final, prev_state=None, time_of_deletion=None)
        return self._commit_vault_change(vault, updated, changed), transition.shown

    # --- keys -------------------------------------------------------------------------------------------------

    def _active_vault(self, vault_id: str, operation: str) -> Vault:
        vault = self.get_vault(vault_id)
        self._require_primary(vault, operation)
        if vault.state != lifecycle.ACTIVE:
            raise Conflict(kind="vault", ident=vault_id, reason=f"it is {vault.state}")
        return vault

    @_serialized
    def create_key(
        self,
        vault_id: str,
        *,
        compartment_id: str,
        display_name: str,
        algorithm: str,
        length: int,
        curve_id: str | None,
        protection_mode: str,
        freeform_tags: dict[str, str],
        defined_tags: dict[str, Any],
    ) -> Key:
        vault = self._active_vault(vault_id, "CreateKey")
        lifecycle.validate_shape(algorithm, length, curve_id)
        if protection_mode not in PROTECTION_MODES:
            raise InvalidArgument(field="protectionMode", reason=f"must be one of {', '.join(PROTECTION_MODES)}")
        prefix = ids.parse(vault.id).future_use
        key_id = ids.new("key", self.region_key, future_use=prefix, random=self._random)
        now = self._clock.now()
        version = KeyVersion(
            id=ids.new("keyversion", self.region_key, future_use=prefix, random=self._random),
            key_id=key_id,
            vault_id=vault_id,
            compartment_id=compartment_id,
            state=lifecycle.ENABLED,
            origin="INTERNAL",
            time_created=now,
        )
        key = Key(
            id=key_id,
            vault_id=vault_id,
            compartment_id=compartment_id,
            display_name=display_name,
            algorithm=algorithm,
            length=length,
            curve_id=curve_id,
            protection_mode=protection_mode,
            state=lifecycle.ENABLED,
            current_version_id=version.id,
            time_created=now,
            freeform_tags=freeform_tags,
            defined_tags=defined_tags,
        )
        if algorithm == "AES":
            self._keystore.create(version.id, length)
        repl = self._replication(vault_id)
        if repl is not None:
            key, version = replace(key, replication_id=repl[1]), replace(version, replication_id=repl[1])
            self._push_key(repl, key, [version])
        with self._engine.begin() as conn:
            self.keys.insert(key, conn)
            self.versions.insert(version, conn)
            self._record(repl, vault_id, conn)
        return key

    def get_key(self, key_id: str, vault_id: str | None = None) -> Key:
        key = self.keys.get(key_id)
        if key is None or (vault_id is not None and key.vault_id != vault_id):
            raise NotFound(kind="key", ident=key_id)
        return key

    def list_keys(self, vault_id: str, compartment_id: str) -> list[Key]:
        return self.keys.find(
            tables.keys.c.vault_id == vault_id,
            tables.keys.c.compartment_id == compartment_id,
            order_by=[tables.keys.c.time_created],
        )

    @_serialized
    def update_key(
        self,
        key_id: str,
        vault_id: str,
        *,
        display_name: str | None,
        freeform_tags: dict[str, str] | None,
        defined_tags: dict[str, Any] | None,
    ) -> Key:
        key = self.get_key(key_id, vault_id)
        self._require_primary(self.get_vault(key.vault_id), "UpdateKey")
        lifecycle.require_updatable("key", key_id, key.state)
        updated = replace(
            key,
            display_name=display_name if display_name is not None else key.display_name,
            freeform_tags=freeform_tags if freeform_tags is not None else key.freeform_tags,
            defined_tags=defined_tags if defined_tags is not None else key.defined_tags,
        )
        self._commit_key(key, updated)
        return updated

    def _commit_key(self, key: Key, updated: Key, new_version: KeyVersion | None = None) -> Key:
        """Replicate the key's new state (RPO 0: the replica first), then commit it here."""
        with self._replicating:
            repl = self._replication(key.vault_id)
            if repl is not None:
                self._unchanged(key)
                updated = replace(updated, replication_id=repl[1])
                if new_version is not None:
                    new_version = replace(new_version, replication_id=repl[1])
                versions = self._versions_of(key.id)
                self._push_key(repl, updated, versions + ([new_version] if new_version else []))
            with self._engine.begin() as conn:
                if new_version is not None:
                    self.versions.insert(new_version, conn)
                expect = {"state": key.state, "current_version_id": key.current_version_id}
                self.keys.save(updated, conn, expect=expect)
                self._record(repl, key.vault_id, conn)
        return updated

    def _unchanged(self, key: Key) -> None:
        """Under the replication lock: the key is still as read, so the snapshot about to be pushed is the next
        state (a lost race fails here, before the replica sees anything)."""
        fresh = self.keys.get(key.id)
        if fresh is None or (fresh.state, fresh.current_version_id) != (key.state, key.current_version_id):
            raise Conflict(kind="key", ident=key.id, reason="it was changed concurrently; try again")

    @_serialized
    def key_action(self, key_id: str, vault_id: str, action: str, when: datetime | None = None) -> tuple[Key, str]:
        """enable | disable | schedule_deletion | cancel_deletion. Returns the key and the state to show."""
        key = self.get_key(key_id, vault_id)
        vault = self.get_vault(key.vault_id)
        self._require_primary(vault, _ACTION_OPERATIONS[action])
        if action in ("enable", "disable", "schedule_deletion") and vault.state != lifecycle.ACTIVE:
            raise Conflict(kind="key", ident=key_id, reason=f"its vault is {vault.state}")
        transition = lifecycle.key_transition("key", key_id, key.state, action, key.prev_state)
        if action == "schedule_deletion":
            at = lifecycle.deletion_time(self._clock.now(), when)
            updated = replace(key, state=transition.final, prev_state=key.state, time_of_deletion=at)
        elif action == "cancel_deletion":
            updated = replace(key, state=transition.final, prev_state=None, time_of_deletion=None)
        else:
            updated = replace(key, state=transition.final)
        updated = self._commit_key(key, updated)
        self._notify(key_id, updated.state)
        return updated, transition.shown

    @_serialized
    def create_key_version(self, key_id: str, vault_id: str) -> KeyVersion:
        """R6.14: rotation needs an ENABLED key. The new version becomes current for new wraps (D8)."""
        key = self.get_key(key_id, vault_id)
        self._require_primary(self.get_vault(key.vault_id), "CreateKeyVersion")
        if key.state != lifecycle.ENABLED:
            raise Conflict(kind="key", ident=key_id, reason=f"it is {key.state}; rotation needs ENABLED")
        prefix = ids.parse(key.vault_id).future_use
        version = KeyVersion(
            id=ids.new("keyversion", self.region_key, future_use=prefix, random=self._random),
            key_id=key_id,
            vault_id=key.vault_id,
            compartment_id=key.compartment_id,
            state=lifecycle.ENABLED,
            origin="INTERNAL",
            time_created=self._clock.now(),
        )
        if key.algorithm == "AES":
            self._keystore.create(version.id, key.length)
        self._commit_key(key, replace(key, current_version_id=version.id), version)
        return self.versions.get(version.id) or version

    def list_key_versions(self, key_id: str, vault_id: str) -> list[KeyVersion]:
        self.get_key(key_id, vault_id)
        return self.versions.find(tables.key_versions.c.key_id == key_id, order_by=[tables.key_versions.c.time_created])

    def get_key_version(self, key_id: str, version_id: str, vault_id: str) -> KeyVersion:
        self.get_key(key_id, vault_id)
        version = self.versions.get(version_id)
        if version is None or version.key_id != key_id:
            raise NotFound(kind="key version", ident=version_id)
        return version

    # --- replication: source side (R6.30-R6.37, D5; docs/design/vault-replication.md) ------------------------

    def connect_peers(self, peers: Mapping[str, VaultPeer]) -> None:
        """The other regions this Vault may replicate to (the composition root wires them)."""
        self._peers = {name: peer for name, peer in peers.items() if name != self.region}

    @staticmethod
    def _require_primary(vault: Vault, operation: str) -> None:
        if not vault.is_primary:
            raise ReplicaReadOnly(
                vault_id=vault.id,
                source_vault_id=vault.source_vault_id,
                source_region=vault.source_region,
                operation=operation,
            )

    def _versions_of(self, key_id: str) -> list[KeyVersion]:
        return self.versions.find(tables.key_versions.c.key_id == key_id, order_by=[tables.key_versions.c.time_created])

    def _current_replica(self, vault_id: str) -> VaultReplica | None:
        found = self.replicas.find(
            tables.vault_replicas.c.vault_id == vault_id, tables.vault_replicas.c.status.in_(_LIVE_REPLICA)
        )
        return found[0] if found else None

    def _replication(self, vault_id: str) -> _Replication | None:
        """The live replica of a vault and a fresh replication id for the operation about to be replicated."""
        current = self._current_replica(vault_id)
        if current is None:
            return None
        return current, ids.new("vaultreplication", self.region_key, random=self._random)

    def _peer(self, region: str) -> VaultPeer:
        peer = self._peers.get(region)
        if peer is None:
            raise InvalidArgument(
                field="replicaRegion", reason=f"{region} is not another region of this realm that blockvault serves"
            )
        return peer

    def _peer_key(self, region: str) -> bytes:
        pem = self._peer_keys.get(region)
        if pem is None:
            pem = self._peer(region).transfer_public_key()
            self._peer_keys[region] = pem
        return pem

    def _vault_spec(self, vault: Vault, replication_id: str) -> ReplicaVaultSpec:
        return ReplicaVaultSpec(
            source_vault_id=vault.id,
            source_region=self.region,
            replication_id=replication_id,
            compartment_id=vault.compartment_id,
            display_name=vault.display_name,
            vault_type=vault.vault_type,
            state=vault.state,
            time_created=_iso(vault.time_created),
            time_of_deletion=_iso_opt(vault.time_of_deletion),
            tags_json=_tags_json(vault.freeform_tags, vault.defined_tags),
        )

    def _snapshot(self, region: str, key: Key, versions: list[KeyVersion], replication_id: str) -> KeySnapshot:
        """The key's whole state for the replica; live AES material goes wrapped for the destination keystore."""
        live = key.algorithm == "AES" and key.state != lifecycle.DELETED
        pem = self._peer_key(region) if live else b""
        out: list[VersionSnapshot] = []
        for v in versions:
            material = b""
            if live and v.state != lifecycle.DELETED:
                material = self._keystore.export_for_transfer(
                    v.id, pem, material_context(region, key.id, v.id, key.length)
                )
            out.append(
                VersionSnapshot(
                    source_version_id=v.id,
                    state=v.state,
                    origin=v.origin,
                    time_created=_iso(v.time_created),
                    time_of_deletion=_iso_opt(v.time_of_deletion),
                    material=material,
                )
            )
        return KeySnapshot(
            source_key_id=key.id,
            replication_id=replication_id,
            compartment_id=key.compartment_id,
            display_name=key.display_name,
            algorithm=key.algorithm,
            length=key.length,
            curve_id=key.curve_id,
            protection_mode=key.protection_mode,
            state=key.state,
            prev_state=key.prev_state,
            time_created=_iso(key.time_created),
            time_of_deletion=_iso_opt(key.time_of_deletion),
            scheduled_with_vault=key.scheduled_with_vault,
            current_version=key.current_version_id,
            versions=tuple(out),
            tags_json=_tags_json(key.freeform_tags, key.defined_tags),
        )

    def _push_vault(self, repl: _Replication, vault: Vault) -> ReplicaVaultInfo:
        replica, rid = repl
        return self._peer(replica.region).ensure_replica_vault(self._vault_spec(vault, rid))

    def _push_key(self, repl: _Replication, key: Key, versions: list[KeyVersion]) -> None:
        replica, rid = repl
        self._peer(replica.region).sync_key(key.vault_id, self._snapshot(replica.region, key, versions, rid))

    def _record(self, repl: _Replication | None, vault_id: str, conn: Any) -> None:
        """GetReplicationStatus: the operation `repl` names was applied in the replica's region (synchronously)."""
        if repl is None:
            return
        replica, rid = repl
        self._insert_replicated(rid, vault_id, replica.region, conn)

    def _insert_replicated(self, replication_id: str, vault_id: str, region: str, conn: Any) -> None:
        """One GetReplicationStatus row: operation `replication_id` was applied to the vault in `region`."""
        self.replication_ops.insert(
            ReplicationOp(
                id=base64.b32encode(self._random(15)).decode().lower(),
                replication_id=replication_id,
                vault_id=vault_id,
                region=region,
                status=REPLICATED,
                time_created=self._clock.now(),
            ),
            conn,
        )

    @_serialized
    def create_vault_replica(self, vault_id: str, region: str) -> VaultReplica:
        """R6.30: replicate to one other region; the same region again does nothing, another one is 409.

        Synchronous: the replica vault and every key (with its versions' material) exist in the destination when
        this returns, so the replica is CREATED at once (a retry after a failure resumes from CREATING)."""
        vault = self.get_vault(vault_id)
        self._require_primary(vault, "CreateVaultReplica")
        if vault.state != lifecycle.ACTIVE:
            raise Conflict(kind="vault", ident=vault_id, reason=f"it is {vault.state}; replication needs ACTIVE")
        if vault.vault_type not in REPLICABLE_VAULT_TYPES:
            raise Conflict(
                kind="vault",
                ident=vault_id,
                reason=f"a {vault.vault_type} vault is not replicable (isVaultReplicable is false):"
                " only VIRTUAL_PRIVATE vaults can be replicated",
            )
        if region == self.region:
            raise InvalidArgument(field="replicaRegion", reason="the replica must be in another region")
        self._peer(region)
        current = self._current_replica(vault_id)
        if current is not None and current.region != region:
            raise Conflict(
                kind="vault",
                ident=vault_id,
                reason=f"it is already replicated to {current.region}; delete that replica first",
            )
        if current is not None and current.status == CREATED:
            return current  # R6.30: the same region again is a no-op
        rid = ids.new("vaultreplication", self.region_key, random=self._random)
        info = self._peer(region).ensure_replica_vault(self._vault_spec(vault, rid))
        if current is None:
            current = VaultReplica(
                id=info.vault_id,
                vault_id=vault_id,
                region=region,
                status=CREATING,
                management_endpoint=info.management_endpoint,
                crypto_endpoint=info.crypto_endpoint,
                time_created=self._clock.now(),
            )
            self.replicas.insert(current)  # from here on, key changes are replicated as they happen
        repl = (current, rid)
        keys = [k for k in self.keys.find(tables.keys.c.vault_id == vault_id) if k.state != lifecycle.DELETED]
        for key in keys:
            self._push_key(repl, key, self._versions_of(key.id))
        created = replace(current, status=CREATED)
        with self._engine.begin() as conn:
            self.replicas.save(created, conn)
            fresh = self.vaults.get(vault_id, conn)
            if fresh is not None:
                self.vaults.save(replace(fresh, replication_id=rid), conn)
            for key in keys:
                fresh_key = self.keys.get(key.id, conn)
                if fresh_key is not None and fresh_key.replication_id is None:
                    self.keys.save(replace(fresh_key, replication_id=rid), conn)
                for version in self._versions_of(key.id):
                    if version.replication_id is None:
                        self.versions.save(replace(version, replication_id=rid), conn)
            self._record(repl, vault_id, conn)
        return created

    @_serialized
    def delete_vault_replica(self, vault_id: str, region: str) -> VaultReplica:
        """R6.37: stop replication; the replica vault and its keys are deleted and their material destroyed."""
        vault = self.get_vault(vault_id)
        self._require_primary(vault, "DeleteVaultReplica")
        current = self._current_replica(vault_id)
        if current is None or current.region != region:
            raise Conflict(kind="vault", ident=vault_id, reason=f"it has no replica in {region}")
        self._delete_replica(vault, current)
        return replace(current, status=lifecycle.DELETED)

    def _delete_replica(self, vault: Vault, current: VaultReplica) -> None:
        rid = ids.new("vaultreplication", self.region_key, random=self._random)
        self.replicas.save(replace(current, status=DELETING))
        self._peer(current.region).delete_replica_vault(vault.id, rid)
        with self._engine.begin() as conn:
            self.replicas.save(replace(current, status=lifecycle.DELETED), conn)
            self._record((current, rid), vault.id, conn)

    def list_vault_replicas(self, vault_id: str) -> list[VaultReplica]:
        self.get_vault(vault_id)
        return self.replicas.find(
            tables.vault_replicas.c.vault_id == vault_id, order_by=[tables.vault_replicas.c.time_created]
        )

    def replication_status(self, vault_id: str, replication_id: str) -> list[ReplicationOp]:
        """GetReplicationStatus on a vault's management endpoint: where the operation was applied."""
        found = self.replication_ops.find(
            tables.replication_ops.c.replication_id == replication_id,
            tables.replication_ops.c.vault_id == vault_id,
        )
        if not found:
            raise NotFound(kind="replication", ident=replication_id)
        return found

    # --- replication: destination side (VaultPeer, through vault/replication.py) ------------------------------

    def replica_transfer_public_key(self) -> bytes:
        return self._keystore.transfer_public_key()

    def _replica_vault_or_none(self, source_vault_id: str) -> Vault | None:
        found = self.vaults.find(
            tables.vaults.c.source_vault_id == source_vault_id, tables.vaults.c.state != lifecycle.DELETED
        )
        return found[0] if found else None

    def replica_ensure_vault(self, spec: ReplicaVaultSpec) -> ReplicaVaultInfo:
        found = self._replica_vault_or_none(spec.source_vault_id)
        tags = json.loads(spec.tags_json)
        fields: dict[str, Any] = {
            "compartment_id": spec.compartment_id,
            "display_name": spec.display_name,
            "state": spec.state,
            "time_of_deletion": _dt_opt(spec.time_of_deletion),
            "freeform_tags": tags["freeform"],
            "defined_tags": tags["defined"],
            "replication_id": spec.replication_id,
        }
        with self._engine.begin() as conn:
            if found is None:
                prefix = base64.b32encode(self._random(10)).decode().lower().rstrip("=")[:13]
                vault = Vault(
                    id=ids.new("vault", self.region_key, future_use=prefix, random=self._random),
                    vault_type=spec.vault_type,
                    time_created=self._clock.now(),
                    source_vault_id=spec.source_vault_id,
                    source_region=spec.source_region,
                    **fields,
                )
                self.vaults.insert(vault, conn)
            else:
                vault = replace(found, **fields)
                self.vaults.save(vault, conn)
            self._record_applied(spec.replication_id, vault.id, conn)
        return ReplicaVaultInfo(vault.id, self.management_endpoint(vault.id), self.crypto_endpoint(vault.id))

    def _record_applied(self, replication_id: str, vault_id: str, conn: Any) -> None:
        seen = self.replication_ops.find(
            tables.replication_ops.c.replication_id == replication_id,
            tables.replication_ops.c.vault_id == vault_id,
            conn=conn,
        )
        if seen:
            return  # one operation may touch the vault and several keys: one status per region
        self._insert_replicated(replication_id, vault_id, self.region, conn)

    def replica_sync_key(self, source_vault_id: str, snap: KeySnapshot) -> None:
        """Converge the replica key to the snapshot (D5): own OCIDs here, the source's material and versions."""
        vault = self._replica_vault_or_none(source_vault_id)
        if vault is None:
            raise NotFound(kind="replica of vault", ident=source_vault_id)
        prefix = ids.parse(vault.id).future_use
        existing = self.keys.find(tables.keys.c.source_key_id == snap.source_key_id)
        old = existing[0] if existing else None
        key_id = old.id if old is not None else ids.new("key", self.region_key, future_use=prefix, random=self._random)
        local = {v.canonical_id: v for v in self._versions_of(key_id)} if old is not None else {}
        dead = snap.state == lifecycle.DELETED
        inserts: list[KeyVersion] = []
        updates: list[KeyVersion] = []
        destroy: list[str] = []
        for vs in snap.versions:
            mine = local.get(vs.source_version_id)
            gone = dead or vs.state == lifecycle.DELETED
            if mine is None:
                mine = KeyVersion(
                    id=ids.new("keyversion", self.region_key, future_use=prefix, random=self._random),
                    key_id=key_id,
                    vault_id=vault.id,
                    compartment_id=snap.compartment_id,
                    state=vs.state,
                    origin=vs.origin,
                    time_created=datetime.fromisoformat(vs.time_created),
                    time_of_deletion=_dt_opt(vs.time_of_deletion),
                    source_version_id=vs.source_version_id,
                    replication_id=snap.replication_id,
                )
                if snap.algorithm == "AES" and not gone:
                    if not vs.material:
                        raise InvalidArgument(field="material", reason=f"version {vs.source_version_id} has none")
                    self._keystore.import_from_transfer(
                        mine.id,
                        vs.material,
                        material_context(self.region, snap.source_key_id, vs.source_version_id, snap.length),
                    )
                inserts.append(mine)
                local[vs.source_version_id] = mine
            else:
                updates.append(
                    replace(
                        mine,
                        state=vs.state,
                        time_of_deletion=_dt_opt(vs.time_of_deletion),
                        compartment_id=snap.compartment_id,
                        replication_id=snap.replication_id,
                    )
                )
            if gone:
                destroy.append(mine.id)
        current = local.get(snap.current_version)
        if current is None:
            raise InvalidArgument(field="currentKeyVersion", reason="the snapshot's current version is not in it")
        tags = json.loads(snap.tags_json)
        fields: dict[str, Any] = {
            "compartment_id": snap.compartment_id,
            "display_name": snap.display_name,
            "algorithm": snap.algorithm,
            "length": snap.length,
            "curve_id": snap.curve_id,
            "protection_mode": snap.protection_mode,
            "state": snap.state,
            "prev_state": snap.prev_state,
            "time_of_deletion": _dt_opt(snap.time_of_deletion),
            "scheduled_with_vault": snap.scheduled_with_vault,
            "current_version_id": current.id,
            "freeform_tags": tags["freeform"],
            "defined_tags": tags["defined"],
            "replication_id": snap.replication_id,
        }
        with self._engine.begin() as conn:
            if old is None:
                key = Key(
                    id=key_id,
                    vault_id=vault.id,
                    time_created=datetime.fromisoformat(snap.time_created),
                    source_key_id=snap.source_key_id,
                    **fields,
                )
                self.keys.insert(key, conn)
            else:
                key = replace(old, **fields)
                self.keys.save(key, conn)
            for version in inserts:
                self.versions.insert(version, conn)
            for version in updates:
                self.versions.save(version, conn)
            self._record_applied(snap.replication_id, vault.id, conn)
        for handle in destroy:
            self._keystore.destroy(handle)  # D2: deleting the key destroys every replica's material too
        if old is None or old.state != key.state:
            self._notify(key.id, key.state)

    def replica_delete_vault(self, source_vault_id: str, replication_id: str) -> None:
        vault = self._replica_vault_or_none(source_vault_id)
        if vault is None:
            return
        keys = self.keys.find(tables.keys.c.vault_id == vault.id)
        handles: list[str] = []
        with self._engine.begin() as conn:
            for key in keys:
                self.keys.save(replace(key, state=lifecycle.DELETED, replication_id=replication_id), conn)
                for version in self._versions_of(key.id):
                    self.versions.save(replace(version, state=lifecycle.DELETED), conn)
                    handles.append(version.id)
            self.vaults.save(replace(vault, state=lifecycle.DELETED, replication_id=replication_id), conn)
            self._record_applied(replication_id, vault.id, conn)
        for handle in handles:
            self._keystore.destroy(handle)
        for key in keys:
            if key.state != lifecycle.DELETED:
                self._notify(key.id, lifecycle.DELETED)

    # --- time ---------------------------------------------------------------------------------------------------

    @_serialized
    def process_deletions(self) -> list[str]:
        """Destroy keys (and vaults) whose deletion time has passed (D2). Returns the ids of keys destroyed."""
        now = self._clock.now()
        destroyed: list[str] = []
        # Replica keys and vaults follow their source (R2.15, D2): only primaries are reaped here.
        for key in self.keys.find(
            tables.keys.c.state == lifecycle.PENDING_DELETION, tables.keys.c.source_key_id.is_(None)
        ):
            if key.time_of_deletion is None or key.time_of_deletion > now:
                continue
            versions = [replace(v, state=lifecycle.DELETED) for v in self._versions_of(key.id)]
            deleted = replace(key, state=lifecycle.DELETED)
            repl = self._replication(key.vault_id)
            if repl is not None:
                deleted = replace(deleted, replication_id=repl[1])
                self._push_key(repl, deleted, versions)  # the replica destroys its copy of the material first
            with self._engine.begin() as conn:
                self.keys.save(deleted, conn, expect={"state": key.state})
                for version in versions:
                    self.versions.save(version, conn)
                self._record(repl, key.vault_id, conn)
            for version in versions:
                self._keystore.destroy(version.id)  # crypto-shredding: after this nothing can unwrap
            destroyed.append(key.id)
            self._notify(key.id, lifecycle.DELETED)
        for vault in self.vaults.find(
            tables.vaults.c.state == lifecycle.PENDING_DELETION, tables.vaults.c.source_vault_id.is_(None)
        ):
            if vault.time_of_deletion is not None and vault.time_of_deletion <= now:
                current = self._current_replica(vault.id)
                if current is not None:
                    self._delete_replica(vault, current)
                self.vaults.save(replace(vault, state=lifecycle.DELETED), expect={"state": vault.state})
        return destroyed

    # --- crypto API (REST) ------------------------------------------------------------------------------------

    def _crypto_key(self, key_id: str, vault_id: str) -> Key:
        key = self.get_key(key_id, vault_id)
        if not lifecycle.usable_for_crypto(key.state):
            raise KeyUnusable(key_id=key_id, state=key.state)
        if key.algorithm != "AES":
            raise InvalidArgument(field="keyId", reason="only AES keys are supported for this operation here")
        return key

    @staticmethod
    def _check_ad(associated_data: Mapping[str, str] | None) -> None:
        if associated_data is not None and len(str(dict(associated_data))) >= MAX_ASSOCIATED_DATA:
            raise InvalidArgument(field="associatedData", reason="must be fewer than 4096 characters")

    def encrypt(
        self,
        vault_id: str,
        key_id: str,
        plaintext: bytes,
        associated_data: Mapping[str, str] | None,
        key_version_id: str | None = None,
    ) -> tuple[bytes, str]:
        key = self._crypto_key(key_id, vault_id)
        self._check_ad(associated_data)
        if len(plaintext) > MAX_PLAINTEXT:
            raise InvalidArgument(field="plaintext", reason="at most 4096 bytes")
        version_id = key_version_id or key.current_version_id
        if version_id != key.current_version_id:
            # R6.15: only the current version encrypts.
            raise InvalidArgument(field="keyVersionId", reason="only the current key version can encrypt")
        # D10 + replication: the ciphertext names and binds the PRIMARY key and version, so primary and replica
        # open each other's ciphertexts; the keystore handle is this region's own version.
        canonical = version_id
        if key.source_key_id is not None:
            version = self.versions.get(version_id)
            canonical = version.canonical_id if version is not None else version_id
        blob = self._keystore.seal(version_id, plaintext, ciphertext.aad(key.canonical_id, canonical, associated_data))
        return ciphertext.pack(canonical, blob), version_id

    def decrypt(
        self, vault_id: str, key_id: str, data: bytes, associated_data: Mapping[str, str] | None
    ) -> tuple[bytes, str]:
        key = self._crypto_key(key_id, vault_id)
        self._check_ad(associated_data)
        try:
            parsed = ciphertext.unpack(data)
        except DecryptionFailed as exc:
            raise InvalidArgument(field="ciphertext", reason="is not a ciphertext of this Vault") from exc
        version = self._local_version(key, parsed.key_version_id)
        if version is None:
            raise InvalidArgument(field="ciphertext", reason="the ciphertext was not made with this key")
        try:
            plaintext = self._keystore.open(
                version.id, parsed.blob, ciphertext.aad(key.canonical_id, parsed.key_version_id, associated_data)
            )
        except (DecryptionFailed, MaterialDestroyed) as exc:
            raise InvalidArgument(
                field="ciphertext", reason="cannot be decrypted with this key and associated data"
            ) from exc
        return plaintext, version.id

    def _local_version(self, key: Key, canonical_version_id: str) -> KeyVersion | None:
        """This region's version of `key` that a ciphertext names (by the primary version's OCID)."""
        if key.source_key_id is None:
            version = self.versions.get(canonical_version_id)
            return version if version is not None and version.key_id == key.id else None
        found = self.versions.find(
            tables.key_versions.c.key_id == key.id,
            tables.key_versions.c.source_version_id == canonical_version_id,
        )
        return found[0] if found else None

    def generate_data_key(
        self, vault_id: str, key_id: str, length: int, associated_data: Mapping[str, str] | None
    ) -> tuple[bytes, bytes]:
        """R6.25: a fresh DEK and its ciphertext under the key; the DEK is at least as strong as the MEK."""
        key = self._crypto_key(key_id, vault_id)
        if length not in lifecycle.AES_LENGTHS:
            raise InvalidArgument(field="keyShape", reason="AES data keys are 16, 24 or 32 bytes")
        if length < key.length:
            raise InvalidArgument(field="keyShape", reason="the data key must be at least as strong as the master key")
        dek = self._random(length)
        data, _ = self.encrypt(vault_id, key_id, dek, associated_data)
        return dek, data

    @staticmethod
    def checksum(plaintext: bytes) -> str:
        return str(zlib.crc32(plaintext))

    # --- data keys for services (Block Volume) -----------------------------------------------------------------

    def resolve_key(self, key_id: str, *, field: str = "kmsKeyId") -> Key:
        """Validate a key named in a request body for protecting a volume (S1/S2, D13, D1)."""
        parsed = ids.parse(key_id, field=field)
        if parsed.resource_type != "key":
            raise InvalidArgument(field=field, reason=f"{key_id!r} is not the OCID of a Vault key")
        region_part = parsed.region.split("-ad-")[0]  # R8.4: AD-style region parts (iad-ad-1) occur
        if region_part and region_part not in (self.region_key, self.region):
            raise InvalidArgument(
                field=field,
                reason=f"the key is not in region {self.region}: a key must be in a vault of the resource's region",
            )
        key = self.keys.get(key_id)
        if key is None or key.state == lifecycle.DELETED:
            raise RelatedResourceNotFound(field=field, ident=key_id)
        if key.algorithm != "AES":
            raise InvalidArgument(
                field=field, reason=f"the Block Volume service supports only AES keys; {key_id} is {key.algorithm}"
            )
        if key.state != lifecycle.ENABLED:
            raise KeyUnusable(key_id=key_id, state=key.state)
        return key

    def key_state(self, key_id: str | None) -> str:
        if key_id is None:
            return lifecycle.ENABLED
        key = self.keys.get(key_id)
        return lifecycle.DELETED if key is None else key.state

    def require_usable(self, key_id: str | None) -> None:
        state = self.key_state(key_id)
        if state != lifecycle.ENABLED:
            raise KeyUnusable(key_id=key_id, state=state)

    def _handle_for(self, key_id: str | None) -> str:
        if key_id is None:
            return provider_handle(self.region)
        return self.resolve_key(key_id).current_version_id

    @staticmethod
    def _dek_aad(context: Mapping[str, str], key_version_id: str) -> bytes:
        return _DEK_DOMAIN + encode_context({**context, "keyVersion": key_version_id})

    def wrap(self, key_id: str | None, dek: bytes, context: Mapping[str, str]) -> WrappedDek:
        handle = self._handle_for(key_id)
        return WrappedDek(key_id, handle, self._keystore.seal(handle, dek, self._dek_aad(context, handle)))

    def new_dek(self, key_id: str | None, context: Mapping[str, str]) -> tuple[bytes, WrappedDek]:
        dek = self._random(32)
        return dek, self.wrap(key_id, dek, context)

    def unwrap(self, wrapped: WrappedDek, context: Mapping[str, str]) -> bytes:
        """D1: refuses unless the wrapping key is ENABLED; D2: a destroyed key can never unwrap again."""
        self.require_usable(wrapped.key_id)
        try:
            return self._keystore.open(
                wrapped.key_version_id, wrapped.blob, self._dek_aad(context, wrapped.key_version_id)
            )
        except MaterialDestroyed as exc:
            raise KeyUnusable(key_id=wrapped.key_id, state=lifecycle.DELETED) from exc

    def rewrap(self, wrapped: WrappedDek, context: Mapping[str, str], new_key_id: str | None) -> WrappedDek:
        """Unwrap with the old key and version, wrap with the new key's current version (D8, D9). Data untouched."""
        dek = self.unwrap(wrapped, context)
        return self.wrap(new_key_id, dek, context)
