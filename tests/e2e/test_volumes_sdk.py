"""Flows 2-7 with the real oci Python SDK: volumes, keys of volumes, backups, restores, clones, concurrency
controls. Data is checked byte for byte after every step that touches it.

Rules exercised: R1.6-R1.14, R3.1-R3.21, R4.1-R4.8, D3, D7, D9, S4, S9 (oci-behaviour.md), oci-wire.md §0, §3.5,
§3.6, §4.1-4.3.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import oci
import pytest
from helpers import (
    GIB,
    KIB,
    MIB,
    Image,
    Sdk,
    error_of,
    expect_error,
    payload,
    put,
    read,
    read_response,
    seed_image,
    verify,
    wait_gone,
    write_response,
)

pytestmark = pytest.mark.e2e


@dataclass
class Env:
    sdk: Sdk
    compartment: str
    vault: Any
    k1: str
    k2: str


@pytest.fixture(scope="module")
def env(server: Any) -> Env:
    sdk = Sdk(server)
    compartment = sdk.new_compartment("volumes-sdk")
    vault = sdk.new_vault(compartment, "vault-sdk")
    k1 = sdk.new_key(vault, compartment, "k1").id
    k2 = sdk.new_key(vault, compartment, "k2").id
    return Env(sdk, compartment, vault, k1, k2)


def test_create_with_and_without_key(server: Any, env: Env) -> None:
    bs = env.sdk.bs
    with_key = env.sdk.create_volume(env.compartment, name="with-key", kms_key_id=env.k1)
    assert with_key.lifecycle_state == "AVAILABLE"
    assert with_key.kms_key_id == env.k1
    assert with_key.size_in_gbs == 50
    assert with_key.availability_domain == env.sdk.ad(1)
    assert bs.get_volume_kms_key(with_key.id).data.kms_key_id == env.k1

    plain = env.sdk.create_volume(env.compartment, name="provider-key")
    assert plain.kms_key_id is None  # R1.14: provider-managed key
    assert bs.get_volume_kms_key(plain.id).data.kms_key_id is None

    # Fresh volumes read as zeros; data written reads back byte for byte, on both.
    for volume in (with_key, plain):
        verify(server, volume.id, Image())
        image = seed_image(server, volume.id, volume.id)
        verify(server, volume.id, image)

    # The same bytes in two volumes give different stored data (each volume has its own DEK), which we cannot see
    # from outside; but overwriting part of one must not change the other.
    shared = payload(64 * KIB, "shared")
    a, b = Image(), Image()
    put(server, with_key.id, a, 7 * MIB + 1, shared)
    put(server, plain.id, b, 7 * MIB + 1, shared)
    put(server, with_key.id, a, 7 * MIB + 100, b"overwrite")
    got_a = env.sdk.bs.get_volume(with_key.id).data
    assert got_a.kms_key_id == env.k1
    assert read(server, with_key.id, 7 * MIB + 1, 64 * KIB) == a.expected(7 * MIB + 1, 64 * KIB)
    assert read(server, plain.id, 7 * MIB + 1, 64 * KIB) == shared


def test_list_pagination(env: Env) -> None:
    compartment = env.sdk.new_compartment("paging")
    created = [env.sdk.create_volume(compartment, name=f"page-{n}", wait=False).id for n in range(5)]
    for volume_id in created:
        env.sdk.wait_volume(volume_id)

    seen: list[str] = []
    page = None
    pages = 0
    while True:
        resp = env.sdk.bs.list_volumes(compartment_id=compartment, limit=2, page=page)
        assert isinstance(resp.data, list)
        assert len(resp.data) <= 2
        seen += [v.id for v in resp.data]
        pages += 1
        if not resp.has_next_page:
            break
        assert resp.next_page  # never an empty token (oci-wire §0.4)
        page = resp.next_page
        assert pages < 10, "pagination does not end"
    assert pages == 3
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))

    everything = oci.pagination.list_call_get_all_results(
        env.sdk.bs.list_volumes, compartment_id=compartment, limit=2
    ).data
    assert [v.id for v in everything] == seen
    # Filters work together with paging.
    named = env.sdk.bs.list_volumes(compartment_id=compartment, display_name="page-3").data
    assert [v.id for v in named] == [created[3]]
    ad = env.sdk.bs.list_volumes(
        compartment_id=compartment, availability_domain=env.sdk.ad(1), lifecycle_state="AVAILABLE"
    ).data
    assert sorted(v.id for v in ad) == sorted(created)


def test_update_name_and_grow(server: Any, env: Env) -> None:
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="to-grow", kms_key_id=env.k1)
    image = seed_image(server, volume.id, "grow")

    renamed = bs.update_volume(volume.id, oci.core.models.UpdateVolumeDetails(display_name="grown")).data
    assert renamed.display_name == "grown"
    assert bs.get_volume(volume.id).data.display_name == "grown"

    grown = bs.update_volume(volume.id, oci.core.models.UpdateVolumeDetails(size_in_gbs=60)).data
    assert grown.size_in_gbs == 60
    grown = env.sdk.wait_volume(volume.id)
    assert grown.size_in_gbs == 60
    assert grown.kms_key_id == env.k1
    verify(server, volume.id, image, size_gb=60)
    # The new space is usable, right up to the last byte.
    put(server, volume.id, image, 55 * GIB + 3, payload(MIB, "past-50"))
    put(server, volume.id, image, 60 * GIB - 4 * KIB, payload(4 * KIB, "last"))
    verify(server, volume.id, image, size_gb=60)

    expect_error(
        lambda: bs.update_volume(volume.id, oci.core.models.UpdateVolumeDetails(size_in_gbs=55)),
        400,
        "InvalidParameter",
    )
    after = bs.get_volume(volume.id).data
    assert after.size_in_gbs == 60
    assert after.display_name == "grown"
    verify(server, volume.id, image, size_gb=60)


def test_delete(server: Any, env: Env) -> None:
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="to-delete", kms_key_id=env.k2)
    seed_image(server, volume.id, "delete")
    resp = bs.delete_volume(volume.id)
    assert resp.status in (200, 202, 204)
    wait_gone(lambda: bs.get_volume(volume.id).data)
    # The data of a deleted volume is gone for good: 404, or a permanent 409 Conflict, never IncorrectState
    # (which clients retry for ten minutes, oci-wire §0.10) and never the old bytes.
    gone = ((404, "NotAuthorizedOrNotFound"), (409, "Conflict"))
    assert error_of(read_response(server, volume.id, 0, 4096)) in gone
    assert error_of(write_response(server, volume.id, 0, b"late")) in gone
    # Deleting again: either already gone (404) or a permanent conflict, never a success.
    err = expect_any_error(lambda: bs.delete_volume(volume.id))
    assert (err.status, err.code) in gone


def expect_any_error(call: Any) -> oci.exceptions.ServiceError:
    with pytest.raises(oci.exceptions.ServiceError) as info:
        call()
    return info.value


def test_backups_and_restores(server: Any, env: Env) -> None:
    """FULL then INCREMENTAL backups; restores with and without a key and larger; the restored data is the data
    at backup time even after the source was overwritten (R3.2, R3.14, R3.18, R3.21, S4)."""
    bs = env.sdk.bs
    source = env.sdk.create_volume(env.compartment, name="backed-up", kms_key_id=env.k1)
    image = seed_image(server, source.id, "b1")
    at_full = image.copy()

    full = env.sdk.backup(source.id, "FULL", name="full")
    assert full.lifecycle_state == "AVAILABLE"
    assert full.type == "FULL"
    assert full.kms_key_id == env.k1  # R3.14: the volume's key
    assert full.volume_id == source.id
    assert full.size_in_gbs == 50
    assert full.source_type == "MANUAL"
    assert full.expiration_time is None

    put(server, source.id, image, 5 * MIB + 200, payload(64 * KIB + 3, "b2-a"))
    put(server, source.id, image, 20 * GIB + 1, payload(2 * MIB, "b2-b"))
    at_incr = image.copy()
    incr = env.sdk.backup(source.id, "INCREMENTAL", name="incr")
    assert incr.lifecycle_state == "AVAILABLE"
    assert incr.type == "INCREMENTAL"
    assert incr.kms_key_id == env.k1

    # Default type is INCREMENTAL (R3.1).
    details = oci.core.models.CreateVolumeBackupDetails(volume_id=source.id)
    default = env.sdk.wait_backup(bs.create_volume_backup(details).data.id)
    assert default.lifecycle_state == "AVAILABLE"
    assert default.type == "INCREMENTAL"

    # Overwrite the source everywhere it was written.
    for lo, hi in image.extents():
        put(server, source.id, image, lo, payload(hi - lo, f"overwrite-{lo}"))
    verify(server, source.id, image)

    listed = {b.id for b in bs.list_volume_backups(compartment_id=env.compartment, volume_id=source.id).data}
    assert {full.id, incr.id, default.id} <= listed

    r_full = env.sdk.restore(env.compartment, full.id, name="from-full")
    assert r_full.lifecycle_state == "AVAILABLE"
    assert r_full.kms_key_id is None  # R3.18 / S4: no key named -> provider key, though the backup had one
    assert r_full.size_in_gbs == 50
    assert r_full.source_details.type == "volumeBackup"
    assert r_full.source_details.id == full.id
    r_full = env.sdk.wait_hydrated(r_full.id)
    assert r_full.is_hydrated is True
    verify(server, r_full.id, at_full)

    r_incr = env.sdk.restore(env.compartment, incr.id, kms_key_id=env.k2, size_gb=60, name="from-incr")
    assert r_incr.lifecycle_state == "AVAILABLE"
    assert r_incr.kms_key_id == env.k2
    assert r_incr.size_in_gbs == 60
    verify(server, r_incr.id, at_incr, size_gb=60)

    # The restores are independent volumes.
    put(server, r_full.id, at_full, 0, payload(4 * KIB, "restored-write"))
    verify(server, r_full.id, at_full)
    verify(server, source.id, image)
    verify(server, r_incr.id, at_incr, size_gb=60)


def test_clones(server: Any, env: Env) -> None:
    """D3 (clone keeps the source's key when none is named), R4.1 (point in time), R4.5 (usable while
    hydrating)."""
    bs = env.sdk.bs
    source = env.sdk.create_volume(env.compartment, name="clone-source", kms_key_id=env.k1)
    image = seed_image(server, source.id, "clone-src")

    same_key = env.sdk.clone(env.compartment, source.id, name="clone-same-key", wait=False)
    other_key = env.sdk.clone(env.compartment, source.id, kms_key_id=env.k2, name="clone-k2", wait=False)
    at_clone = image.copy()
    assert same_key.kms_key_id == env.k1  # D3
    assert other_key.kms_key_id == env.k2
    assert same_key.size_in_gbs == 50
    assert same_key.availability_domain == source.availability_domain  # R4.2
    assert same_key.source_details.type == "volume"
    assert same_key.source_details.id == source.id

    # Usable as soon as AVAILABLE, whatever isHydrated says.
    first = env.sdk.wait_volume(same_key.id)
    assert first.lifecycle_state == "AVAILABLE"
    clone_image = at_clone.copy()
    verify(server, same_key.id, clone_image)
    put(server, same_key.id, clone_image, 5 * MIB, payload(8 * KIB + 5, "clone-write"))
    verify(server, same_key.id, clone_image)

    # Writes to the source after the clone do not reach the clones.
    put(server, source.id, image, 3, payload(100, "src-after"))
    put(server, source.id, image, 3 * GIB + 4000, payload(MIB, "src-after-2"))

    hydrated = env.sdk.wait_hydrated(same_key.id)
    assert hydrated.is_hydrated is True
    assert hydrated.lifecycle_state == "AVAILABLE"
    assert env.sdk.wait_hydrated(other_key.id).is_hydrated is True
    assert env.sdk.wait_volume(other_key.id).kms_key_id == env.k2

    verify(server, source.id, image)
    verify(server, same_key.id, clone_image)
    verify(server, other_key.id, at_clone)

    # And writes to a clone never reach the source.
    put(server, other_key.id, at_clone, 49 * GIB + 17, payload(4 * KIB, "clone2-write"))
    verify(server, other_key.id, at_clone)
    verify(server, source.id, image)

    # A clone can be larger than its source, never smaller (R4.4).
    bigger = env.sdk.create_volume(
        env.compartment,
        name="clone-bigger",
        size_gb=70,
        source=oci.core.models.VolumeSourceFromVolumeDetails(id=source.id),
    )
    assert bigger.size_in_gbs == 70
    env.sdk.wait_hydrated(bigger.id)
    verify(server, bigger.id, image, size_gb=70)
    before = env.sdk.volume_ids(env.compartment)
    grown = env.sdk.create_volume(env.compartment, name="bigger-src", size_gb=60)
    expect_error(
        lambda: env.sdk.create_volume(
            env.compartment,
            name="clone-smaller",
            size_gb=50,
            source=oci.core.models.VolumeSourceFromVolumeDetails(id=grown.id),
        ),
        400,
        "InvalidParameter",
    )
    assert env.sdk.volume_ids(env.compartment) == before | {grown.id}
    assert bs.get_volume(source.id).data.kms_key_id == env.k1


def test_volume_kms_key_update_get_delete(server: Any, env: Env) -> None:
    """R1.9, R1.13, R3.17/S9, D9: re-keying re-wraps only; backups made before keep their key."""
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="rekey", kms_key_id=env.k1)
    image = seed_image(server, volume.id, "rekey")
    before = env.sdk.backup(volume.id, "FULL", name="before-rekey")
    assert before.lifecycle_state == "AVAILABLE"
    assert before.kms_key_id == env.k1

    updated = bs.update_volume_kms_key(volume.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2))
    assert updated.data.kms_key_id == env.k2
    assert updated.headers.get("etag")
    assert bs.get_volume_kms_key(volume.id).data.kms_key_id == env.k2
    assert bs.get_volume(volume.id).data.kms_key_id == env.k2
    verify(server, volume.id, image)

    # The same key again re-wraps under its current version; nothing else changes (D9).
    again = bs.update_volume_kms_key(volume.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2))
    assert again.data.kms_key_id == env.k2
    verify(server, volume.id, image)

    assert bs.get_volume_backup(before.id).data.kms_key_id == env.k1  # S9
    after = env.sdk.backup(volume.id, "INCREMENTAL", name="after-rekey")
    assert after.kms_key_id == env.k2
    assert after.lifecycle_state == "AVAILABLE"

    resp = bs.delete_volume_kms_key(volume.id)
    assert resp.status in (200, 204)
    assert bs.get_volume_kms_key(volume.id).data.kms_key_id is None
    assert bs.get_volume(volume.id).data.kms_key_id is None  # R1.13: provider key
    verify(server, volume.id, image)
    put(server, volume.id, image, 9 * MIB + 9, payload(MIB, "after-delete-key"))
    verify(server, volume.id, image)

    assert bs.get_volume_backup(before.id).data.kms_key_id == env.k1
    assert bs.get_volume_backup(after.id).data.kms_key_id == env.k2
    seeded = Image(image.writes[:4])  # what the volume held at both backups
    restored = env.sdk.restore(env.compartment, before.id, kms_key_id=env.k1, name="restored-before")
    env.sdk.wait_hydrated(restored.id)
    assert restored.kms_key_id == env.k1
    verify(server, restored.id, seeded)
    restored_after = env.sdk.restore(env.compartment, after.id, name="restored-after")
    env.sdk.wait_hydrated(restored_after.id)
    assert restored_after.kms_key_id is None
    verify(server, restored_after.id, seeded)


def test_backup_key_update(server: Any, env: Env) -> None:
    """R3.15, D7: a backup's key changes to another key and back to the provider key with kmsKeyId ""."""
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="backup-rekey", kms_key_id=env.k1)
    image = seed_image(server, volume.id, "backup-rekey")
    backup = env.sdk.backup(volume.id, "FULL", name="rekeyed")
    assert backup.lifecycle_state == "AVAILABLE"

    to_k2 = bs.update_volume_backup(backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id=env.k2)).data
    assert to_k2.kms_key_id == env.k2
    assert to_k2.lifecycle_state == "AVAILABLE"
    assert bs.get_volume_backup(backup.id).data.kms_key_id == env.k2
    r1 = env.sdk.restore(env.compartment, backup.id, name="after-k2")
    env.sdk.wait_hydrated(r1.id)
    verify(server, r1.id, image)

    to_provider = bs.update_volume_backup(backup.id, oci.core.models.UpdateVolumeBackupDetails(kms_key_id="")).data
    assert to_provider.kms_key_id is None  # D7
    assert bs.get_volume_backup(backup.id).data.kms_key_id is None
    r2 = env.sdk.restore(env.compartment, backup.id, kms_key_id=env.k1, name="after-provider")
    env.sdk.wait_hydrated(r2.id)
    assert r2.kms_key_id == env.k1
    verify(server, r2.id, image)

    # A name-only update keeps the key.
    named = bs.update_volume_backup(backup.id, oci.core.models.UpdateVolumeBackupDetails(display_name="renamed")).data
    assert named.display_name == "renamed"
    assert named.kms_key_id is None
    # The volume itself never changed key.
    assert bs.get_volume(volume.id).data.kms_key_id == env.k1
    verify(server, volume.id, image)


def test_if_match(server: Any, env: Env) -> None:
    """oci-wire §3.6: if-match with a stale etag answers 412 and changes nothing."""
    bs = env.sdk.bs
    volume = env.sdk.create_volume(env.compartment, name="etag", kms_key_id=env.k1)
    image = seed_image(server, volume.id, "etag")
    got = bs.get_volume(volume.id)
    etag = got.headers["etag"]
    assert etag

    expect_error(
        lambda: bs.update_volume(
            volume.id, oci.core.models.UpdateVolumeDetails(display_name="nope"), if_match="wrong-etag"
        ),
        412,
        "NoEtagMatch",
    )
    assert bs.get_volume(volume.id).data.display_name == "etag"
    expect_error(lambda: bs.delete_volume(volume.id, if_match="wrong-etag"), 412, "NoEtagMatch")
    assert bs.get_volume(volume.id).data.lifecycle_state == "AVAILABLE"
    expect_error(
        lambda: bs.update_volume_kms_key(
            volume.id, oci.core.models.UpdateVolumeKmsKeyDetails(kms_key_id=env.k2), if_match="wrong-etag"
        ),
        412,
        "NoEtagMatch",
    )
    assert bs.get_volume(volume.id).data.kms_key_id == env.k1
    verify(server, volume.id, image)

    ok = bs.update_volume(volume.id, oci.core.models.UpdateVolumeDetails(display_name="etag-ok"), if_match=etag)
    assert ok.data.display_name == "etag-ok"
    # The old etag is stale now.
    expect_error(
        lambda: bs.update_volume(volume.id, oci.core.models.UpdateVolumeDetails(display_name="stale"), if_match=etag),
        412,
        "NoEtagMatch",
    )
    assert bs.get_volume(volume.id).data.display_name == "etag-ok"


def test_retry_token(env: Env) -> None:
    """oci-wire §0.11: the same create with the same opc-retry-token gives the same volume, once."""
    compartment = env.sdk.new_compartment("retry")
    details = oci.core.models.CreateVolumeDetails(
        compartment_id=compartment,
        availability_domain=env.sdk.ad(1),
        display_name="idem",
        size_in_gbs=50,
        kms_key_id=env.k1,
    )
    token = "blockvaultE2eRetryToken0123456789"[:30]
    first = env.sdk.bs.create_volume(details, opc_retry_token=token).data
    second = env.sdk.bs.create_volume(details, opc_retry_token=token).data
    assert first.id == second.id
    env.sdk.wait_volume(first.id)
    assert env.sdk.volume_ids(compartment) == {first.id}
    # A different token makes a different volume.
    third = env.sdk.bs.create_volume(details, opc_retry_token="another-token-0123456789abcdef").data
    assert third.id != first.id
    env.sdk.wait_volume(third.id)
    assert env.sdk.volume_ids(compartment) == {first.id, third.id}


def test_parallel_first_access(server: Any, env: Env) -> None:
    """Concurrent requests on a volume nobody has used yet (fresh, or after a key state change dropped its cached
    DEK) all succeed: the server must not race itself into "open in another VolumeStore"."""
    for round_ in range(6):
        volume = env.sdk.create_volume(env.compartment, name=f"parallel-{round_}", kms_key_id=env.k1)
        image = Image()
        chunks = [(n * 128 * KIB + n, payload(128 * KIB, f"par-{round_}-{n}")) for n in range(12)]
        with ThreadPoolExecutor(len(chunks)) as pool:
            writes = list(pool.map(lambda c, v=volume.id: write_response(server, v, c[0], c[1]), chunks))
        failed = [r.text for r in writes if r.status_code != 200]
        assert not failed, failed
        for offset, data in chunks:
            image.record(offset, data)
        # Drop every cached DEK (D1 machinery), then read in parallel from cold.
        env.sdk.disable_key(env.vault, env.k1)
        env.sdk.enable_key(env.vault, env.k1)
        with ThreadPoolExecutor(len(chunks)) as pool:
            reads = list(pool.map(lambda c, v=volume.id: read_response(server, v, c[0], len(c[1])), chunks))
        failed = [r.text for r in reads if r.status_code != 200]
        assert not failed, failed
        assert [r.content for r in reads] == [image.expected(o, len(d)) for o, d in chunks]
        verify(server, volume.id, image)
