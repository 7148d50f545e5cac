"""Shared drivers for the acceptance suite: SDK clients bound to a live server, signed raw requests (volume data,
admin clock, malformed bodies), waits, and an in-memory model of what a volume must contain.

Everything here talks to the server only through its public wire (the OCI REST API and blockvault's documented
extensions), exactly as a user would.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import oci
import pytest
import requests

if TYPE_CHECKING:
    from conftest import Server

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
DAY = 24 * 3600
AD_REGION = "us-ashburn-1"
CHUNK = 8 * MIB  # bytes per data request (the server takes at most 64 MiB)

T = TypeVar("T")


def e2e_conftest() -> ModuleType:
    """tests/e2e/conftest.py as a module of its own (start_server/stop_server for tests that need their own
    server), loaded by path: two conftest.py files in this tree share the module name `conftest`."""
    import importlib.util
    import sys

    name = "blockvault_e2e_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --------------------------------------------------------------------------------------------- SDK clients


@dataclass
class Sdk:
    """The real oci SDK's clients, pointed at one region of the live server."""

    server: Server
    region: str = AD_REGION
    config: dict[str, Any] = field(init=False)
    bs: oci.core.BlockstorageClient = field(init=False)
    kv: oci.key_management.KmsVaultClient = field(init=False)
    identity: oci.identity.IdentityClient = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.server.sdk_config()
        endpoint = self.server.endpoint(self.region)
        self.bs = oci.core.BlockstorageClient(self.config, service_endpoint=endpoint)
        self.kv = oci.key_management.KmsVaultClient(self.config, service_endpoint=endpoint)
        self.identity = oci.identity.IdentityClient(self.config, service_endpoint=endpoint)

    def mgmt(self, vault: Any) -> oci.key_management.KmsManagementClient:
        return oci.key_management.KmsManagementClient(self.config, service_endpoint=vault.management_endpoint)

    def crypto(self, vault: Any) -> oci.key_management.KmsCryptoClient:
        return oci.key_management.KmsCryptoClient(self.config, service_endpoint=vault.crypto_endpoint)

    def ad(self, n: int = 1) -> str:
        return self.server.ad(n, self.region)

    # --- identity / vault / keys

    def new_compartment(self, name: str) -> str:
        details = oci.identity.models.CreateCompartmentDetails(
            compartment_id=self.server.tenancy, name=f"{name}-{uuid.uuid4().hex[:8]}", description=name
        )
        return str(self.identity.create_compartment(details).data.id)

    def new_vault(self, compartment_id: str, name: str = "vault") -> Any:
        details = oci.key_management.models.CreateVaultDetails(
            compartment_id=compartment_id, display_name=name, vault_type="DEFAULT"
        )
        vault = self.kv.create_vault(details).data
        return wait_for(
            lambda: self.kv.get_vault(vault.id).data,
            lambda v: v.lifecycle_state == "ACTIVE",
            what=f"vault {vault.id} ACTIVE",
        )

    def new_key(
        self, vault: Any, compartment_id: str, name: str = "key", algorithm: str = "AES", length: int = 32
    ) -> Any:
        mgmt = self.mgmt(vault)
        details = oci.key_management.models.CreateKeyDetails(
            compartment_id=compartment_id,
            display_name=name,
            key_shape=oci.key_management.models.KeyShape(algorithm=algorithm, length=length),
        )
        key = mgmt.create_key(details).data
        return wait_for(
            lambda: mgmt.get_key(key.id).data, lambda k: k.lifecycle_state == "ENABLED", what=f"key {key.id} ENABLED"
        )

    def key_state(self, vault: Any, key_id: str) -> str:
        return str(self.mgmt(vault).get_key(key_id).data.lifecycle_state)

    def disable_key(self, vault: Any, key_id: str) -> None:
        mgmt = self.mgmt(vault)
        mgmt.disable_key(key_id)
        wait_for(
            lambda: mgmt.get_key(key_id).data, lambda k: k.lifecycle_state == "DISABLED", what=f"key {key_id} DISABLED"
        )

    def enable_key(self, vault: Any, key_id: str) -> None:
        mgmt = self.mgmt(vault)
        mgmt.enable_key(key_id)
        wait_for(
            lambda: mgmt.get_key(key_id).data, lambda k: k.lifecycle_state == "ENABLED", what=f"key {key_id} ENABLED"
        )

    # --- volumes and backups

    def create_volume(
        self,
        compartment_id: str,
        *,
        name: str = "vol",
        size_gb: int | None = 50,
        kms_key_id: str | None = None,
        source: Any = None,
        ad: str | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> Any:
        details = oci.core.models.CreateVolumeDetails(
            compartment_id=compartment_id,
            availability_domain=ad if ad is not None else self.ad(1),
            display_name=name,
            size_in_gbs=size_gb,
            kms_key_id=kms_key_id,
            source_details=source,
        )
        volume = self.bs.create_volume(details, **kwargs).data
        return self.wait_volume(volume.id) if wait else volume

    def clone(
        self,
        compartment_id: str,
        source_id: str,
        *,
        kms_key_id: str | None = None,
        name: str = "clone",
        wait: bool = True,
    ) -> Any:
        src = oci.core.models.VolumeSourceFromVolumeDetails(id=source_id)
        return self.create_volume(compartment_id, name=name, kms_key_id=kms_key_id, source=src, size_gb=None, wait=wait)

    def restore(
        self,
        compartment_id: str,
        backup_id: str,
        *,
        kms_key_id: str | None = None,
        size_gb: int | None = None,
        name: str = "restored",
        wait: bool = True,
    ) -> Any:
        src = oci.core.models.VolumeSourceFromVolumeBackupDetails(id=backup_id)
        return self.create_volume(
            compartment_id, name=name, kms_key_id=kms_key_id, source=src, size_gb=size_gb, wait=wait
        )

    def wait_volume(self, volume_id: str, state: str = "AVAILABLE", timeout: float = 120) -> Any:
        return wait_for(
            lambda: self.bs.get_volume(volume_id).data,
            lambda v: v.lifecycle_state in (state, "FAULTY"),
            timeout=timeout,
            what=f"volume {volume_id} {state}",
        )

    def wait_hydrated(self, volume_id: str, timeout: float = 120) -> Any:
        return wait_for(
            lambda: self.bs.get_volume(volume_id).data,
            lambda v: bool(v.is_hydrated) or v.lifecycle_state == "FAULTY",
            timeout=timeout,
            what=f"volume {volume_id} hydrated",
        )

    def backup(self, volume_id: str, type_: str = "FULL", *, name: str = "backup", wait: bool = True) -> Any:
        details = oci.core.models.CreateVolumeBackupDetails(volume_id=volume_id, type=type_, display_name=name)
        backup = self.bs.create_volume_backup(details).data
        return self.wait_backup(backup.id) if wait else backup

    def wait_backup(self, backup_id: str, state: str = "AVAILABLE", timeout: float = 120) -> Any:
        return wait_for(
            lambda: self.bs.get_volume_backup(backup_id).data,
            lambda b: b.lifecycle_state in (state, "FAULTY"),
            timeout=timeout,
            what=f"backup {backup_id} {state}",
        )

    def delete_volume(self, volume_id: str) -> None:
        self.bs.delete_volume(volume_id)
        wait_gone(lambda: self.bs.get_volume(volume_id).data, "TERMINATED")

    def volume_ids(self, compartment_id: str) -> set[str]:
        items = oci.pagination.list_call_get_all_results(self.bs.list_volumes, compartment_id=compartment_id).data
        return {v.id for v in items}

    def backup_ids(self, compartment_id: str) -> set[str]:
        items = oci.pagination.list_call_get_all_results(
            self.bs.list_volume_backups, compartment_id=compartment_id
        ).data
        return {b.id for b in items}


# ---------------------------------------------------------------------------------------------- waiting


def wait_for(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float = 120,
    what: str = "condition",
    interval: float = 0.2,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value}")
        time.sleep(interval)
        interval = min(interval * 1.5, 2.0)


def wait_gone(fetch: Callable[[], Any], state: str = "TERMINATED", timeout: float = 120) -> None:
    """A deleted resource ends TERMINATED, or 404 NotAuthorizedOrNotFound (both count as gone, oci-wire §0.7)."""

    def get() -> Any:
        try:
            return fetch()
        except oci.exceptions.ServiceError as exc:
            if exc.status == 404:
                return None
            raise

    wait_for(get, lambda r: r is None or r.lifecycle_state == state, timeout=timeout, what=f"resource {state}")


def service_error(call: Callable[[], Any]) -> oci.exceptions.ServiceError:
    """Run an SDK call that must fail; return the ServiceError."""
    with pytest.raises(oci.exceptions.ServiceError) as info:
        call()
    return info.value


def expect_error(call: Callable[[], Any], status: int, code: str, *mentions: str) -> oci.exceptions.ServiceError:
    err = service_error(call)
    assert (err.status, err.code) == (status, code), f"expected {status} {code}, got {err.status} {err.code}: {err}"
    for text in mentions:
        assert text in (err.message or ""), f"{text!r} not in error message {err.message!r}"
    return err


def expect_key_unusable(call: Callable[[], Any], key_id: str, state: str) -> oci.exceptions.ServiceError:
    """D1: 409 Conflict whose message names the key OCID and its state."""
    return expect_error(call, 409, "Conflict", key_id, state)


# -------------------------------------------------------------------------------------- raw signed requests


def signer(server: Server) -> oci.signer.Signer:
    cfg = server.sdk_config()
    return oci.signer.Signer(
        tenancy=cfg["tenancy"],
        user=cfg["user"],
        fingerprint=cfg["fingerprint"],
        private_key_file_location=cfg["key_file"],
        pass_phrase=cfg.get("pass_phrase"),
    )


def raw(
    server: Server,
    method: str,
    path: str,
    *,
    region: str = AD_REGION,
    base: str | None = None,
    data: bytes | str | None = None,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    auth: Any = True,
    timeout: float = 120,
) -> requests.Response:
    """A request to `<region endpoint><path>` (or `<base><path>`), signed with the admin's API key unless
    auth is False (unsigned) or another requests auth."""
    url = (base or server.endpoint(region)).rstrip("/") + path
    hdrs = {"accept": "application/json", "content-type": "application/json", **(headers or {})}
    if json_body is not None:
        data = json.dumps(json_body)
    if auth is True:
        auth = signer(server)
    elif auth is False:
        auth = None
    return requests.request(method, url, data=data, params=params, headers=hdrs, auth=auth, timeout=timeout)


def error_of(resp: requests.Response) -> tuple[int, str | None]:
    try:
        body = resp.json()
    except ValueError:
        return resp.status_code, None
    return resp.status_code, body.get("code") if isinstance(body, dict) else None


def write(server: Server, volume_id: str, offset: int, data: bytes, *, region: str = AD_REGION) -> None:
    for start in range(0, len(data), CHUNK):
        piece = data[start : start + CHUNK]
        resp = raw(
            server,
            "PUT",
            f"/20160918/volumes/{volume_id}/data",
            region=region,
            data=piece,
            params={"offset": offset + start},
            headers={"content-type": "application/octet-stream"},
        )
        assert resp.status_code == 200, f"write {volume_id}@{offset + start}: {resp.status_code} {resp.text}"
        assert resp.json()["bytesWritten"] == len(piece)


def write_response(
    server: Server, volume_id: str, offset: int, data: bytes, *, region: str = AD_REGION
) -> requests.Response:
    return raw(
        server,
        "PUT",
        f"/20160918/volumes/{volume_id}/data",
        region=region,
        data=data,
        params={"offset": offset},
        headers={"content-type": "application/octet-stream"},
    )


def read_response(
    server: Server, volume_id: str, offset: int, length: int, *, region: str = AD_REGION
) -> requests.Response:
    return raw(
        server,
        "GET",
        f"/20160918/volumes/{volume_id}/data",
        region=region,
        params={"offset": offset, "length": length},
        headers={"accept": "application/octet-stream"},
    )


def read(server: Server, volume_id: str, offset: int, length: int, *, region: str = AD_REGION) -> bytes:
    out = bytearray()
    for start in range(offset, offset + length, CHUNK):
        n = min(CHUNK, offset + length - start)
        resp = read_response(server, volume_id, start, n, region=region)
        assert resp.status_code == 200, f"read {volume_id}@{start}+{n}: {resp.status_code} {resp.text}"
        assert len(resp.content) == n, f"read {volume_id}@{start}+{n} returned {len(resp.content)} bytes"
        out += resp.content
    return bytes(out)


def assert_error_response(resp: requests.Response, status: int, code: str, *mentions: str) -> None:
    got = error_of(resp)
    assert got == (status, code), f"expected {status} {code}, got {got}: {resp.text[:500]}"
    for text in mentions:
        assert text in resp.text, f"{text!r} not in {resp.text[:500]!r}"


# ------------------------------------------------------------------------------------------- admin clock


def server_now(server: Server) -> datetime:
    resp = raw(server, "GET", "/blockvault/admin/clock")
    assert resp.status_code == 200, resp.text
    return datetime.fromisoformat(resp.json()["now"].replace("Z", "+00:00"))


def advance_clock(server: Server, seconds: int) -> dict[str, Any]:
    resp = raw(server, "POST", "/blockvault/admin/clock/advance", json_body={"seconds": seconds})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def days_ahead(server: Server, days: float) -> datetime:
    """A time `days` ahead of the server's (possibly advanced) clock."""
    return server_now(server) + timedelta(days=days)


# ------------------------------------------------------------------------------------------- data model


def payload(n: int, seed: int | str) -> bytes:
    """Deterministic incompressible bytes."""
    return random.Random(seed).randbytes(n)


class Image:
    """What a volume must contain: zeros, except for the writes recorded here (last write wins)."""

    def __init__(self, writes: Iterable[tuple[int, bytes]] = ()) -> None:
        self.writes: list[tuple[int, bytes]] = list(writes)

    def copy(self) -> Image:
        return Image(self.writes)

    def record(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, bytes(data)))

    def expected(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        end = offset + length
        for o, d in self.writes:
            lo, hi = max(o, offset), min(o + len(d), end)
            if lo < hi:
                buf[lo - offset : hi - offset] = d[lo - o : hi - o]
        return bytes(buf)

    def extents(self) -> list[tuple[int, int]]:
        spans = sorted((o, o + len(d)) for o, d in self.writes if d)
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged


def put(server: Server, volume_id: str, image: Image, offset: int, data: bytes, *, region: str = AD_REGION) -> None:
    """Write to the volume and to its model."""
    write(server, volume_id, offset, data, region=region)
    image.record(offset, data)


def verify(server: Server, volume_id: str, image: Image, *, region: str = AD_REGION, size_gb: int = 50) -> None:
    """Byte-for-byte: every written extent (with 4 KiB of margin on each side) and a never-written probe."""
    size = size_gb * GIB
    for lo, hi in image.extents():
        lo, hi = max(0, lo - 4 * KIB), min(size, hi + 4 * KIB)
        got = read(server, volume_id, lo, hi - lo, region=region)
        want = image.expected(lo, hi - lo)
        if got != want:
            first = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
            raise AssertionError(f"volume {volume_id}: bytes differ from offset {lo + first} (extent {lo}..{hi})")
    probe = size - 64 * KIB
    if not any(lo < probe + 64 * KIB and probe < hi for lo, hi in image.extents()):
        assert read(server, volume_id, probe, 64 * KIB, region=region) == bytes(64 * KIB), "unwritten area not zero"


def seed_image(server: Server, volume_id: str, tag: str, *, region: str = AD_REGION) -> Image:
    """A few small writes at aligned and unaligned offsets (about 2.3 MiB in all)."""
    image = Image()
    for n, (offset, length) in enumerate(
        [(0, MIB), (5 * MIB + 123, 300 * KIB + 7), (3 * GIB + 4095, MIB + 1), (49 * GIB + 17, 4 * KIB)]
    ):
        put(server, volume_id, image, offset, payload(length, f"{tag}/{n}"), region=region)
    return image


def tmpfile(directory: os.PathLike[str] | str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


# --------------------------------------------------------------------------------------------- two regions


@dataclass(frozen=True)
class KeysInTwoRegions:
    """A fresh compartment with a vault and an AES key in ashburn (the source) and in phoenix (the destination)."""

    iad: Sdk
    phx: Sdk
    compartment: str
    iad_vault: Any
    iad_key: Any
    phx_vault: Any
    phx_key: Any


def keys_in_two_regions(server: Server, compartment_name: str) -> KeysInTwoRegions:
    iad, phx = Sdk(server, "us-ashburn-1"), Sdk(server, "us-phoenix-1")
    compartment = iad.new_compartment(compartment_name)
    iad_vault = iad.new_vault(compartment, "iad-vault")
    iad_key = iad.new_key(iad_vault, compartment, "iad-key")
    phx_vault = phx.new_vault(compartment, "phx-vault")
    phx_key = phx.new_key(phx_vault, compartment, "phx-key")
    return KeysInTwoRegions(iad, phx, compartment, iad_vault, iad_key, phx_vault, phx_key)


# --------------------------------------------------------------------------------------------- backup policies


def schedule(period: str, retention: int, **extra: Any) -> dict[str, Any]:
    """A VolumeBackupSchedule (INCREMENTAL, UTC) for `--schedules`."""
    return {"backupType": "INCREMENTAL", "period": period, "retentionSeconds": retention, "timeZone": "UTC", **extra}


def create_policy(
    server: Server, compartment: str, name: str, schedules: list[dict[str, Any]], *more: str, region: str = AD_REGION
) -> Any:
    """`oci bv volume-backup-policy create` (with `more` flags); the new policy."""
    args = ["-c", compartment, "--display-name", name, "--schedules", json.dumps(schedules), *more]
    result = server.oci("bv", "volume-backup-policy", "create", *args, endpoint=server.endpoint(region))
    return result.json["data"]
