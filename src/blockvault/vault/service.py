"""The Vault (KMS) of one region: vaults, keys, key versions, crypto operations, and data keys for services.

Key material lives only in the keystore (one handle per key version, plus the region's provider-managed key).
Every use of a key asks its state first (D1): a disabled, pending-deletion or deleted key refuses with KeyUnusable,
naming the key and its state. Listeners (the Block Volume service) hear of every key state change, so they can
drop cached plaintext data keys at once.
"""

from __future__ import annotations

import base64
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

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
from blockvault.vault.model import Key, KeyVersion, Vault, WrappedDek

VAULT_TYPES = ("DEFAULT", "VIRTUAL_PRIVATE", "EXTERNAL")
PROTECTION_MODES = ("HSM", "SOFTWARE")
MAX_ASSOCIATED_DATA = 4096  # R6.27: the string form must be under 4096 characters
MAX_PLAINTEXT = 4096  # OCI's documented Encrypt limit (oci-wire.md §5.4)
_DEK_DOMAIN = b"blockvault.resource-dek.v1"

KeyListener = Callable[[str, str], None]  # (key id, new state)


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
        self._listeners: list[KeyListener] = []
        self._lock = threading.Lock()
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

    def update_vault(
        self,
        vault_id: str,
        *,
        display_name: str | None,
        freeform_tags: dict[str, str] | None,
        defined_tags: dict[str, Any] | None,
    ) -> Vault:
        vault = self.get_vault(vault_id)
        lifecycle.vault_transition(vault_id, vault.state, "update")
        updated = replace(
            vault,
            display_name=display_name if display_name is not None else vault.display_name,
            freeform_tags=freeform_tags if freeform_tags is not None else vault.freeform_tags,
            defined_tags=defined_tags if defined_tags is not None else vault.defined_tags,
        )
        self.vaults.save(updated, expect={"state": vault.state})
        return updated

    def schedule_vault_deletion(self, vault_id: str, when: datetime | None) -> tuple[Vault, str]:
        """R2.13: every key not already scheduled goes to PENDING_DELETION with the vault; a key scheduled after
        the vault's time refuses the call (409)."""
        vault = self.get_vault(vault_id)
        transition = lifecycle.vault_transition(vault_id, vault.state, "schedule_deletion")
        now = self._clock.now()
        at = lifecycle.deletion_time(now, when)
        keys = self.keys.find(tables.keys.c.vault_id == vault_id)
        for key in keys:
            if key.state == lifecycle.PENDING_DELETION and key.time_of_deletion and key.time_of_deletion > at:
                raise Conflict(
                    kind="vault", ident=vault_id, reason=f"key {key.id} is scheduled for deletion after {at}"
                )
        changed: list[str] = []
        with self._engine.begin() as conn:
            for key in keys:
                if key.state in (lifecycle.ENABLED, lifecycle.DISABLED):
                    self.keys.save(
                        replace(
                            key,
                            state=lifecycle.PENDING_DELETION,
                            prev_state=key.state,
                            time_of_deletion=at,
                            scheduled_with_vault=True,
                        ),
                        conn,
                        expect={"state": key.state},
                    )
                    changed.append(key.id)
            updated = replace(vault, state=transition.final, prev_state=vault.state, time_of_deletion=at)
            self.vaults.save(updated, conn, expect={"state": vault.state})
        for key_id in changed:
            self._notify(key_id, lifecycle.PENDING_DELETION)
        return updated, transition.shown

    def cancel_vault_deletion(self, vault_id: str) -> tuple[Vault, str]:
        """R2.14: keys scheduled together with the vault return to their earlier state; keys scheduled before
        keep their own deletion."""
        vault = self.get_vault(vault_id)
        transition = lifecycle.vault_transition(vault_id, vault.state, "cancel_deletion")
        restored: list[tuple[str, str]] = []
        with self._engine.begin() as conn:
            for key in self.keys.find(tables.keys.c.vault_id == vault_id, conn=conn):
                if key.state == lifecycle.PENDING_DELETION and key.scheduled_with_vault:
                    back = key.prev_state or lifecycle.ENABLED
                    self.keys.save(
                        replace(key, state=back, prev_state=None, time_of_deletion=None, scheduled_with_vault=False),
                        conn,
                        expect={"state": key.state},
                    )
                    restored.append((key.id, back))
            updated = replace(vault, state=transition.final, prev_state=None, time_of_deletion=None)
            self.vaults.save(updated, conn, expect={"state": vault.state})
        for key_id, state in restored:
            self._notify(key_id, state)
        return updated, transition.shown

    # --- keys -------------------------------------------------------------------------------------------------

    def _active_vault(self, vault_id: str) -> Vault:
        vault = self.get_vault(vault_id)
        if vault.state != lifecycle.ACTIVE:
            raise Conflict(kind="vault", ident=vault_id, reason=f"it is {vault.state}")
        return vault

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
        vault = self._active_vault(vault_id)
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
        with self._engine.begin() as conn:
            self.keys.insert(key, conn)
            self.versions.insert(version, conn)
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
        lifecycle.require_updatable("key", key_id, key.state)
        updated = replace(
            key,
            display_name=display_name if display_name is not None else key.display_name,
            freeform_tags=freeform_tags if freeform_tags is not None else key.freeform_tags,
            defined_tags=defined_tags if defined_tags is not None else key.defined_tags,
        )
        self.keys.save(updated, expect={"state": key.state})
        return updated

    def key_action(self, key_id: str, vault_id: str, action: str, when: datetime | None = None) -> tuple[Key, str]:
        """enable | disable | schedule_deletion | cancel_deletion. Returns the key and the state to show."""
        key = self.get_key(key_id, vault_id)
        if action in ("enable", "disable", "schedule_deletion"):
            vault = self.get_vault(key.vault_id)
            if vault.state != lifecycle.ACTIVE:
                raise Conflict(kind="key", ident=key_id, reason=f"its vault is {vault.state}")
        transition = lifecycle.key_transition("key", key_id, key.state, action, key.prev_state)
        if action == "schedule_deletion":
            at = lifecycle.deletion_time(self._clock.now(), when)
            updated = replace(key, state=transition.final, prev_state=key.state, time_of_deletion=at)
        elif action == "cancel_deletion":
            updated = replace(key, state=transition.final, prev_state=None, time_of_deletion=None)
        else:
            updated = replace(key, state=transition.final)
        self.keys.save(updated, expect={"state": key.state})
        self._notify(key_id, updated.state)
        return updated, transition.shown

    def create_key_version(self, key_id: str, vault_id: str) -> KeyVersion:
        """R6.14: rotation needs an ENABLED key. The new version becomes current for new wraps (D8)."""
        key = self.get_key(key_id, vault_id)
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
        with self._engine.begin() as conn:
            self.versions.insert(version, conn)
            self.keys.save(
                replace(key, current_version_id=version.id), conn, expect={"current_version_id": key.current_version_id}
            )
        return version

    def list_key_versions(self, key_id: str, vault_id: str) -> list[KeyVersion]:
        self.get_key(key_id, vault_id)
        return self.versions.find(tables.key_versions.c.key_id == key_id, order_by=[tables.key_versions.c.time_created])

    def get_key_version(self, key_id: str, version_id: str, vault_id: str) -> KeyVersion:
        self.get_key(key_id, vault_id)
        version = self.versions.get(version_id)
        if version is None or version.key_id != key_id:
            raise NotFound(kind="key version", ident=version_id)
        return version

    # --- time ---------------------------------------------------------------------------------------------------

    def process_deletions(self) -> list[str]:
        """Destroy keys (and vaults) whose deletion time has passed (D2). Returns the ids of keys destroyed."""
        now = self._clock.now()
        destroyed: list[str] = []
        for key in self.keys.find(tables.keys.c.state == lifecycle.PENDING_DELETION):
            if key.time_of_deletion is None or key.time_of_deletion > now:
                continue
            versions = self.versions.find(tables.key_versions.c.key_id == key.id)
            with self._engine.begin() as conn:
                self.keys.save(replace(key, state=lifecycle.DELETED), conn, expect={"state": key.state})
                for version in versions:
                    self.versions.save(replace(version, state=lifecycle.DELETED), conn)
            for version in versions:
                self._keystore.destroy(version.id)  # crypto-shredding: after this nothing can unwrap
            destroyed.append(key.id)
            self._notify(key.id, lifecycle.DELETED)
        for vault in self.vaults.find(tables.vaults.c.state == lifecycle.PENDING_DELETION):
            if vault.time_of_deletion is not None and vault.time_of_deletion <= now:
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
        blob = self._keystore.seal(version_id, plaintext, ciphertext.aad(key_id, version_id, associated_data))
        return ciphertext.pack(version_id, blob), version_id

    def decrypt(
        self, vault_id: str, key_id: str, data: bytes, associated_data: Mapping[str, str] | None
    ) -> tuple[bytes, str]:
        self._crypto_key(key_id, vault_id)
        self._check_ad(associated_data)
        try:
            parsed = ciphertext.unpack(data)
        except DecryptionFailed as exc:
            raise InvalidArgument(field="ciphertext", reason="is not a ciphertext of this Vault") from exc
        version = self.versions.get(parsed.key_version_id)
        if version is None or version.key_id != key_id:
            raise InvalidArgument(field="ciphertext", reason="the ciphertext was not made with this key")
        try:
            plaintext = self._keystore.open(
                parsed.key_version_id, parsed.blob, ciphertext.aad(key_id, parsed.key_version_id, associated_data)
            )
        except (DecryptionFailed, MaterialDestroyed) as exc:
            raise InvalidArgument(
                field="ciphertext", reason="cannot be decrypted with this key and associated data"
            ) from exc
        return plaintext, parsed.key_version_id

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
