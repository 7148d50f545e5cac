"""The real oci CLI's Block Volume commands against blockvault, and bad input: each refusal has the right status
and code, and leaves nothing behind.

Rules exercised: oci-wire.md §0, §2, §3.3, §4.1-4.3, §4.6, §7.2; oci-behaviour.md D1, D3, D6, D7, D13, R3.18, R3.21.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import oci
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import (
    GIB,
    KIB,
    MIB,
    Image,
    Sdk,
    assert_error_response,
    expect_error,
    payload,
    put,
    raw,
    read,
    seed_image,
    signer,
    tmpfile,
    verify,
    wait_gone,
)

pytestmark = pytest.mark.e2e


@dataclass
class Env:
    server: Any
    sdk: Sdk
    compartment: str
    vault: Any
    k: str
    k2: str
    disabled: str
    rsa: str
    phx_sdk: Sdk
    phx_key: str

    def cli(self, *args: str, check: bool = True) -> Any:
        return self.server.oci("bv", *args, check=check)


@pytest.fixture(scope="module")
def env(server: Any) -> Env:
    sdk = Sdk(server)
    compartment = sdk.new_compartment("cli")
    vault = sdk.new_vault(compartment, "vault-cli-commands")
    k = sdk.new_key(vault, compartment, "k").id
    k2 = sdk.new_key(vault, compartment, "k2").id
    disabled = sdk.new_key(vault, compartment, "disabled").id
    sdk.disable_key(vault, disabled)
    rsa_key = sdk.new_key(vault, compartment, "rsa", algorithm="RSA", length=256).id
    phx = Sdk(server, "us-phoenix-1")
    phx_vault = phx.new_vault(compartment, "vault-phoenix")
    phx_key = phx.new_key(phx_vault, compartment, "phx-key").id
    return Env(server, sdk, compartment, vault, k, k2, disabled, rsa_key, phx, phx_key)


def _error(result: Any, status: int, code: str, *mentions: str) -> dict[str, Any]:
    assert result.rc != 0, f"expected a failure, got {result.out}"
    err = result.error
    assert (err.get("status"), err.get("code")) == (status, code), err
    for text in mentions:
        assert text in err.get("message", ""), (text, err)
    return err


@contextmanager
def nothing_created(env: Env) -> Iterator[None]:
    volumes, backups = env.sdk.volume_ids(env.compartment), env.sdk.backup_ids(env.compartment)
    yield
    assert env.sdk.volume_ids(env.compartment) == volumes, "a refused request left a volume behind"
    assert env.sdk.backup_ids(env.compartment) == backups, "a refused request left a backup behind"


# ------------------------------------------------------------------------------------------------ commands


def test_volume_create_get_list_update_delete(server: Any, env: Env, tmp_path: Any) -> None:
    out = env.cli(
        "volume",
        "create",
        "--compartment-id",
        env.compartment,
        "--availability-domain",
        server.ad(1),
        "--size-in-gbs",
        "50",
        "--display-name",
        "cli-vol",
        "--kms-key-id",
        env.k,
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json
    volume = out["data"]
    vid = volume["id"]
    assert vid.startswith("ocid1.volume.oc1.iad.")
    assert volume["lifecycle-state"] == "AVAILABLE"
    assert volume["kms-key-id"] == env.k
    assert volume["size-in-gbs"] == 50
    assert volume["availability-domain"] == server.ad(1)
    assert volume["display-name"] == "cli-vol"

    # Data through our CLI: write a file at an unaligned offset, read it back, and check against the raw API.
    data = payload(3 * MIB + 17, "cli-data")
    src = tmpfile(tmp_path, "in.bin", data)
    server.bv("volume", "write", vid, "--from-file", src, "--offset", str(MIB + 5))
    dst = tmp_path / "out.bin"
    server.bv("volume", "read", vid, "--to-file", str(dst), "--offset", str(MIB + 5), "--length", str(len(data)))
    assert dst.read_bytes() == data
    image = Image([(MIB + 5, data)])
    verify(server, vid, image)

    got = env.cli("volume", "get", "--volume-id", vid).json
    assert got["data"]["id"] == vid
    assert got["data"]["kms-key-id"] == env.k
    assert got["etag"]

    listed = env.cli(
        "volume",
        "list",
        "--compartment-id",
        env.compartment,
        "--availability-domain",
        server.ad(1),
        "--lifecycle-state",
        "AVAILABLE",
        "--all",
    ).json["data"]
    assert vid in [v["id"] for v in listed]

    updated = env.cli(
        "volume",
        "update",
        "--volume-id",
        vid,
        "--display-name",
        "cli-vol-renamed",
        "--size-in-gbs",
        "60",
        "--force",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert updated["display-name"] == "cli-vol-renamed"
    assert updated["size-in-gbs"] == 60
    assert updated["kms-key-id"] == env.k
    verify(server, vid, image, size_gb=60)
    put(server, vid, image, 59 * GIB + 1, payload(64 * KIB, "cli-grown"))
    verify(server, vid, image, size_gb=60)

    deleted = env.cli(
        "volume",
        "delete",
        "--volume-id",
        vid,
        "--force",
        "--wait-for-state",
        "TERMINATED",
        "--wait-interval-seconds",
        "1",
    )
    assert deleted.rc == 0
    after = env.cli("volume", "get", "--volume-id", vid, check=False)
    if after.rc == 0:
        assert after.json["data"]["lifecycle-state"] == "TERMINATED"
    else:
        _error(after, 404, "NotAuthorizedOrNotFound")


def test_backup_restore_clone(server: Any, env: Env) -> None:
    sdk = env.sdk
    volume = sdk.create_volume(env.compartment, name="cli-backup-src", kms_key_id=env.k)
    image = seed_image(server, volume.id, "cli-backup")
    at_backup = image.copy()

    backup = env.cli(
        "backup",
        "create",
        "--volume-id",
        volume.id,
        "--type",
        "FULL",
        "--display-name",
        "cli-full",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    bid = backup["id"]
    assert bid.startswith("ocid1.volumebackup.oc1.iad.")
    assert backup["lifecycle-state"] == "AVAILABLE"
    assert backup["type"] == "FULL"
    assert backup["kms-key-id"] == env.k
    assert backup["volume-id"] == volume.id

    for lo, hi in image.extents():  # the source moves on after the backup
        put(server, volume.id, image, lo, payload(hi - lo, f"cli-after-{lo}"))

    to_k2 = env.cli("backup", "update", "--volume-backup-id", bid, "--kms-key-id", env.k2).json["data"]
    assert to_k2["kms-key-id"] == env.k2
    assert env.cli("backup", "get", "--volume-backup-id", bid).json["data"]["kms-key-id"] == env.k2

    restored = env.cli(
        "volume",
        "create",
        "--volume-backup-id",
        bid,
        "--availability-domain",
        server.ad(1),
        "--display-name",
        "cli-restored",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert restored["kms-key-id"] is None  # R3.18
    assert restored["compartment-id"] == env.compartment  # the CLI took it from the backup
    assert restored["source-details"] == {"type": "volumeBackup", "id": bid}
    sdk.wait_hydrated(restored["id"])
    verify(server, restored["id"], at_backup)

    restored_k = env.cli(
        "volume",
        "create",
        "--volume-backup-id",
        bid,
        "--availability-domain",
        server.ad(2),
        "--kms-key-id",
        env.k,
        "--size-in-gbs",
        "70",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert restored_k["kms-key-id"] == env.k
    assert restored_k["size-in-gbs"] == 70
    assert restored_k["availability-domain"] == server.ad(2)  # R3.20: any AD of the region
    sdk.wait_hydrated(restored_k["id"])
    verify(server, restored_k["id"], at_backup, size_gb=70)

    # kmsKeyId "" is sent verbatim and means the provider key (D7).
    to_provider = env.cli("backup", "update", "--volume-backup-id", bid, "--kms-key-id", "").json["data"]
    assert to_provider["kms-key-id"] is None
    assert env.cli("backup", "get", "--volume-backup-id", bid).json["data"]["kms-key-id"] is None
    again = sdk.restore(env.compartment, bid, kms_key_id=env.k2, name="cli-restored-provider")
    sdk.wait_hydrated(again.id)
    verify(server, again.id, at_backup)

    clone = env.cli(
        "volume",
        "create",
        "--source-volume-id",
        volume.id,
        "--display-name",
        "cli-clone",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert clone["kms-key-id"] == env.k  # D3
    assert clone["availability-domain"] == volume.availability_domain
    assert clone["source-details"] == {"type": "volume", "id": volume.id}
    verify(server, clone["id"], image)
    clone_k2 = env.cli(
        "volume",
        "create",
        "--source-volume-id",
        volume.id,
        "--kms-key-id",
        env.k2,
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
    ).json["data"]
    assert clone_k2["kms-key-id"] == env.k2
    sdk.wait_hydrated(clone["id"])
    sdk.wait_hydrated(clone_k2["id"])
    verify(server, clone["id"], image)
    verify(server, clone_k2["id"], image)
    verify(server, volume.id, image)


def test_volume_kms_key_commands(server: Any, env: Env) -> None:
    volume = env.sdk.create_volume(env.compartment, name="cli-kms-key", kms_key_id=env.k)
    image = seed_image(server, volume.id, "cli-kms-key")

    got = env.cli("volume-kms-key", "get", "--volume-id", volume.id).json
    assert got["data"]["kms-key-id"] == env.k

    updated = env.cli("volume-kms-key", "update", "--volume-id", volume.id, "--kms-key-id", env.k2).json
    assert updated["data"]["kms-key-id"] == env.k2
    assert updated["etag"]
    assert env.cli("volume-kms-key", "get", "--volume-id", volume.id).json["data"]["kms-key-id"] == env.k2
    verify(server, volume.id, image)

    deleted = env.cli("volume-kms-key", "delete", "--volume-id", volume.id, "--force")
    assert deleted.rc == 0
    assert deleted.out.strip() == ""
    after = env.cli("volume-kms-key", "get", "--volume-id", volume.id).json["data"]
    assert after.get("kms-key-id") is None
    assert env.sdk.bs.get_volume(volume.id).data.kms_key_id is None
    verify(server, volume.id, image)


# ------------------------------------------------------------------------------------------------ bad input


def _bad_keys(env: Env) -> list[tuple[str, str, int, str]]:
    vault_id = env.vault.id
    unknown = env.k[:-8] + "zzzzzzzz"
    return [
        ("malformed OCID", "ocid1.key.oc1.iad.not a valid ocid!", 400, "InvalidParameter"),
        ("not an OCID", "my-key", 400, "InvalidParameter"),
        ("vault OCID", vault_id, 400, "InvalidParameter"),
        ("RSA key", env.rsa, 400, "InvalidParameter"),
        ("key of another region", env.phx_key, 400, "InvalidParameter"),
        ("unknown key", unknown, 400, "RelatedResourceNotAuthorizedOrNotFound"),
        ("disabled key", env.disabled, 409, "Conflict"),
    ]


def test_bad_kms_key_with_the_cli(server: Any, env: Env) -> None:
    for what, key_id, status, code in _bad_keys(env):
        with nothing_created(env):
            result = env.cli(
                "volume",
                "create",
                "--compartment-id",
                env.compartment,
                "--availability-domain",
                server.ad(1),
                "--size-in-gbs",
                "50",
                "--display-name",
                f"bad-{what}",
                "--kms-key-id",
                key_id,
                check=False,
            )
            err = _error(result, status, code)
            assert "kmsKeyId" in err["message"] or key_id in err["message"], (what, err)
    # D1: the disabled key's error names the key and its state.
    result = env.cli(
        "volume",
        "create",
        "--compartment-id",
        env.compartment,
        "--availability-domain",
        server.ad(1),
        "--kms-key-id",
        env.disabled,
        check=False,
    )
    _error(result, 409, "Conflict", env.disabled, "DISABLED")


def test_bad_kms_key_changes_nothing(server: Any, env: Env) -> None:
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="bad-key-target", kms_key_id=env.k)
    image = seed_image(server, volume.id, "bad-key-target")
    backup = env.sdk.backup(volume.id, "FULL", name="bad-key-target")
    assert backup.lifecycle_state == "AVAILABLE"
    for what, key_id, status, code in _bad_keys(env):
        with nothing_created(env):
            expect_error(
                lambda k=key_id: bs.update_volume_kms_key(
                    volume.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=k)
                ),
                status,
                code,
            )
            expect_error(
                lambda k=key_id: bs.update_volume_backup(
                    backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=k)
                ),
                status,
                code,
            )
            expect_error(
                lambda k=key_id: env.sdk.restore(env.compartment, backup.id, kms_key_id=k, wait=False), status, code
            )
            expect_error(
                lambda k=key_id: env.sdk.clone(env.compartment, volume.id, kms_key_id=k, wait=False), status, code
            )
        assert bs.get_volume(volume.id).data.kms_key_id == env.k, what
        assert bs.get_volume_backup(backup.id).data.kms_key_id == env.k, what
    verify(server, volume.id, image)

    # The Phoenix key is a good key in its own region (D13 is about regions, not about that key).
    phx = env.phx_sdk.create_volume(env.compartment, name="phx-vol", kms_key_id=env.phx_key)
    assert phx.kms_key_id == env.phx_key
    phx_image = seed_image(server, phx.id, "phx", region="us-phoenix-1")
    verify(server, phx.id, phx_image, region="us-phoenix-1")
    # ... and the Ashburn key is as foreign in Phoenix.
    expect_error(
        lambda: env.phx_sdk.create_volume(env.compartment, name="phx-bad", kms_key_id=env.k, wait=False),
        400,
        "InvalidParameter",
    )


def test_malformed_source_ids(env: Env) -> None:
    with nothing_created(env):
        expect_error(lambda: env.sdk.clone(env.compartment, "garbage", wait=False), 400, "InvalidParameter")
        expect_error(
            lambda: env.sdk.restore(env.compartment, "ocid1.volumebackup.oc1.iad.###", wait=False),
            400,
            "InvalidParameter",
        )
        # A well-formed id of nothing: the related resource is not found (D6).
        unknown_backup = "ocid1.volumebackup.oc1.iad." + "a" * 60
        expect_error(
            lambda: env.sdk.restore(env.compartment, unknown_backup, wait=False),
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
        )


def test_restore_smaller_than_backup(server: Any, env: Env) -> None:
    volume = env.sdk.create_volume(env.compartment, name="sixty", size_gb=60)
    image = seed_image(server, volume.id, "sixty")
    backup = env.sdk.backup(volume.id, "FULL", name="sixty")
    assert (backup.lifecycle_state, backup.size_in_gbs) == ("AVAILABLE", 60)
    with nothing_created(env):
        result = env.cli(
            "volume",
            "create",
            "--volume-backup-id",
            backup.id,
            "--availability-domain",
            server.ad(1),
            "--size-in-gbs",
            "55",
            check=False,
        )
        _error(result, 400, "InvalidParameter")  # R3.21
    ok = env.sdk.restore(env.compartment, backup.id, size_gb=60, name="sixty-restored")
    env.sdk.wait_hydrated(ok.id)
    verify(server, ok.id, image, size_gb=60)


def test_clone_of_a_deleted_source(env: Env) -> None:
    volume = env.sdk.create_volume(env.compartment, name="gone")
    env.sdk.delete_volume(volume.id)
    with nothing_created(env):
        result = env.cli(
            "volume", "create", "--source-volume-id", volume.id, "--compartment-id", env.compartment, check=False
        )
        assert result.rc != 0
        err = result.error
        if err.get("operation_name") == "get_volume":  # the CLI's pre-GET already saw it gone
            assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")
        else:
            assert (err["status"], err["code"]) == (400, "RelatedResourceNotAuthorizedOrNotFound"), err
        expect_error(
            lambda: env.sdk.clone(env.compartment, volume.id, wait=False), 400, "RelatedResourceNotAuthorizedOrNotFound"
        )


def test_unknown_resources_and_features(server: Any, env: Env) -> None:
    unknown = "ocid1.volume.oc1.iad." + "a" * 60
    _error(env.cli("volume", "get", "--volume-id", unknown, check=False), 404, "NotAuthorizedOrNotFound")
    _error(env.cli("volume-kms-key", "get", "--volume-id", unknown, check=False), 404, "NotAuthorizedOrNotFound")
    _error(
        env.cli("backup", "get", "--volume-backup-id", "ocid1.volumebackup.oc1.iad." + "b" * 60, check=False),
        404,
        "NotAuthorizedOrNotFound",
    )
    volume = env.sdk.create_volume(env.compartment, name="copy-src")
    # A volume lives in one region: another region's endpoint does not know it.
    expect_error(lambda: env.phx_sdk.bs.get_volume(volume.id), 404, "NotAuthorizedOrNotFound")
    _error(
        env.server.oci(
            "bv", "volume", "get", "--volume-id", volume.id, endpoint=server.endpoint("us-phoenix-1"), check=False
        ),
        404,
        "NotAuthorizedOrNotFound",
    )
    resp = raw(
        server,
        "GET",
        f"/20160918/volumes/{volume.id}/data",
        region="us-phoenix-1",
        params={"offset": 0, "length": 4096},
    )
    assert_error_response(resp, 404, "NotAuthorizedOrNotFound")
    backup = env.sdk.backup(volume.id, "FULL", name="copy-src")
    with nothing_created(env):
        # Backup copy is implemented (test_backup_copy.py); a region blockvault does not serve is 400 (D11).
        result = env.cli(
            "backup", "copy", "--volume-backup-id", backup.id, "--destination-region", "eu-frankfurt-1", check=False
        )
        _error(result, 400, "InvalidParameter")


def test_malformed_json_and_missing_fields(server: Any, env: Env) -> None:
    with nothing_created(env):
        for body in ('{"compartmentId": ', "not json at all", "[1, 2, 3]", "\xff\xfe"):
            resp = raw(server, "POST", "/20160918/volumes", data=body.encode("latin-1"))
            assert_error_response(resp, 400, "CannotParseRequest")
        resp = raw(
            server,
            "POST",
            "/20160918/volumes",
            json_body={"availabilityDomain": server.ad(1), "sizeInGBs": 50, "displayName": "no-compartment"},
        )
        assert_error_response(resp, 400, "MissingParameter", "compartmentId")
        resp = raw(server, "POST", "/20160918/volumeBackups", json_body={"type": "FULL"})
        assert_error_response(resp, 400, "MissingParameter", "volumeId")
        resp = raw(
            server, "PUT", "/20160918/volumes/" + "ocid1.volume.oc1.iad." + "a" * 60, json_body={"displayName": "x"}
        )
        assert_error_response(resp, 404, "NotAuthorizedOrNotFound")


class _Tampered(requests.auth.AuthBase):
    """Sign with the real signer, then change the request in a way the signature no longer covers."""

    def __init__(self, inner: Any, change: str) -> None:
        self.inner, self.change = inner, change

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request = self.inner(request)
        if self.change == "signature":
            auth = request.headers["authorization"]
            start = auth.index('signature="') + len('signature="')
            flipped = "A" if auth[start] != "A" else "B"
            request.headers["authorization"] = auth[:start] + flipped + auth[start + 1 :]
        elif self.change == "body":
            request.body = b'{"compartmentId": "tampered"}'
            request.headers["content-length"] = str(len(request.body))
        elif self.change == "path":
            request.url = request.url.replace("limit=5", "limit=6")
        return request


def test_authentication_failures(server: Any, env: Env) -> None:
    list_path = "/20160918/volumes"
    params = {"compartmentId": env.compartment, "limit": 5}
    ok = raw(server, "GET", list_path, params=params)
    assert ok.status_code == 200, ok.text

    with nothing_created(env):
        # Unsigned.
        assert_error_response(raw(server, "GET", list_path, params=params, auth=False), 401, "NotAuthenticated")
        create = {"compartmentId": env.compartment, "availabilityDomain": server.ad(1), "sizeInGBs": 50}
        assert_error_response(raw(server, "POST", list_path, json_body=create, auth=False), 401, "NotAuthenticated")
        # Signed, then altered: the signature bytes, the signed path, the signed body.
        for change in ("signature", "path"):
            resp = raw(server, "GET", list_path, params=params, auth=_Tampered(signer(server), change))
            assert_error_response(resp, 401, "NotAuthenticated")
        resp = raw(server, "POST", list_path, json_body=create, auth=_Tampered(signer(server), "body"))
        assert_error_response(resp, 401, "NotAuthenticated")
        # Signed by a key the server does not know, under the admin's key id.
        cfg = server.sdk_config()
        stranger = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
        foreign = oci.signer.Signer(
            tenancy=cfg["tenancy"],
            user=cfg["user"],
            fingerprint=cfg["fingerprint"],
            private_key_file_location=None,
            private_key_content=stranger,
        )
        assert_error_response(raw(server, "GET", list_path, params=params, auth=foreign), 401, "NotAuthenticated")
        assert_error_response(raw(server, "POST", list_path, json_body=create, auth=foreign), 401, "NotAuthenticated")
        # A correct signature over a date 10 minutes off (OCI allows 5).
        for skew in (-600, 600):
            date = email.utils.formatdate(time.time() + skew, usegmt=True)
            resp = raw(server, "GET", list_path, params=params, headers={"date": date})
            assert_error_response(resp, 401, "NotAuthenticated")
            resp = raw(server, "POST", list_path, json_body=create, headers={"date": date})
            assert_error_response(resp, 401, "NotAuthenticated")
        # Data requests are signed like any other.
        volume_id = next(iter(env.sdk.volume_ids(env.compartment)))
        resp = raw(
            server, "GET", f"/20160918/volumes/{volume_id}/data", params={"offset": 0, "length": 4096}, auth=False
        )
        assert_error_response(resp, 401, "NotAuthenticated")
    # A date 2 minutes off is within the allowed skew.
    date = email.utils.formatdate(time.time() - 120, usegmt=True)
    assert raw(server, "GET", list_path, params=params, headers={"date": date}).status_code == 200


def test_unsigned_write_changes_no_data(server: Any, env: Env) -> None:
    volume = env.sdk.create_volume(env.compartment, name="unsigned-write")
    image = seed_image(server, volume.id, "unsigned")
    resp = raw(
        server,
        "PUT",
        f"/20160918/volumes/{volume.id}/data",
        params={"offset": 0},
        data=b"x" * 4096,
        headers={"content-type": "application/octet-stream"},
        auth=False,
    )
    assert_error_response(resp, 401, "NotAuthenticated")
    assert read(server, volume.id, 0, 4096) == image.expected(0, 4096)
    verify(server, volume.id, image)
    env.sdk.bs.delete_volume(volume.id)
    wait_gone(lambda: env.sdk.bs.get_volume(volume.id).data)
