"""``blockvault kms ...``: Vault (KMS) commands with the real ``oci kms`` names, flags and bodies.

Three kinds of endpoint (oci-wire.md §5.1): vault operations go to the region (``<endpoint>/20180608/vaults``);
key and key-version operations to the vault's ``managementEndpoint``; crypto operations to its ``cryptoEndpoint``.
The real CLI makes you pass that endpoint as ``--endpoint``; we accept that too, and in addition:

* ``--vault-id OCID``: the endpoint is read from ``GET /20180608/vaults/{id}``;
* neither: the vault is found from the key. We list the vaults of the candidate compartments (``--compartment-id``
  if given, the tenancy, then the tenancy's sub-compartments) and ask each vault's management endpoint for
  ``GET /20180608/keys/{keyId}``; the first vault that knows the key wins. Commands without a key
  (``key create``, ``key list``) use the only live vault of those compartments, or ask for ``--vault-id``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from blockvault.cli.client import (
    ApiError,
    ApiResponse,
    CliContext,
    UsageError,
    add_force_option,
    add_list_options,
    add_wait_options,
    bool_arg,
    compact,
    datetime_arg,
    finish,
    json_arg,
    list_and_emit,
)
from blockvault.cli.commands._common import (
    add_sort_options,
    add_tag_options,
    leaf,
    name_and_tags,
    subcommands,
)
from blockvault.errors import NotFound

VAULT_STATES = (
    "CREATING",
    "ACTIVE",
    "DELETING",
    "DELETED",
    "PENDING_DELETION",
    "SCHEDULING_DELETION",
    "CANCELLING_DELETION",
    "UPDATING",
    "BACKUP_IN_PROGRESS",
    "RESTORING",
)
KEY_STATES = (
    "CREATING",
    "ENABLING",
    "ENABLED",
    "DISABLING",
    "DISABLED",
    "DELETING",
    "DELETED",
    "PENDING_DELETION",
    "SCHEDULING_DELETION",
    "CANCELLING_DELETION",
    "UPDATING",
    "BACKUP_IN_PROGRESS",
    "RESTORING",
)
KEY_VERSION_STATES = KEY_STATES[:10]
PROTECTION_MODES = ("HSM", "SOFTWARE", "EXTERNAL")
ENCRYPTION_ALGORITHMS = ("AES_256_GCM", "RSA_OAEP_SHA_1", "RSA_OAEP_SHA_256")
_GONE_VAULT_STATES = frozenset({"DELETED", "DELETING"})


def _vault_locator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vault-id",
        help="find the management/crypto endpoint from this vault (instead of --endpoint)",
    )


# ------------------------------------------------------------------------------------------------ registration


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kms = subcommands(sub.add_parser("kms", help="Vault / Key Management service (oci kms)", allow_abbrev=False), "kms")
    management = subcommands(
        kms.add_parser("management", help="vaults, keys, key versions", allow_abbrev=False), "mgmt"
    )
    _register_vault(management)
    _register_key(management)
    _register_key_version(management)
    status = subcommands(
        management.add_parser(
            "replication-status-details", help="status of a replicated operation", allow_abbrev=False
        ),
        "replstatus",
    )
    get_status = leaf(status, "get-replication-status", "where an operation on a replicated vault was applied")
    get_status.add_argument("--replication-id", required=True)
    _vault_locator(get_status)
    get_status.set_defaults(handler=cmd_get_replication_status)
    _register_crypto(
        subcommands(kms.add_parser("crypto", help="encrypt, decrypt, data keys", allow_abbrev=False), "crypto")
    )


def _register_vault(management: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vault = subcommands(management.add_parser("vault", help="vaults (regional endpoint)", allow_abbrev=False), "vault")

    create = leaf(vault, "create", "create a vault")
    create.add_argument("-c", "--compartment-id", help="default: the tenancy")
    create.add_argument("--display-name", required=True)
    create.add_argument(
        "--vault-type", type=str.upper, choices=("DEFAULT", "VIRTUAL_PRIVATE", "EXTERNAL"), default="DEFAULT"
    )
    add_tag_options(create, examples=False)
    add_wait_options(create, VAULT_STATES)
    create.set_defaults(handler=cmd_vault_create)

    get = leaf(vault, "get", "get a vault")
    get.add_argument("--vault-id", required=True)
    get.set_defaults(handler=cmd_vault_get)

    lst = leaf(vault, "list", "list vaults")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    add_sort_options(lst)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_vault_list)

    upd = leaf(vault, "update", "update a vault")
    upd.add_argument("--vault-id", required=True)
    upd.add_argument("--display-name")
    add_tag_options(upd, examples=False)
    upd.add_argument("--if-match")
    add_force_option(upd)
    add_wait_options(upd, VAULT_STATES)
    upd.set_defaults(handler=cmd_vault_update)

    sched = leaf(vault, "schedule-deletion", "schedule the deletion of a vault")
    sched.add_argument("--vault-id", required=True)
    sched.add_argument("--time-of-deletion", type=datetime_arg, help="RFC 3339; default: 30 days from now")
    sched.add_argument("--if-match")
    add_wait_options(sched, VAULT_STATES)
    sched.set_defaults(handler=cmd_vault_schedule_deletion)

    cancel = leaf(vault, "cancel-deletion", "cancel the scheduled deletion of a vault")
    cancel.add_argument("--vault-id", required=True)
    cancel.add_argument("--if-match")
    add_wait_options(cancel, VAULT_STATES)
    cancel.set_defaults(handler=cmd_vault_cancel_deletion)

    # Vault replication (docs/design/vault-replication.md): the real CLI's names and flags.
    crep = leaf(
        vault, "create-vault-replica", "replicate a vault to another region (synchronous here)", "create-replica"
    )
    crep.add_argument("--vault-id", required=True)
    crep.add_argument("--replica-region", required=True)
    crep.add_argument("--if-match")
    crep.set_defaults(handler=cmd_vault_create_replica)

    drep = leaf(vault, "delete-vault-replica", "stop replication: delete the vault's replica", "delete-replica")
    drep.add_argument("--vault-id", required=True)
    drep.add_argument("--replica-region", required=True)
    drep.add_argument("--if-match")
    drep.set_defaults(handler=cmd_vault_delete_replica)

    lrep = leaf(vault, "list-vault-replicas", "list a vault's replicas", "list-replicas")
    lrep.add_argument("--vault-id", required=True)
    add_sort_options(lrep)
    add_list_options(lrep)
    lrep.set_defaults(handler=cmd_vault_list_replicas)


def _register_key(management: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = subcommands(management.add_parser("key", help="keys (management endpoint)", allow_abbrev=False), "key")

    create = leaf(key, "create", "create a key in a vault")
    create.add_argument("-c", "--compartment-id", help="default: the tenancy")
    create.add_argument("--display-name", required=True)
    create.add_argument("--key-shape", type=json_arg, required=True, help='e.g. {"algorithm":"AES","length":32}')
    create.add_argument("--protection-mode", type=str.upper, choices=PROTECTION_MODES)
    create.add_argument("--is-auto-rotation-enabled", type=bool_arg)
    create.add_argument("--auto-key-rotation-details", type=json_arg)
    add_tag_options(create, examples=False)
    _vault_locator(create)
    add_wait_options(create, KEY_STATES)
    create.set_defaults(handler=cmd_key_create)

    get = leaf(key, "get", "get a key")
    get.add_argument("--key-id", required=True)
    _vault_locator(get)
    get.set_defaults(handler=cmd_key_get)

    lst = leaf(key, "list", "list the keys of a vault")
    lst.add_argument("-c", "--compartment-id", help="default: the tenancy")
    add_sort_options(lst)
    lst.add_argument("--protection-mode", type=str.upper, choices=PROTECTION_MODES)
    lst.add_argument("--algorithm", type=str.upper, choices=("AES", "RSA", "ECDSA"))
    lst.add_argument("--length", type=int)
    lst.add_argument("--curve-id", type=str.upper, choices=("NIST_P256", "NIST_P384", "NIST_P521"))
    _vault_locator(lst)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_key_list)

    upd = leaf(key, "update", "update a key")
    upd.add_argument("--key-id", required=True)
    upd.add_argument("--display-name")
    upd.add_argument("--is-auto-rotation-enabled", type=bool_arg)
    upd.add_argument("--auto-key-rotation-details", type=json_arg)
    add_tag_options(upd, examples=False)
    upd.add_argument("--if-match")
    add_force_option(upd)
    _vault_locator(upd)
    add_wait_options(upd, KEY_STATES)
    upd.set_defaults(handler=cmd_key_update)

    for verb, action, text in (
        ("enable", "enable", "enable a key"),
        ("disable", "disable", "disable a key (data it protects becomes unusable)"),
        ("cancel-deletion", "cancelDeletion", "cancel the scheduled deletion of a key"),
    ):
        p = leaf(key, verb, text)
        p.add_argument("--key-id", required=True)
        p.add_argument("--if-match")
        _vault_locator(p)
        add_wait_options(p, KEY_STATES)
        p.set_defaults(handler=cmd_key_action, key_action=action)

    sched = leaf(key, "schedule-deletion", "schedule the deletion of a key")
    sched.add_argument("--key-id", required=True)
    sched.add_argument("--time-of-deletion", type=datetime_arg, help="RFC 3339; default: 30 days from now")
    sched.add_argument("--if-match")
    _vault_locator(sched)
    add_wait_options(sched, KEY_STATES)
    sched.set_defaults(handler=cmd_key_schedule_deletion)


def _register_key_version(management: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kv = subcommands(management.add_parser("key-version", help="key versions (rotation)", allow_abbrev=False), "kv")

    create = leaf(kv, "create", "rotate: create a new key version, which becomes the current one")
    create.add_argument("--key-id", required=True)
    _vault_locator(create)
    add_wait_options(create, KEY_VERSION_STATES)
    create.set_defaults(handler=cmd_key_version_create)

    lst = leaf(kv, "list", "list the versions of a key")
    lst.add_argument("--key-id", required=True)
    add_sort_options(lst)
    _vault_locator(lst)
    add_list_options(lst)
    lst.set_defaults(handler=cmd_key_version_list)

    get = leaf(kv, "get", "get a key version")
    get.add_argument("--key-id", required=True)
    get.add_argument("--key-version-id", required=True)
    _vault_locator(get)
    get.set_defaults(handler=cmd_key_version_get)


def _register_crypto(crypto: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enc = leaf(crypto, "encrypt", "encrypt up to 4 KiB of base64 plaintext")
    enc.add_argument("--key-id", required=True)
    enc.add_argument("--plaintext", required=True, help="base64")
    enc.add_argument("--associated-data", type=json_arg, help='JSON map, e.g. {"vol": "v1"}')
    enc.add_argument("--logging-context", type=json_arg)
    enc.add_argument("--key-version-id")
    enc.add_argument("--encryption-algorithm", type=str.upper, choices=ENCRYPTION_ALGORITHMS)
    _vault_locator(enc)
    enc.set_defaults(handler=cmd_encrypt)

    dec = leaf(crypto, "decrypt", "decrypt a ciphertext made by encrypt or generate-data-encryption-key")
    dec.add_argument("--ciphertext", required=True)
    dec.add_argument("--key-id", required=True)
    dec.add_argument("--associated-data", type=json_arg)
    dec.add_argument("--logging-context", type=json_arg)
    dec.add_argument("--key-version-id")
    dec.add_argument("--encryption-algorithm", type=str.upper, choices=ENCRYPTION_ALGORITHMS)
    _vault_locator(dec)
    dec.set_defaults(handler=cmd_decrypt)

    gen = leaf(crypto, "generate-data-encryption-key", "generate a data key wrapped by a master key")
    gen.add_argument("--include-plaintext-key", type=bool_arg, required=True)
    gen.add_argument("--key-id", required=True)
    gen.add_argument("--key-shape", type=json_arg, required=True, help='e.g. {"algorithm":"AES","length":32}')
    gen.add_argument("--associated-data", type=json_arg)
    gen.add_argument("--logging-context", type=json_arg)
    _vault_locator(gen)
    gen.set_defaults(handler=cmd_generate_data_encryption_key)


# ------------------------------------------------------------------------------------------------ vault lookup


def _list_vaults(ctx: CliContext, compartment_id: str) -> list[dict[str, Any]]:
    client = ctx.client
    items, _ = client.list(client.kms_url("/vaults"), [("compartmentId", compartment_id)], fetch_all=True)
    return [v for v in items if isinstance(v, dict)]


def _candidate_compartments(ctx: CliContext, first: str | None) -> Iterator[str]:
    client = ctx.client
    seen: set[str] = set()
    for cid in (first, client.tenancy_id):
        if cid and cid not in seen:
            seen.add(cid)
            yield cid
    try:
        subtree, _ = client.list(
            client.bv_url("/compartments"),
            [("compartmentId", client.tenancy_id), ("compartmentIdInSubtree", True), ("accessLevel", "ANY")],
            fetch_all=True,
        )
    except ApiError:
        return
    for comp in subtree:
        cid = comp.get("id") if isinstance(comp, dict) else None
        if isinstance(cid, str) and cid not in seen and comp.get("lifecycleState") != "DELETED":
            seen.add(cid)
            yield cid


def _get_vault(ctx: CliContext, vault_id: str) -> dict[str, Any]:
    data = ctx.client.get(ctx.client.kms_url(f"/vaults/{vault_id}")).data
    if not isinstance(data, dict):
        raise NotFound(kind="vault", ident=vault_id)
    return data


def find_vault_of_key(
    ctx: CliContext, key_id: str, compartment_id: str | None = None
) -> tuple[dict[str, Any], ApiResponse]:
    """The vault (summary JSON) whose management endpoint knows ``key_id``, and that endpoint's GET of the key."""
    client = ctx.client
    for cid in _candidate_compartments(ctx, compartment_id):
        for vault in _list_vaults(ctx, cid):
            endpoint = vault.get("managementEndpoint")
            if vault.get("lifecycleState") in _GONE_VAULT_STATES or not isinstance(endpoint, str):
                continue
            try:
                probe = client.get(client.kms_url(f"/keys/{key_id}", endpoint))
            except ApiError as exc:
                if exc.status in (400, 401, 403, 404):
                    continue
                raise
            return vault, probe
    raise NotFound(f"key {key_id} was not found in any vault of the tenancy; pass --vault-id or --endpoint")


def _only_vault(ctx: CliContext, compartment_id: str | None) -> dict[str, Any]:
    live: dict[str, dict[str, Any]] = {}
    for cid in (compartment_id, ctx.client.tenancy_id):
        if cid:
            for vault in _list_vaults(ctx, cid):
                if vault.get("lifecycleState") == "ACTIVE" and isinstance(vault.get("id"), str):
                    live[vault["id"]] = vault
    if len(live) == 1:
        return next(iter(live.values()))
    if not live:
        raise UsageError(reason="no ACTIVE vault found; create one or pass --vault-id or --endpoint")
    raise UsageError(reason=f"{len(live)} vaults are ACTIVE ({', '.join(sorted(live))}); pass --vault-id or --endpoint")


def vault_endpoint(ctx: CliContext, args: argparse.Namespace, kind: str, *, key_id: str | None = None) -> str:
    """The management (``kind="managementEndpoint"``) or crypto (``"cryptoEndpoint"``) endpoint for a command."""
    if ctx.opts.endpoint:
        return ctx.opts.endpoint
    compartment = getattr(args, "compartment_id", None)
    if getattr(args, "vault_id", None):
        vault = _get_vault(ctx, args.vault_id)
    elif key_id:
        vault, _ = find_vault_of_key(ctx, key_id, compartment)
    else:
        vault = _only_vault(ctx, compartment)
    endpoint = vault.get(kind)
    if not isinstance(endpoint, str) or not endpoint:
        raise NotFound(f"vault {vault.get('id')} has no {kind}")
    return endpoint


# ------------------------------------------------------------------------------------------------ vault handlers


def cmd_vault_create(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    body = compact(
        [
            ("compartmentId", args.compartment_id or client.tenancy_id),
            *name_and_tags(args),
            ("vaultType", args.vault_type),
        ]
    )
    resp = client.request("POST", client.kms_url("/vaults"), body=body, retry_token=True)
    vid = resp.data.get("id") if isinstance(resp.data, dict) else None
    return finish(ctx, args, resp, client.kms_url(f"/vaults/{vid}") if vid else None)


def cmd_vault_get(args: argparse.Namespace, ctx: CliContext) -> int:
    resp = ctx.client.get(ctx.client.kms_url(f"/vaults/{args.vault_id}"))
    ctx.out.emit(resp.data, etag=resp.etag)
    return 0


def cmd_vault_list(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
    ]
    return list_and_emit(ctx, args, ctx.client.kms_url("/vaults"), params)


def cmd_vault_update(args: argparse.Namespace, ctx: CliContext) -> int:
    url = ctx.client.kms_url(f"/vaults/{args.vault_id}")
    body = compact(name_and_tags(args))
    resp = ctx.client.request("PUT", url, body=body, if_match=args.if_match)
    return finish(ctx, args, resp, url)


def cmd_vault_schedule_deletion(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.kms_url(f"/vaults/{args.vault_id}")
    body = compact([("timeOfDeletion", args.time_of_deletion)])
    resp = client.request(
        "POST", url + "/actions/scheduleDeletion", body=body, if_match=args.if_match, retry_token=True
    )
    return finish(ctx, args, resp, url)


def cmd_vault_cancel_deletion(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.kms_url(f"/vaults/{args.vault_id}")
    resp = client.request("POST", url + "/actions/cancelDeletion", if_match=args.if_match, retry_token=True)
    return finish(ctx, args, resp, url)


def cmd_vault_create_replica(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.kms_url(f"/vaults/{args.vault_id}/actions/createReplica")
    client.request("POST", url, body={"replicaRegion": args.replica_region}, if_match=args.if_match, retry_token=True)
    return 0  # no body, as the real CLI


def cmd_vault_delete_replica(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    url = client.kms_url(f"/vaults/{args.vault_id}/actions/deleteReplica")
    client.request("POST", url, body={"replicaRegion": args.replica_region}, if_match=args.if_match)
    return 0


def cmd_vault_list_replicas(args: argparse.Namespace, ctx: CliContext) -> int:
    params = [("limit", None), ("page", None), ("sortBy", args.sort_by), ("sortOrder", args.sort_order)]
    return list_and_emit(ctx, args, ctx.client.kms_url(f"/vaults/{args.vault_id}/actions/listReplicas"), params)


def cmd_get_replication_status(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint")
    resp = ctx.client.get(ctx.client.kms_url(f"/replicaOperations/{args.replication_id}/status", endpoint))
    ctx.out.emit(resp.data, etag=resp.etag)
    return 0


# ------------------------------------------------------------------------------------------------ key handlers


def cmd_key_create(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    endpoint = vault_endpoint(ctx, args, "managementEndpoint")
    body = compact(
        [
            ("compartmentId", args.compartment_id or client.tenancy_id),
            *name_and_tags(args),
            ("keyShape", args.key_shape),
            ("isAutoRotationEnabled", args.is_auto_rotation_enabled),
            ("autoKeyRotationDetails", args.auto_key_rotation_details),
            ("protectionMode", args.protection_mode),
        ]
    )
    resp = client.request("POST", client.kms_url("/keys", endpoint), body=body, retry_token=True)
    kid = resp.data.get("id") if isinstance(resp.data, dict) else None
    return finish(ctx, args, resp, client.kms_url(f"/keys/{kid}", endpoint) if kid else None)


def cmd_key_get(args: argparse.Namespace, ctx: CliContext) -> int:
    if not ctx.opts.endpoint and not args.vault_id:
        _, resp = find_vault_of_key(ctx, args.key_id)  # the lookup already fetched the key
    else:
        endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
        resp = ctx.client.get(ctx.client.kms_url(f"/keys/{args.key_id}", endpoint))
    ctx.out.emit(resp.data, etag=resp.etag)
    return 0


def cmd_key_list(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint")
    params = [
        ("compartmentId", args.compartment_id or ctx.client.tenancy_id),
        ("limit", None),
        ("page", None),
        ("sortBy", args.sort_by),
        ("sortOrder", args.sort_order),
        ("protectionMode", args.protection_mode),
        ("algorithm", args.algorithm),
        ("length", args.length),
        ("curveId", args.curve_id),
    ]
    return list_and_emit(ctx, args, ctx.client.kms_url("/keys", endpoint), params)


def cmd_key_update(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    url = ctx.client.kms_url(f"/keys/{args.key_id}", endpoint)
    body = compact(
        [
            ("isAutoRotationEnabled", args.is_auto_rotation_enabled),
            ("autoKeyRotationDetails", args.auto_key_rotation_details),
            *name_and_tags(args),
        ]
    )
    resp = ctx.client.request("PUT", url, body=body, if_match=args.if_match)
    return finish(ctx, args, resp, url)


def cmd_key_action(args: argparse.Namespace, ctx: CliContext) -> int:
    """enable / disable / cancel-deletion: POST with an empty body (the SDK sends content-length 0)."""
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    url = ctx.client.kms_url(f"/keys/{args.key_id}", endpoint)
    resp = ctx.client.request("POST", f"{url}/actions/{args.key_action}", if_match=args.if_match, retry_token=True)
    return finish(ctx, args, resp, url)


def cmd_key_schedule_deletion(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    url = ctx.client.kms_url(f"/keys/{args.key_id}", endpoint)
    body = compact([("timeOfDeletion", args.time_of_deletion)])
    resp = ctx.client.request(
        "POST", f"{url}/actions/scheduleDeletion", body=body, if_match=args.if_match, retry_token=True
    )
    return finish(ctx, args, resp, url)


def cmd_key_version_create(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    resp = client.request("POST", client.kms_url(f"/keys/{args.key_id}/keyVersions", endpoint), retry_token=True)
    vid = resp.data.get("id") if isinstance(resp.data, dict) else None
    get_url = client.kms_url(f"/keys/{args.key_id}/keyVersions/{vid}", endpoint) if vid else None
    return finish(ctx, args, resp, get_url)


def cmd_key_version_list(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    params = [("limit", None), ("page", None), ("sortBy", args.sort_by), ("sortOrder", args.sort_order)]
    return list_and_emit(ctx, args, ctx.client.kms_url(f"/keys/{args.key_id}/keyVersions", endpoint), params)


def cmd_key_version_get(args: argparse.Namespace, ctx: CliContext) -> int:
    endpoint = vault_endpoint(ctx, args, "managementEndpoint", key_id=args.key_id)
    url = ctx.client.kms_url(f"/keys/{args.key_id}/keyVersions/{args.key_version_id}", endpoint)
    resp = ctx.client.get(url)
    ctx.out.emit(resp.data, etag=resp.etag)
    return 0


# ------------------------------------------------------------------------------------------------ crypto handlers


def encrypt_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("keyId", args.key_id),
            ("plaintext", args.plaintext),
            ("associatedData", args.associated_data),
            ("loggingContext", args.logging_context),
            ("keyVersionId", args.key_version_id),
            ("encryptionAlgorithm", args.encryption_algorithm),
        ]
    )


def decrypt_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("ciphertext", args.ciphertext),
            ("keyId", args.key_id),
            ("associatedData", args.associated_data),
            ("loggingContext", args.logging_context),
            ("keyVersionId", args.key_version_id),
            ("encryptionAlgorithm", args.encryption_algorithm),
        ]
    )


def generate_key_body(args: argparse.Namespace) -> dict[str, Any]:
    return compact(
        [
            ("includePlaintextKey", args.include_plaintext_key),
            ("keyId", args.key_id),
            ("keyShape", args.key_shape),
            ("associatedData", args.associated_data),
            ("loggingContext", args.logging_context),
        ]
    )


def _crypto(ctx: CliContext, args: argparse.Namespace, op: str, body: dict[str, Any]) -> int:
    endpoint = vault_endpoint(ctx, args, "cryptoEndpoint", key_id=args.key_id)
    resp = ctx.client.request("POST", ctx.client.kms_url(f"/{op}", endpoint), body=body)
    ctx.out.emit(resp.data)
    return 0


def cmd_encrypt(args: argparse.Namespace, ctx: CliContext) -> int:
    return _crypto(ctx, args, "encrypt", encrypt_body(args))


def cmd_decrypt(args: argparse.Namespace, ctx: CliContext) -> int:
    return _crypto(ctx, args, "decrypt", decrypt_body(args))


def cmd_generate_data_encryption_key(args: argparse.Namespace, ctx: CliContext) -> int:
    return _crypto(ctx, args, "generateDataEncryptionKey", generate_key_body(args))
