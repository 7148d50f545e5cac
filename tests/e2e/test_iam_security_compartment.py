"""IAM end to end with the real `oci` CLI and SDK: three users in three groups with different policies drive OCI's
security-compartment key setup (oci-behaviour.md R7.19, D6), each allowed and denied path checked.

- alice  in projx-admin-group: manage volume-family in projx (+ key-delegate on K in the security compartment)
- bob    in sec-admins:        manage vaults and keys in the security compartment
- carol  in auditors:          inspect volume-family in projx
The admin (bootstrap user, Administrators group) sets everything up through `oci iam ...`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oci
import pytest
import requests
from helpers import Sdk
from iam_helpers import User, UserSdk, cli_error, new_user, oci_as, policy, service_error, user_signer

pytestmark = pytest.mark.e2e

RELATED = (400, "RelatedResourceNotAuthorizedOrNotFound")
HIDDEN = (404, "NotAuthorizedOrNotFound")


@dataclass
class World:
    server: Any
    admin: Sdk
    sec: str
    sec_name: str
    projx: str
    projx_name: str
    alice: User
    bob: User
    carol: User
    a: UserSdk
    b: UserSdk
    c: UserSdk
    vault: Any
    key: str
    other_key: str
    service_policy: str
    delegate_policy: str
    service_stmt: str
    delegate_stmt: str
    projx_group: str


def _group(server: Any, name: str, *users: User) -> str:
    group = server.oci("iam", "group", "create", "--name", name, "--description", name).json["data"]
    for u in users:
        server.oci("iam", "group", "add-user", "--group-id", group["id"], "--user-id", u.id)
    return str(group["id"])


@pytest.fixture(scope="module")
def world(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The bootstrap's tenancy-wide `Allow service blockstorage to use keys in tenancy` is narrowed to another
    service for this module (the security-compartment setup replaces it), and restored afterwards."""
    default = server.oci(
        "iam", "policy", "list", "--compartment-id", server.tenancy, "--name", "Block Volume Service Policy"
    ).json["data"][0]
    narrowed = json.dumps(["Allow service objectstorage-us-ashburn-1 to use keys in tenancy"])
    server.oci(
        "iam",
        "policy",
        "update",
        "--policy-id",
        default["id"],
        "--statements",
        narrowed,
        "--version-date",
        "",
        "--force",
    )
    try:
        yield _world(server, tmp_path_factory)
    finally:
        server.oci(
            "iam",
            "policy",
            "update",
            "--policy-id",
            default["id"],
            "--statements",
            json.dumps(default["statements"]),
            "--version-date",
            "",
            "--force",
        )


def _world(server: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("iam")
    tag = uuid.uuid4().hex[:6]
    sec_name, projx_name = f"security-compartment-{tag}", f"projx-{tag}"
    sec = server.oci(
        "iam", "compartment", "create", "--compartment-id", server.tenancy, "--name", sec_name, "--description", "keys"
    ).json["data"]["id"]
    projx = server.oci(
        "iam",
        "compartment",
        "create",
        "--compartment-id",
        server.tenancy,
        "--name",
        projx_name,
        "--description",
        "project x",
    ).json["data"]["id"]
    alice, bob, carol = (new_user(server, base, n) for n in ("alice", "bob", "carol"))
    projx_group = f"projx-admin-group-{tag}"
    _group(server, projx_group, alice)
    _group(server, f"sec-admins-{tag}", bob)
    _group(server, f"auditors-{tag}", carol)
    policy(
        server,
        server.tenancy,
        "projx-admins",
        f"Allow group {projx_group} to manage volume-family in compartment {projx_name}",
    )
    policy(
        server,
        server.tenancy,
        "sec-admins",
        f"Allow group sec-admins-{tag} to manage vaults in compartment {sec_name}",
        f"Allow group sec-admins-{tag} to manage keys in compartment {sec_name}",
    )
    policy(
        server,
        server.tenancy,
        "auditors",
        f"Allow group auditors-{tag} to inspect volume-family in compartment {projx_name}",
    )
    a, b, c = (UserSdk(server, user=u) for u in (alice, bob, carol))
    vault = b.new_vault(sec, "sec-vault")  # bob's own policy lets him make the vault and the keys
    key = b.new_key(vault, sec, "K").id
    other_key = b.new_key(vault, sec, "K2").id
    service_stmt = f"Allow service blockstorage to use keys in compartment {sec_name} where target.key.id = '{key}'"
    delegate_stmt = (
        f"Allow group {projx_group} to use key-delegate in compartment {sec_name} where target.key.id = '{key}'"
    )
    service_policy = policy(server, server.tenancy, "bv-service", service_stmt)
    delegate_policy = policy(server, server.tenancy, "projx-delegate", delegate_stmt)
    return World(
        server,
        Sdk(server),
        sec,
        sec_name,
        projx,
        projx_name,
        alice,
        bob,
        carol,
        a,
        b,
        c,
        vault,
        key,
        other_key,
        service_policy,
        delegate_policy,
        service_stmt,
        delegate_stmt,
        projx_group,
    )


def _set(world: World, policy_id: str, *statements: str) -> None:
    world.server.oci(
        "iam",
        "policy",
        "update",
        "--policy-id",
        policy_id,
        "--statements",
        json.dumps(list(statements)),
        "--version-date",
        "",
        "--force",
    )


def _details(world: World, **kw: Any) -> oci.core.models.CreateVolumeDetails:
    return oci.core.models.CreateVolumeDetails(
        compartment_id=world.projx, availability_domain=world.server.ad(1), display_name="v", **kw
    )


def _expect(call: Any, status_code: tuple[int, str], *mentions: str) -> oci.exceptions.ServiceError:
    err = service_error(call)
    assert (err.status, err.code) == status_code, (err.status, err.code, err.message)
    for m in mentions:
        assert m in err.message, err.message
    return err


# --- allowed paths ----------------------------------------------------------------------------------------------


def test_users_work_with_their_own_config_and_key(world: World) -> None:
    assert oci_as(world.server, world.alice, "bv", "volume", "list", "--compartment-id", world.projx).rc == 0
    me = oci_as(world.server, world.alice, "iam", "user", "get", "--user-id", world.alice.id).json["data"]
    assert me["name"] == world.alice.name
    keys = oci_as(world.server, world.alice, "iam", "user", "api-key", "list", "--user-id", world.alice.id).json
    assert [k["fingerprint"] for k in keys["data"]] == [world.alice.fingerprint]
    # alice may not see the security compartment's vault: 404, like a vault that does not exist
    err = cli_error(
        oci_as(
            world.server, world.alice, "kms", "management", "vault", "get", "--vault-id", world.vault.id, check=False
        )
    )
    assert (err["status"], err["code"]) == HIDDEN


def test_security_compartment_setup_allows_every_key_operation(world: World) -> None:
    a, k = world.a, world.key
    vol = a.create_volume(world.projx, name="with-k", kms_key_id=k)
    assert vol.kms_key_id == k
    assert vol.lifecycle_state == "AVAILABLE"
    plain = a.create_volume(world.projx, name="plain")
    a.bs.update_volume_kms_key(plain.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=k))
    assert a.bs.get_volume_kms_key(plain.id).data.kms_key_id == k
    backup = a.backup(plain.id, name="b1")
    assert backup.lifecycle_state == "AVAILABLE"
    a.bs.update_volume_backup(backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=k))
    restored = a.restore(world.projx, backup.id, kms_key_id=k)
    assert restored.kms_key_id == k
    clone = a.clone(world.projx, vol.id, kms_key_id=k)
    assert clone.kms_key_id == k
    # carol (inspect volume-family in projx) sees them, may not change them
    listed = oci.pagination.list_call_get_all_results(world.c.bs.list_volumes, compartment_id=world.projx).data
    assert {vol.id, plain.id, restored.id, clone.id} <= {v.id for v in listed}
    _expect(lambda: world.c.bs.delete_volume(vol.id), HIDDEN)
    _expect(
        lambda: world.c.bs.update_volume_kms_key(vol.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=k)),
        HIDDEN,
    )


def test_key_delegate_never_lets_the_user_use_the_key_directly(world: World) -> None:
    crypto = world.a.crypto(world.vault)
    details = oci.key_management.models.EncryptDataDetails(key_id=world.key, plaintext="aGVsbG8=")
    _expect(lambda: crypto.encrypt(details), HIDDEN)
    ddetails = oci.key_management.models.DecryptDataDetails(key_id=world.key, ciphertext="aGVsbG8=")
    _expect(lambda: crypto.decrypt(ddetails), HIDDEN)
    _expect(lambda: world.a.mgmt(world.vault).get_key(world.key), HIDDEN)


# --- denied paths: remove either statement ------------------------------------------------------------------------


def _every_key_call_fails(world: World, key: str) -> None:
    a = world.a
    plain = a.create_volume(world.projx, name="plain-for-deny")
    backup = a.backup(plain.id, name="b-deny")
    before_vols = a.volume_ids(world.projx)
    before_backups = a.backup_ids(world.projx)
    _expect(lambda: a.bs.create_volume(_details(world, kms_key_id=key, size_in_gbs=50)), RELATED, "kmsKeyId", key)
    _expect(lambda: a.restore(world.projx, backup.id, kms_key_id=key, wait=False), RELATED, "kmsKeyId")
    _expect(lambda: a.clone(world.projx, plain.id, kms_key_id=key, wait=False), RELATED, "kmsKeyId")
    _expect(
        lambda: a.bs.update_volume_kms_key(plain.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=key)),
        RELATED,
        "kmsKeyId",
    )
    _expect(
        lambda: a.bs.update_volume_backup(backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=key)),
        RELATED,
        "kmsKeyId",
    )
    assert a.volume_ids(world.projx) == before_vols
    assert a.backup_ids(world.projx) == before_backups
    assert a.bs.get_volume_kms_key(plain.id).data.kms_key_id is None
    assert a.bs.get_volume_backup(backup.id).data.kms_key_id is None


def test_without_the_service_statement_every_key_call_fails(world: World) -> None:
    _set(
        world,
        world.service_policy,
        f"Allow service objectstorage-us-ashburn-1 to use keys in compartment {world.sec_name}",
    )
    try:
        _every_key_call_fails(world, world.key)
    finally:
        _set(world, world.service_policy, world.service_stmt)


def test_without_the_delegate_statement_every_key_call_fails(world: World) -> None:
    _set(
        world,
        world.delegate_policy,
        f"Allow group {world.projx_group} to inspect volumes in compartment {world.projx_name}",
    )
    try:
        _every_key_call_fails(world, world.key)
    finally:
        _set(world, world.delegate_policy, world.delegate_stmt)


def test_a_policy_naming_another_key_does_not_help(world: World) -> None:
    _every_key_call_fails(world, world.other_key)


def test_denied_key_message_is_the_same_for_an_absent_key(world: World) -> None:
    """Neither the status nor the message tells alice whether K2 exists."""
    region_key = world.other_key.split(".")[3]
    absent = f"ocid1.key.oc1.{region_key}.{world.other_key.split('.')[4]}.aaaaaaaadoesnotexist"
    e1 = _expect(lambda: world.a.bs.create_volume(_details(world, kms_key_id=world.other_key)), RELATED)
    e2 = _expect(lambda: world.a.bs.create_volume(_details(world, kms_key_id=absent)), RELATED)
    assert e1.message.replace(world.other_key, "K") == e2.message.replace(absent, "K")
    assert world.sec_name not in e1.message  # the key's compartment stays hidden from who cannot inspect it
    assert "use key-delegate" in e1.message
    assert "service blockstorage" in e1.message


def test_hidden_resources_are_404_byte_for_byte_like_absent_ones(world: World) -> None:
    signer = user_signer(world.alice)
    base = world.server.endpoint()
    fake = world.vault.id[:-6] + "zzzzzz"
    bodies = []
    for vault_id in (world.vault.id, fake):
        resp = requests.get(f"{base}/20180608/vaults/{vault_id}", auth=signer, timeout=30)
        bodies.append((resp.status_code, resp.content))
    assert bodies[0] == bodies[1]
    assert bodies[0][0] == 404


def test_lists_return_only_what_the_caller_may_inspect(world: World) -> None:
    vaults = world.a.kv.list_vaults(world.sec).data
    assert vaults == []
    assert [v.id for v in world.b.kv.list_vaults(world.sec).data] == [world.vault.id]
    assert world.c.bs.list_volume_backups(compartment_id=world.sec).data == []
    names = {c.name for c in world.a.identity.list_compartments(world.server.tenancy).data}
    assert world.sec_name not in names


def test_bad_statements_are_refused_at_create_time(world: World) -> None:
    for statement, word in (
        (f"Allow group {world.projx_group} to manages keys in tenancy", "manages"),
        (f"Allow group {world.projx_group} to use keyz in tenancy", "keyz"),
        (f"Allow group {world.projx_group} to use keys in compartment no-such-compartment", "no-such-compartment"),
        ("Allow groupe x to use keys in tenancy", "groupe"),
    ):
        result = world.server.oci(
            "iam",
            "policy",
            "create",
            "--compartment-id",
            world.server.tenancy,
            "--name",
            f"bad-{uuid.uuid4().hex[:6]}",
            "--description",
            "bad",
            "--statements",
            json.dumps([statement]),
            check=False,
        )
        err = cli_error(result)
        assert (err["status"], err["code"]) == (400, "InvalidParameter"), err
        assert word in err["message"], err


def test_explain_names_the_missing_statements(world: World, tmp_path: Path) -> None:
    out = world.server.bv(
        "iam",
        "explain",
        "--user-id",
        world.alice.id,
        "--operation",
        "CreateVolume",
        "--compartment-id",
        world.projx,
        "--kms-key-id",
        world.other_key,
    ).json
    assert out["allowed"] is False
    statements = [m["statement"] for m in out["missing"]]
    assert any("use key-delegate" in s and world.other_key in s for s in statements), statements
    assert any(s.startswith("Allow service blockstorage to use keys") for s in statements), statements
    ok = world.server.bv(
        "iam",
        "explain",
        "--user-id",
        world.alice.id,
        "--operation",
        "CreateVolume",
        "--compartment-id",
        world.projx,
        "--kms-key-id",
        world.key,
    ).json
    assert ok["allowed"] is True, ok


def test_nested_compartment_paths_are_policy_locations(world: World, tmp_path: Path) -> None:
    dev = world.server.oci(
        "iam", "compartment", "create", "--compartment-id", world.projx, "--name", "dev", "--description", "nested"
    ).json["data"]["id"]
    before = service_error(
        lambda: world.c.bs.create_volume(
            oci.core.models.CreateVolumeDetails(
                compartment_id=dev, availability_domain=world.server.ad(1), size_in_gbs=50
            )
        )
    )
    assert (before.status, before.code) == HIDDEN
    pid = policy(
        world.server,
        world.server.tenancy,
        "carol-dev",
        f"Allow group auditors-{world.projx_group.split('-')[-1]} to manage volumes "
        f"in compartment {world.projx_name}:dev",
    )
    vol = world.c.create_volume(dev, name="in-dev")
    assert vol.compartment_id == dev
    world.c.delete_volume(vol.id)
    world.server.oci("iam", "policy", "delete", "--policy-id", pid, "--force")


def test_cis_check_lists_the_findings_that_apply(world: World) -> None:
    plain = world.a.create_volume(world.projx, name="cis-plain")
    pid = policy(
        world.server, world.server.tenancy, "too-broad", f"Allow group {world.projx_group} to manage keys in tenancy"
    )
    try:
        findings = world.server.bv("cis-check").json["findings"]
    finally:
        world.server.oci("iam", "policy", "delete", "--policy-id", pid, "--force")
    by_rec = {(f["recommendation"], f["resourceId"]) for f in findings}
    assert ("5.2.1", plain.id) in by_rec
    assert ("1.x", pid) in by_rec
    assert not any(f["recommendation"] == "1.x" and "Administrators" in f["detail"] for f in findings)
    # alice may not run it (it reads every compartment)
    err = cli_error(world.server.bv("--config-file", str(world.alice.config_file), "cis-check", check=False))
    assert err["status"] == 404, err
