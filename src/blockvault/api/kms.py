"""Vault (KMS) operations: vaults on the region endpoint, keys on each vault's management endpoint
(/kms/{vault_id}/management/20180608/...), crypto on its crypto endpoint (/kms/{vault_id}/crypto/20180608/...).

Vault replication (docs/design/vault-replication.md): createReplica / deleteReplica / listReplicas on the region
endpoint, replicaOperations/{id}/status on the management endpoint; a replica vault answers crypto calls and reads,
and refuses management calls with 409 Conflict. `replicaVaultMetadata` (EXTERNAL vaults only) is refused.

Not implemented: import/export, backup/restore, wrapping keys, sign/verify, key version deletion, change
compartment, auto-rotation (isAutoRotationEnabled is accepted and reported false).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.routing import Mount, Route

from blockvault.api import schemas
from blockvault.api.framework import Ctx, Reply, operation, sort
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.clock import parse_wire
from blockvault.errors import InvalidArgument, MissingParameter, NotFound, RelatedResourceNotFound
from blockvault.vault.service import REPLICABLE_VAULT_TYPES


def _replica_fields(out: dict[str, Any], item: Any) -> dict[str, Any]:
    """isPrimary / replicaDetails as the resource has them (R6.31, R6.36); schemas.py knows only primaries."""
    out["isPrimary"] = item.is_primary
    out["replicaDetails"] = {"replicationId": item.replication_id} if item.replication_id else None
    return out


def _vault_json(ctx: Ctx, vault: Any, *, summary: bool = False, state: str | None = None) -> dict[str, Any]:
    svc = ctx.region.vault
    out = schemas.vault(
        vault, svc.management_endpoint(vault.id), svc.crypto_endpoint(vault.id), summary=summary, state=state
    )
    if summary:
        return out
    out = _replica_fields(out, vault)
    out["isVaultReplicable"] = vault.is_primary and vault.vault_type in REPLICABLE_VAULT_TYPES
    return out


def _key_json(key: Any, *, summary: bool = False, state: str | None = None) -> dict[str, Any]:
    out = schemas.key(key, summary=summary, state=state)
    return out if summary else _replica_fields(out, key)


def _version_json(version: Any) -> dict[str, Any]:
    return _replica_fields(schemas.key_version(version), version)


def _when(body: dict[str, Any]) -> Any:
    value = body.get("timeOfDeletion")
    if value is None:
        return None
    try:
        return parse_wire(str(value))
    except ValueError as exc:
        raise InvalidArgument(field="timeOfDeletion", reason="not an RFC 3339 date-time") from exc


def _tags(body: dict[str, Any]) -> dict[str, Any]:
    return {"freeform_tags": body.get("freeformTags") or {}, "defined_tags": body.get("definedTags") or {}}


def _in_vault(vault_id: str) -> dict[str, str]:
    return {"target.vault.id": vault_id}


# --- vaults (regional endpoint) -------------------------------------------------------------------------------


def create_vault(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "displayName", "vaultType")
    ctx.authorize("CreateVault", compartment_id=body["compartmentId"])
    if not ctx.app.identity.compartment_exists(body["compartmentId"]):
        raise RelatedResourceNotFound(field="compartmentId", ident=body["compartmentId"])
    vault = ctx.region.vault.create_vault(
        compartment_id=body["compartmentId"],
        display_name=body["displayName"],
        vault_type=body["vaultType"],
        **_tags(body),
    )
    return Reply(_vault_json(ctx, vault, state="CREATING"))


def get_vault(ctx: Ctx) -> Reply:
    vault = ctx.region.vault.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize("GetVault", compartment_id=vault.compartment_id, target_id=vault.id)
    return Reply(_vault_json(ctx, vault))


def list_vaults(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    found = ctx.visible(
        "ListVaults", ctx.region.vault.list_vaults(compartment_id), lambda v: (v.compartment_id, v.id, {})
    )
    items = [_vault_json(ctx, v, summary=True) for v in found]
    return ctx.page(sort(items, ctx))


def update_vault(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault = svc.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize("UpdateVault", compartment_id=vault.compartment_id, target_id=vault.id)
    ctx.check_if_match(_vault_json(ctx, vault), "vault", vault.id)
    body = ctx.json()
    updated = svc.update_vault(
        vault.id,
        display_name=body.get("displayName"),
        freeform_tags=body.get("freeformTags"),
        defined_tags=body.get("definedTags"),
    )
    return Reply(_vault_json(ctx, updated))


def schedule_vault_deletion(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault = svc.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize("ScheduleVaultDeletion", compartment_id=vault.compartment_id, target_id=vault.id)
    ctx.check_if_match(_vault_json(ctx, vault), "vault", vault.id)
    updated, shown = svc.schedule_vault_deletion(vault.id, _when(ctx.json()))
    return Reply(_vault_json(ctx, updated, state=shown))


def cancel_vault_deletion(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault = svc.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize("CancelVaultDeletion", compartment_id=vault.compartment_id, target_id=vault.id)
    ctx.check_if_match(_vault_json(ctx, vault), "vault", vault.id)
    updated, shown = svc.cancel_vault_deletion(vault.id)
    return Reply(_vault_json(ctx, updated, state=shown))


def _replica_region(ctx: Ctx) -> str:
    body = ctx.json()
    ctx.require(body, "replicaRegion")
    region = body["replicaRegion"]
    if not isinstance(region, str):
        raise InvalidArgument(field="replicaRegion", reason="must be a region name")
    if body.get("replicaVaultMetadata") is not None:
        raise InvalidArgument(field="replicaVaultMetadata", reason="EXTERNAL vaults are not supported")
    return region


def create_vault_replica(ctx: Ctx) -> Reply:
    """R6.30: synchronous here; the replica is CREATED when the call returns (no work request)."""
    vault_id = _vault_to_change(ctx, "CreateVaultReplica")
    ctx.region.vault.create_vault_replica(vault_id, _replica_region(ctx))
    return Reply(None, status=202, etag=False)


def delete_vault_replica(ctx: Ctx) -> Reply:
    vault_id = _vault_to_change(ctx, "DeleteVaultReplica")
    ctx.region.vault.delete_vault_replica(vault_id, _replica_region(ctx))
    return Reply(None, status=202, etag=False)


def _vault_to_change(ctx: Ctx, operation_name: str) -> str:
    """The path's vault, once the caller may run `operation_name` on it and its If-Match (if any) holds."""
    vault = ctx.region.vault.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize(operation_name, compartment_id=vault.compartment_id, target_id=vault.id)
    ctx.check_if_match(_vault_json(ctx, vault), "vault", vault.id)
    return vault.id


def list_vault_replicas(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault = svc.get_vault(str(ctx.path["vault_id"]))
    ctx.authorize("ListVaultReplicas", compartment_id=vault.compartment_id, target_id=vault.id)
    items = [
        {
            "region": r.region,
            "status": r.status,
            "managementEndpoint": r.management_endpoint,
            "cryptoEndpoint": r.crypto_endpoint,
        }
        for r in svc.list_vault_replicas(vault.id)
    ]
    if (ctx.query("sortOrder") or "").upper() == "DESC":
        items.reverse()
    return ctx.page(items)


# --- keys (management endpoint) -------------------------------------------------------------------------------


def get_replication_status(ctx: Ctx) -> Reply:
    vault_id = _vault_of(ctx)
    vault = ctx.region.vault.get_vault(vault_id)
    ctx.authorize("GetReplicationStatus", compartment_id=vault.compartment_id, target_id=vault_id)
    ops = ctx.region.vault.replication_status(vault_id, str(ctx.path["replication_id"]))
    return Reply({"replicaDetails": [{"region": op.region, "status": op.status} for op in ops]})


def _vault_of(ctx: Ctx) -> str:
    vault_id = str(ctx.path["vault_id"])
    ctx.region.vault.get_vault(vault_id)  # 404 for an endpoint of no vault
    return vault_id


def create_key(ctx: Ctx) -> Reply:
    vault_id = _vault_of(ctx)
    body = ctx.json()
    ctx.require(body, "compartmentId", "displayName", "keyShape")
    shape = body["keyShape"]
    if not isinstance(shape, dict) or "algorithm" not in shape or "length" not in shape:
        raise InvalidArgument(field="keyShape", reason="needs algorithm and length")
    if not isinstance(shape["length"], int) or isinstance(shape["length"], bool):
        raise InvalidArgument(field="keyShape.length", reason="must be an integer (bytes)")
    vault = ctx.region.vault.get_vault(vault_id)
    ctx.authorize("CreateKey", compartment_id=str(body["compartmentId"]), **_in_vault(vault_id))
    ctx.authorize("CreateKeyInVault", compartment_id=vault.compartment_id, target_id=vault_id)  # VAULT_CREATE_KEY
    if not ctx.app.identity.compartment_exists(body["compartmentId"]):
        raise RelatedResourceNotFound(field="compartmentId", ident=body["compartmentId"])
    key = ctx.region.vault.create_key(
        vault_id,
        compartment_id=body["compartmentId"],
        display_name=body["displayName"],
        algorithm=str(shape["algorithm"]),
        length=shape["length"],
        curve_id=shape.get("curveId"),
        protection_mode=body.get("protectionMode") or "HSM",
        **_tags(body),
    )
    return Reply(_key_json(key, state="CREATING"))


def get_key(ctx: Ctx) -> Reply:
    key = ctx.region.vault.get_key(str(ctx.path["key_id"]), _vault_of(ctx))
    ctx.authorize("GetKey", compartment_id=key.compartment_id, target_id=key.id, **_in_vault(key.vault_id))
    return Reply(_key_json(key))


def list_keys(ctx: Ctx) -> Reply:
    vault_id = _vault_of(ctx)
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    keys = ctx.visible(
        "ListKeys",
        ctx.region.vault.list_keys(vault_id, compartment_id),
        lambda k: (k.compartment_id, k.id, _in_vault(k.vault_id)),
    )
    for name, attr in (("algorithm", "algorithm"), ("protectionMode", "protection_mode")):
        wanted = ctx.query(name)
        if wanted:
            keys = [k for k in keys if getattr(k, attr) == wanted]
    length = ctx.query_int("length")
    if length is not None:
        keys = [k for k in keys if k.length == length]
    return ctx.page(sort([_key_json(k, summary=True) for k in keys], ctx))


def update_key(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault_id = _vault_of(ctx)
    key = svc.get_key(str(ctx.path["key_id"]), vault_id)
    ctx.authorize("UpdateKey", compartment_id=key.compartment_id, target_id=key.id, **_in_vault(vault_id))
    ctx.check_if_match(_key_json(key), "key", key.id)
    body = ctx.json()
    updated = svc.update_key(
        key.id,
        vault_id,
        display_name=body.get("displayName"),
        freeform_tags=body.get("freeformTags"),
        defined_tags=body.get("definedTags"),
    )
    return Reply(_key_json(updated))


def _key_action(action: str, operation_name: str) -> Any:
    def handler(ctx: Ctx) -> Reply:
        svc = ctx.region.vault
        vault_id = _vault_of(ctx)
        key = svc.get_key(str(ctx.path["key_id"]), vault_id)
        ctx.authorize(operation_name, compartment_id=key.compartment_id, target_id=key.id, **_in_vault(vault_id))
        ctx.check_if_match(_key_json(key), "key", key.id)
        when = _when(ctx.json()) if action == "schedule_deletion" else None
        updated, shown = svc.key_action(key.id, vault_id, action, when)
        return Reply(_key_json(updated, state=shown))

    return handler


def create_key_version(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault_id = _vault_of(ctx)
    key = svc.get_key(str(ctx.path["key_id"]), vault_id)
    ctx.authorize("CreateKeyVersion", compartment_id=key.compartment_id, target_id=key.id, **_in_vault(vault_id))
    return Reply(_version_json(svc.create_key_version(key.id, vault_id)))


def list_key_versions(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault_id = _vault_of(ctx)
    key = svc.get_key(str(ctx.path["key_id"]), vault_id)
    ctx.authorize("ListKeyVersions", compartment_id=key.compartment_id, target_id=key.id, **_in_vault(vault_id))
    return ctx.page(sort([_version_json(v) for v in svc.list_key_versions(key.id, vault_id)], ctx))


def get_key_version(ctx: Ctx) -> Reply:
    svc = ctx.region.vault
    vault_id = _vault_of(ctx)
    version = svc.get_key_version(str(ctx.path["key_id"]), str(ctx.path["version_id"]), vault_id)
    ctx.authorize(
        "GetKeyVersion", compartment_id=version.compartment_id, target_id=version.key_id, **_in_vault(vault_id)
    )
    return Reply(_version_json(version))


# --- crypto (crypto endpoint) -----------------------------------------------------------------------------------


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(field=field, reason="must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(field=field, reason="is not valid base64") from exc


def _ad(body: dict[str, Any]) -> dict[str, str] | None:
    ad = body.get("associatedData")
    if ad is None:
        return None
    if not isinstance(ad, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ad.items()):
        raise InvalidArgument(field="associatedData", reason="must be a map of strings")
    return ad


def _crypto_key(ctx: Ctx, body: dict[str, Any], operation_name: str) -> tuple[str, str]:
    vault_id = _vault_of(ctx)
    ctx.require(body, "keyId")
    key_id = str(body["keyId"])
    try:
        key = ctx.region.vault.get_key(key_id, vault_id)
    except NotFound:
        raise
    ctx.authorize(operation_name, compartment_id=key.compartment_id, target_id=key.id, **_in_vault(vault_id))
    alg = body.get("encryptionAlgorithm")
    if alg not in (None, "AES_256_GCM"):
        raise InvalidArgument(field="encryptionAlgorithm", reason="only AES_256_GCM is supported")
    return vault_id, key_id


def encrypt(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "keyId", "plaintext")
    vault_id, key_id = _crypto_key(ctx, body, "Encrypt")
    data, version = ctx.region.vault.encrypt(
        vault_id, key_id, _b64(body["plaintext"], "plaintext"), _ad(body), body.get("keyVersionId")
    )
    return Reply(
        {
            "ciphertext": base64.b64encode(data).decode(),
            "keyId": key_id,
            "keyVersionId": version,
            "encryptionAlgorithm": "AES_256_GCM",
        },
        etag=False,
    )


def decrypt(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "keyId", "ciphertext")
    vault_id, key_id = _crypto_key(ctx, body, "Decrypt")
    plaintext, version = ctx.region.vault.decrypt(vault_id, key_id, _b64(body["ciphertext"], "ciphertext"), _ad(body))
    return Reply(
        {
            "plaintext": base64.b64encode(plaintext).decode(),
            "plaintextChecksum": ctx.region.vault.checksum(plaintext),
            "keyId": key_id,
            "keyVersionId": version,
            "encryptionAlgorithm": "AES_256_GCM",
        },
        etag=False,
    )


def generate_data_encryption_key(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "keyId", "keyShape", "includePlaintextKey")
    if not isinstance(body["includePlaintextKey"], bool):
        raise InvalidArgument(field="includePlaintextKey", reason="must be a boolean")
    shape = body["keyShape"]
    if not isinstance(shape, dict) or shape.get("algorithm") != "AES" or not isinstance(shape.get("length"), int):
        raise InvalidArgument(field="keyShape", reason="data keys are AES with a length of 16, 24 or 32 bytes")
    vault_id, key_id = _crypto_key(ctx, body, "GenerateDataEncryptionKey")
    dek, data = ctx.region.vault.generate_data_key(vault_id, key_id, shape["length"], _ad(body))
    out: dict[str, Any] = {"ciphertext": base64.b64encode(data).decode()}
    if body["includePlaintextKey"]:
        out["plaintext"] = base64.b64encode(dek).decode()
        out["plaintextChecksum"] = ctx.region.vault.checksum(dek)
    return Reply(out, etag=False)


def _not_yet(feature: str) -> Any:
    def handler(ctx: Ctx) -> Reply:
        raise NotImplementedYet(feature=feature)

    return operation(handler)


management_routes = [
    Route("/20180608/keys", operation(create_key, idempotent_post=True), methods=["POST"]),
    Route("/20180608/keys", operation(list_keys), methods=["GET"]),
    Route("/20180608/keys/{key_id}", operation(get_key), methods=["GET"]),
    Route("/20180608/keys/{key_id}", operation(update_key), methods=["PUT"]),
    Route("/20180608/keys/{key_id}/actions/enable", operation(_key_action("enable", "EnableKey")), methods=["POST"]),
    Route("/20180608/keys/{key_id}/actions/disable", operation(_key_action("disable", "DisableKey")), methods=["POST"]),
    Route(
        "/20180608/keys/{key_id}/actions/scheduleDeletion",
        operation(_key_action("schedule_deletion", "ScheduleKeyDeletion")),
        methods=["POST"],
    ),
    Route(
        "/20180608/keys/{key_id}/actions/cancelDeletion",
        operation(_key_action("cancel_deletion", "CancelKeyDeletion")),
        methods=["POST"],
    ),
    Route("/20180608/keys/{key_id}/keyVersions", operation(create_key_version, idempotent_post=True), methods=["POST"]),
    Route("/20180608/keys/{key_id}/keyVersions", operation(list_key_versions), methods=["GET"]),
    Route("/20180608/keys/{key_id}/keyVersions/{version_id}", operation(get_key_version), methods=["GET"]),
    Route("/20180608/wrappingKeys", _not_yet("Key import (wrapping keys)"), methods=["GET"]),
    Route("/20180608/replicaOperations/{replication_id}/status", operation(get_replication_status), methods=["GET"]),
]

crypto_routes = [
    Route("/20180608/encrypt", operation(encrypt), methods=["POST"]),
    Route("/20180608/decrypt", operation(decrypt), methods=["POST"]),
    Route("/20180608/generateDataEncryptionKey", operation(generate_data_encryption_key), methods=["POST"]),
    Route("/20180608/sign", _not_yet("Sign"), methods=["POST"]),
    Route("/20180608/verify", _not_yet("Verify"), methods=["POST"]),
    Route("/20180608/exportKey", _not_yet("ExportKey"), methods=["POST"]),
]

routes = [
    Route("/20180608/vaults", operation(create_vault, idempotent_post=True), methods=["POST"]),
    Route("/20180608/vaults", operation(list_vaults), methods=["GET"]),
    Route("/20180608/vaults/{vault_id}", operation(get_vault), methods=["GET"]),
    Route("/20180608/vaults/{vault_id}", operation(update_vault), methods=["PUT"]),
    Route("/20180608/vaults/{vault_id}/actions/scheduleDeletion", operation(schedule_vault_deletion), methods=["POST"]),
    Route("/20180608/vaults/{vault_id}/actions/cancelDeletion", operation(cancel_vault_deletion), methods=["POST"]),
    Route(
        "/20180608/vaults/{vault_id}/actions/createReplica",
        operation(create_vault_replica, idempotent_post=True),
        methods=["POST"],
    ),
    Route("/20180608/vaults/{vault_id}/actions/deleteReplica", operation(delete_vault_replica), methods=["POST"]),
    Route("/20180608/vaults/{vault_id}/actions/listReplicas", operation(list_vault_replicas), methods=["GET"]),
    Mount("/kms/{vault_id}/management", routes=management_routes),
    Mount("/kms/{vault_id}/crypto", routes=crypto_routes),
]
