"""Issue 4 flow 7: vault replication (oci-behaviour.md R6.30-R6.37, R2.15, D2, D5; docs/design/vault-replication.md).

A VIRTUAL_PRIVATE vault in us-ashburn-1 is replicated to us-phoenix-1 with the real `oci` CLI; the replica vault
and keys have their own phx OCIDs, the same material and versions, isPrimary=false and replicaDetails. Crypto works
across primary and replica in both directions; management on the replica is refused (409 Conflict); key creation,
rotation, disable/enable and deletion scheduling in the primary are followed at once; the replica key protects a
phoenix volume and stops working when the primary key is disabled; deleting the source vault deletes the replica
and destroys its material.

Uses its own server (it moves the clock forward), never the session one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import (
    DAY,
    KIB,
    MIB,
    Sdk,
    advance_clock,
    assert_error_response,
    e2e_conftest,
    expect_error,
    payload,
    read,
    read_response,
    write,
)

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
M = oci.key_management.models


@dataclass
class Env:
    server: Any
    iad: Sdk
    phx: Sdk
    compartment: str
    vault: Any  # the source vault (us-ashburn-1)
    key: Any  # a key of the source vault


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    conf = e2e_conftest()
    server = conf.start_server(tmp_path_factory.mktemp("vault-repl") / "data")
    try:
        iad, phx = Sdk(server, IAD), Sdk(server, PHX)
        compartment = iad.new_compartment("vault-repl")
        vault = _private_vault(iad, compartment, "source")
        key = iad.new_key(vault, compartment, "k1")
        yield Env(server, iad, phx, compartment, vault, key)
    finally:
        conf.stop_server(server)


def _private_vault(sdk: Sdk, compartment: str, name: str) -> Any:
    details = M.CreateVaultDetails(compartment_id=compartment, display_name=name, vault_type="VIRTUAL_PRIVATE")
    return sdk.kv.get_vault(sdk.kv.create_vault(details).data.id).data


def _encrypt(crypto: Any, key_id: str, data: bytes, ad: dict[str, str] | None = None) -> str:
    details = M.EncryptDataDetails(key_id=key_id, plaintext=base64.b64encode(data).decode(), associated_data=ad)
    return str(crypto.encrypt(details).data.ciphertext)


def _decrypt(crypto: Any, key_id: str, ciphertext: str, ad: dict[str, str] | None = None) -> bytes:
    details = M.DecryptDataDetails(key_id=key_id, ciphertext=ciphertext, associated_data=ad)
    return base64.b64decode(crypto.decrypt(details).data.plaintext)


def _replica_vault(env: Env, source: Any) -> Any:
    """The replica of `source`: found through list-vault-replicas, read in us-phoenix-1."""
    live = [r for r in env.iad.kv.list_vault_replicas(source.id).data if r.status == "CREATED"]
    assert [r.region for r in live] == [PHX]
    by_endpoint = {v.management_endpoint: v for v in env.phx.kv.list_vaults(source.compartment_id).data}
    return env.phx.kv.get_vault(by_endpoint[live[0].management_endpoint].id).data


def _replica_key(env: Env, replica_vault: Any, name: str) -> Any:
    mgmt = env.phx.mgmt(replica_vault)
    found = [k for k in mgmt.list_keys(replica_vault.compartment_id).data if k.display_name == name]
    assert len(found) == 1, found
    return mgmt.get_key(found[0].id).data


@pytest.fixture(scope="module")
def replica(env: Env) -> Any:
    """Replication turned on with the real oci CLI; the same region again is a no-op."""
    server = env.server
    out = server.oci("kms", "management", "vault", "create-vault-replica", "--vault-id", env.vault.id,
                     "--replica-region", PHX)  # fmt: skip
    assert out.rc == 0
    again = server.oci("kms", "management", "vault", "create-vault-replica", "--vault-id", env.vault.id,
                       "--replica-region", PHX)  # fmt: skip
    assert again.rc == 0
    listed = server.oci("kms", "management", "vault", "list-vault-replicas", "--vault-id", env.vault.id).json
    assert [(r["region"], r["status"]) for r in listed["data"]] == [(PHX, "CREATED")]
    return _replica_vault(env, env.vault)


def test_replica_vault_and_key_have_own_phx_ocids_and_replica_fields(env: Env, replica: Any) -> None:
    source = env.iad.kv.get_vault(env.vault.id).data
    assert source.is_primary is True
    assert source.is_vault_replicable is True
    assert source.replica_details is not None
    assert source.replica_details.replication_id

    assert replica.id.startswith("ocid1.vault.oc1.phx.")
    assert replica.is_primary is False
    assert replica.replica_details is not None
    assert replica.replica_details.replication_id
    assert (replica.vault_type, replica.lifecycle_state, replica.display_name) == (
        "VIRTUAL_PRIVATE",
        "ACTIVE",
        "source",
    )
    assert replica.crypto_endpoint.startswith(env.server.endpoint(PHX))

    rkey = _replica_key(env, replica, "k1")
    assert rkey.id.startswith("ocid1.key.oc1.phx.")
    assert rkey.id != env.key.id
    assert (rkey.is_primary, rkey.lifecycle_state, rkey.vault_id) == (False, "ENABLED", replica.id)
    assert rkey.replica_details is not None
    assert rkey.replica_details.replication_id
    assert (rkey.key_shape.algorithm, rkey.key_shape.length) == ("AES", 32)
    versions = env.phx.mgmt(replica).list_key_versions(rkey.id).data
    assert len(versions) == 1
    version = env.phx.mgmt(replica).get_key_version(rkey.id, versions[0].id).data
    assert version.id.startswith("ocid1.keyversion.oc1.phx.")
    assert version.id == rkey.current_key_version
    assert version.is_primary is False
    primary_version = env.iad.mgmt(env.vault).get_key_version(env.key.id, env.key.current_key_version).data
    assert primary_version.is_primary is True


def test_ciphertexts_cross_between_primary_and_replica(env: Env, replica: Any) -> None:
    rkey = _replica_key(env, replica, "k1")
    primary, secondary = env.iad.crypto(env.vault), env.phx.crypto(replica)
    ad = {"volume": "v1", "purpose": "test"}

    made_in_iad = _encrypt(primary, env.key.id, b"from ashburn", ad)
    assert _decrypt(secondary, rkey.id, made_in_iad, ad) == b"from ashburn"
    made_in_phx = _encrypt(secondary, rkey.id, b"from phoenix", ad)
    assert _decrypt(primary, env.key.id, made_in_phx, ad) == b"from phoenix"

    # A data key generated at the replica opens at the primary.
    gen = secondary.generate_data_encryption_key(
        M.GenerateKeyDetails(
            key_id=rkey.id, include_plaintext_key=True, key_shape=M.KeyShape(algorithm="AES", length=32)
        )
    ).data
    assert base64.b64encode(_decrypt(primary, env.key.id, gen.ciphertext)).decode() == gen.plaintext

    # The binding still holds across regions: other associated data fails.
    expect_error(lambda: _decrypt(secondary, rkey.id, made_in_iad, {"volume": "v2"}), 400, "InvalidParameter")


def test_management_on_the_replica_is_refused(env: Env, replica: Any) -> None:
    rkey = _replica_key(env, replica, "k1")
    mgmt = env.phx.mgmt(replica)
    shape = M.KeyShape(algorithm="AES", length=32)
    refusals = [
        lambda: mgmt.create_key(M.CreateKeyDetails(compartment_id=env.compartment, display_name="no", key_shape=shape)),
        lambda: mgmt.disable_key(rkey.id),
        lambda: mgmt.create_key_version(rkey.id),
        lambda: mgmt.schedule_key_deletion(rkey.id, M.ScheduleKeyDeletionDetails()),
        lambda: mgmt.update_key(rkey.id, M.UpdateKeyDetails(display_name="renamed")),
        lambda: env.phx.kv.update_vault(replica.id, M.UpdateVaultDetails(display_name="renamed")),
        lambda: env.phx.kv.schedule_vault_deletion(replica.id, M.ScheduleVaultDeletionDetails()),
        lambda: env.phx.kv.create_vault_replica(replica.id, M.CreateVaultReplicaDetails(replica_region=IAD)),
    ]
    for call in refusals:
        expect_error(call, 409, "Conflict", "replica", env.vault.id)
    # The real CLI too, on the replica's management endpoint.
    cli = env.server.oci("kms", "management", "key", "disable", "--key-id", rkey.id,
                         endpoint=replica.management_endpoint, check=False)  # fmt: skip
    assert cli.rc != 0
    assert (cli.error["status"], cli.error["code"]) == (409, "Conflict")
    # Nothing changed at the replica.
    assert _replica_key(env, replica, "k1").lifecycle_state == "ENABLED"
    assert {k.display_name for k in mgmt.list_keys(env.compartment).data} >= {"k1"}
    assert "no" not in {k.display_name for k in mgmt.list_keys(env.compartment).data}


def test_primary_changes_are_followed_at_once(env: Env, replica: Any) -> None:
    iad_mgmt, phx_mgmt = env.iad.mgmt(env.vault), env.phx.mgmt(replica)
    primary, secondary = env.iad.crypto(env.vault), env.phx.crypto(replica)

    # A key created in the primary exists in the replica when the call returns.
    k2 = env.iad.new_key(env.vault, env.compartment, "k2")
    r2 = _replica_key(env, replica, "k2")
    assert (r2.lifecycle_state, r2.is_primary) == ("ENABLED", False)
    status = iad_mgmt.get_replication_status(iad_mgmt.get_key(k2.id).data.replica_details.replication_id).data
    assert [(d.region, d.status) for d in status.replica_details] == [(PHX, "REPLICATED")]

    # Rotation: a new version at the replica, current there too; ciphertexts of both versions open on both sides.
    old = _encrypt(primary, k2.id, b"version one")
    iad_mgmt.create_key_version(k2.id)
    r2 = _replica_key(env, replica, "k2")
    assert len(phx_mgmt.list_key_versions(r2.id).data) == 2
    new = _encrypt(primary, k2.id, b"version two")
    assert _decrypt(secondary, r2.id, old) == b"version one"
    assert _decrypt(secondary, r2.id, new) == b"version two"
    assert (
        env.phx.crypto(replica)
        .encrypt(M.EncryptDataDetails(key_id=r2.id, plaintext=base64.b64encode(b"x").decode()))
        .data.key_version_id
        == r2.current_key_version
    )

    # Rename follows.
    iad_mgmt.update_key(k2.id, M.UpdateKeyDetails(display_name="k2-renamed"))
    assert _replica_key(env, replica, "k2-renamed").id == r2.id

    # Disable / enable follow; a disabled replica key refuses crypto (D1).
    iad_mgmt.disable_key(k2.id)
    assert phx_mgmt.get_key(r2.id).data.lifecycle_state == "DISABLED"
    expect_error(lambda: _encrypt(secondary, r2.id, b"no"), 409, "Conflict", r2.id, "DISABLED")
    iad_mgmt.enable_key(k2.id)
    assert phx_mgmt.get_key(r2.id).data.lifecycle_state == "ENABLED"
    assert _decrypt(secondary, r2.id, new) == b"version two"

    # Deletion scheduling and its cancellation follow.
    iad_mgmt.schedule_key_deletion(k2.id, M.ScheduleKeyDeletionDetails())
    pending = phx_mgmt.get_key(r2.id).data
    assert pending.lifecycle_state == "PENDING_DELETION"
    assert pending.time_of_deletion == iad_mgmt.get_key(k2.id).data.time_of_deletion
    expect_error(lambda: _decrypt(secondary, r2.id, new), 409, "Conflict", r2.id, "PENDING_DELETION")
    iad_mgmt.cancel_key_deletion(k2.id)
    assert phx_mgmt.get_key(r2.id).data.lifecycle_state == "ENABLED"


def test_replica_key_protects_a_phoenix_volume_and_follows_the_primary_key(env: Env, replica: Any) -> None:
    server = env.server
    k3 = env.iad.new_key(env.vault, env.compartment, "k3")
    r3 = _replica_key(env, replica, "k3")
    volume = env.phx.create_volume(env.compartment, name="phx-on-replica-key", kms_key_id=r3.id)
    assert (volume.lifecycle_state, volume.kms_key_id) == ("AVAILABLE", r3.id)
    data = payload(MIB, "replica-key-volume")
    write(server, volume.id, 4 * KIB, data, region=PHX)
    assert read(server, volume.id, 4 * KIB, MIB, region=PHX) == data

    # A key of the source region is not a key of us-phoenix-1 (D13).
    expect_error(
        lambda: env.phx.create_volume(env.compartment, name="iad-key-in-phx", kms_key_id=k3.id, wait=False),
        400,
        "InvalidParameter",
    )

    env.iad.mgmt(env.vault).disable_key(k3.id)
    assert_error_response(read_response(server, volume.id, 0, 4 * KIB, region=PHX), 409, "Conflict", r3.id)
    env.iad.mgmt(env.vault).enable_key(k3.id)
    assert read(server, volume.id, 4 * KIB, MIB, region=PHX) == data


def test_blockvault_cli_shows_and_reads_replicas(env: Env, replica: Any) -> None:
    server = env.server
    again = server.bv("kms", "management", "vault", "create-replica", "--vault-id", env.vault.id,
                      "--replica-region", PHX)  # fmt: skip
    assert again.rc == 0  # the brief's short names are aliases of the real CLI's
    listed = server.bv("kms", "management", "vault", "list-replicas", "--vault-id", env.vault.id).json
    assert [(r["region"], r["status"]) for r in listed["data"]] == [(PHX, "CREATED")]
    got = server.bv("--region", PHX, "kms", "management", "vault", "get", "--vault-id", replica.id).json["data"]
    assert (got["is-primary"], got["id"]) == (False, replica.id)
    rid = got["replica-details"]["replication-id"]
    status = server.bv("--region", PHX, "kms", "management", "replication-status-details", "get-replication-status",
                       "--replication-id", rid, "--vault-id", replica.id).json  # fmt: skip
    assert status["data"]["replica-details"] == [{"region": PHX, "status": "REPLICATED"}]
    real = server.oci("kms", "management", "replication-status-details", "get-replication-status",
                      "--replication-id", rid, endpoint=replica.management_endpoint).json  # fmt: skip
    assert real["data"]["replica-details"] == [{"region": PHX, "status": "REPLICATED"}]
    unknown = server.oci("kms", "management", "replication-status-details", "get-replication-status",
                         "--replication-id", "nope", endpoint=replica.management_endpoint, check=False)  # fmt: skip
    assert unknown.error["status"] == 404
    own = server.bv("kms", "management", "vault", "create-vault-replica", "--vault-id", env.vault.id,
                    "--replica-region", IAD, check=False)  # fmt: skip
    assert own.rc != 0
    assert own.error["code"] == "InvalidParameter"


def test_default_vaults_are_not_replicable(env: Env) -> None:
    vault = env.iad.new_vault(env.compartment, "default-vault")
    assert env.iad.kv.get_vault(vault.id).data.is_vault_replicable is False
    expect_error(
        lambda: env.iad.kv.create_vault_replica(vault.id, M.CreateVaultReplicaDetails(replica_region=PHX)),
        409,
        "Conflict",
        "isVaultReplicable",
    )


def test_delete_replica_stops_replication_and_destroys_the_copy(env: Env) -> None:
    vault = _private_vault(env.iad, env.compartment, "short-lived-replication")
    key = env.iad.new_key(vault, env.compartment, "s1")
    env.iad.kv.create_vault_replica(vault.id, M.CreateVaultReplicaDetails(replica_region=PHX))
    rvault = _replica_vault(env, vault)
    rkey = _replica_key(env, rvault, "s1")
    ciphertext = _encrypt(env.iad.crypto(vault), key.id, b"secret")
    assert _decrypt(env.phx.crypto(rvault), rkey.id, ciphertext) == b"secret"

    out = env.server.oci("kms", "management", "vault", "delete-vault-replica", "--vault-id", vault.id,
                         "--replica-region", PHX)  # fmt: skip
    assert out.rc == 0
    assert [(r.region, r.status) for r in env.iad.kv.list_vault_replicas(vault.id).data] == [(PHX, "DELETED")]
    assert env.phx.kv.get_vault(rvault.id).data.lifecycle_state == "DELETED"
    assert env.phx.mgmt(rvault).get_key(rkey.id).data.lifecycle_state == "DELETED"
    expect_error(lambda: _decrypt(env.phx.crypto(rvault), rkey.id, ciphertext), 409, "Conflict", rkey.id)
    # The source is untouched and no longer replicated: a new key stays in the source region.
    assert _decrypt(env.iad.crypto(vault), key.id, ciphertext) == b"secret"
    env.iad.new_key(vault, env.compartment, "s2")
    assert "s2" not in {k.display_name for k in env.phx.mgmt(rvault).list_keys(env.compartment).data}
    expect_error(
        lambda: env.iad.kv.delete_vault_replica(vault.id, M.DeleteVaultReplicaDetails(replica_region=PHX)),
        409,
        "Conflict",
    )


def test_deleting_the_source_vault_deletes_the_replica_and_its_material(env: Env) -> None:
    """R2.15, D2. Runs last in this module: it moves the server's clock 31 days ahead."""
    server = env.server
    vault = _private_vault(env.iad, env.compartment, "doomed")
    key = env.iad.new_key(vault, env.compartment, "d1")
    env.iad.kv.create_vault_replica(vault.id, M.CreateVaultReplicaDetails(replica_region=PHX))
    rvault = _replica_vault(env, vault)
    rkey = _replica_key(env, rvault, "d1")
    volume = env.phx.create_volume(env.compartment, name="phx-doomed", kms_key_id=rkey.id)
    write(server, volume.id, 0, payload(64 * KIB, "doomed"), region=PHX)

    env.iad.kv.schedule_vault_deletion(vault.id, M.ScheduleVaultDeletionDetails())
    assert env.phx.kv.get_vault(rvault.id).data.lifecycle_state == "PENDING_DELETION"
    assert env.phx.mgmt(rvault).get_key(rkey.id).data.lifecycle_state == "PENDING_DELETION"
    # Replica keys and vaults follow their source only: the destination does not reap them on its own.
    result = advance_clock(server, 31 * DAY)
    assert key.id in result["keysDestroyed"]
    assert env.iad.kv.get_vault(vault.id).data.lifecycle_state == "DELETED"
    assert env.phx.kv.get_vault(rvault.id).data.lifecycle_state == "DELETED"
    assert env.phx.mgmt(rvault).get_key(rkey.id).data.lifecycle_state == "DELETED"
    assert [(r.region, r.status) for r in env.iad.kv.list_vault_replicas(vault.id).data] == [(PHX, "DELETED")]
    # D2: what only the replica key protected is gone for good.
    assert env.phx.bs.get_volume(volume.id).data.lifecycle_state == "FAULTY"
    assert_error_response(read_response(server, volume.id, 0, 4 * KIB, region=PHX), 409, "Conflict", rkey.id)
