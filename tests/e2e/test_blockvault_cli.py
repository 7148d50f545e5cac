"""Flow 9: blockvault's own CLI (`blockvault ...`) end to end against a live `blockvault serve`.

Everything here goes through our CLI only (``server.bv``): Vault and keys, volumes and their data, backups, the
spellings printed on OCI's Block Volume keys page (which the real CLI rejects), error output and exit codes,
regions, and the admin commands. The one exception is the data-at-rest check, which reads the server's data
directory directly to prove that no plaintext is stored there.

Volumes are 50 GB and sparse; only a few MiB are ever written, so the module stays fast.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import CliResult, Server

pytestmark = pytest.mark.e2e

MIB = 1 << 20
ASHBURN = "us-ashburn-1"
PHOENIX = "us-phoenix-1"
WAIT = ("--wait-interval-seconds", "1", "--max-wait-seconds", "120")

# Exit codes documented in blockvault.cli.exitcodes.
EXIT_INVALID = 10
EXIT_NOT_FOUND = 11
EXIT_CONFLICT = 12

_CAMEL = re.compile(r"[a-z0-9][A-Z]")
# Maps keyed by the user: the real CLI leaves their keys alone.
_OPAQUE = {"freeform-tags", "defined-tags", "system-tags", "associated-data", "logging-context"}


# --------------------------------------------------------------------------------------------- helpers


def pattern(size: int, prefix: bytes = b"BLOCKVAULT-SECRET-PATTERN-") -> bytes:
    """``prefix + 8-digit counter``, repeated to ``size`` bytes: every window of it is distinctive."""
    unit = len(prefix) + 8
    count = size // unit + 1
    return b"".join(prefix + b"%08d" % i for i in range(count))[:size]


def assert_kebab(value: Any, where: str = "data") -> None:
    """No camelCase key anywhere in a CLI document (outside user-keyed maps), like the real CLI's output."""
    if isinstance(value, dict):
        for key, inner in value.items():
            assert not _CAMEL.search(key), f"camelCase key {key!r} at {where}"
            if key not in _OPAQUE:
                assert_kebab(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            assert_kebab(inner, f"{where}[{i}]")


def data_of(result: CliResult) -> Any:
    doc = result.json
    assert isinstance(doc, dict), f"not an OCI-style document: {result.out!r}"
    assert "data" in doc, f"not an OCI-style document: {result.out!r}"
    assert_kebab(doc["data"])
    return doc["data"]


def assert_api_error(result: CliResult, status: int, code: str, exit_code: int) -> dict[str, Any]:
    assert result.rc == exit_code, f"exit {result.rc}, expected {exit_code}\nstderr: {result.err}\nstdout: {result.out}"
    err = result.error
    assert err.get("status") == status, err
    assert err.get("code") == code, err
    assert err.get("message"), err
    assert "opc-request-id" in err, err
    return err


def wait_volume(server: Server, volume_id: str, state: str = "AVAILABLE", *region: str) -> dict[str, Any]:
    """Poll `blockvault bv volume get` (for commands that are run verbatim, without --wait-for-state)."""
    deadline = time.monotonic() + 120
    while True:
        vol = data_of(server.bv(*region, "bv", "volume", "get", "--volume-id", volume_id))
        if vol["lifecycle-state"] == state:
            return dict(vol)
        assert vol["lifecycle-state"] not in ("FAULTY", "TERMINATED"), vol
        assert time.monotonic() < deadline, f"volume {volume_id} stuck in {vol['lifecycle-state']}"
        time.sleep(0.2)


def read_volume(server: Server, tmp: Path, volume_id: str, offset: int, length: int, *region: str) -> bytes:
    out = tmp / f"read-{volume_id[-12:]}-{offset}-{length}-{time.monotonic_ns()}.img"
    res = server.bv(
        *region, "volume", "read", volume_id, "--to-file", str(out), "--offset", str(offset), "--length", str(length)
    )
    summary = data_of(res)
    assert summary["bytes-read"] == length, summary
    data = out.read_bytes()
    out.unlink()
    return data


def write_volume(server: Server, tmp: Path, volume_id: str, offset: int, data: bytes, *region: str) -> None:
    src = tmp / f"write-{volume_id[-12:]}-{offset}-{time.monotonic_ns()}.img"
    src.write_bytes(data)
    res = server.bv(*region, "volume", "write", volume_id, "--from-file", str(src), "--offset", str(offset))
    summary = data_of(res)
    assert summary["bytes-written"] == len(data), summary
    assert summary["offset"] == offset, summary
    src.unlink()


@dataclass
class Env:
    server: Server
    tenancy: str
    ad: str
    vault_id: str
    key_id: str  # the main key: stays ENABLED for the whole module
    key2_id: str  # a second key for key changes


def create_key(server: Server, vault_id: str, name: str) -> dict[str, Any]:
    res = server.bv(
        "kms", "management", "key", "create",
        "--compartment-id", server.tenancy,
        "--display-name", name,
        "--key-shape", '{"algorithm":"AES","length":32}',
        "--vault-id", vault_id,
        "--wait-for-state", "ENABLED", *WAIT,
    )  # fmt: skip
    key = data_of(res)
    assert key["lifecycle-state"] == "ENABLED", key
    return dict(key)


def create_volume(env: Env, name: str, *extra: str, kms_key: str | None = None) -> dict[str, Any]:
    args = [
        "bv", "volume", "create",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--display-name", name,
        "--size-in-gbs", "50",
    ]  # fmt: skip
    if kms_key:
        args += ["--kms-key-id", kms_key]
    res = env.server.bv(*args, *extra, "--wait-for-state", "AVAILABLE", *WAIT)
    vol = data_of(res)
    assert vol["lifecycle-state"] == "AVAILABLE", vol
    return dict(vol)


def create_backup(env: Env, volume_id: str, name: str) -> dict[str, Any]:
    res = env.server.bv(
        "bv", "backup", "create", "--volume-id", volume_id, "--type", "FULL", "--display-name", name,
        "--wait-for-state", "AVAILABLE", *WAIT,
    )  # fmt: skip
    backup = data_of(res)
    assert backup["lifecycle-state"] == "AVAILABLE", backup
    assert backup["volume-id"] == volume_id, backup
    return dict(backup)


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(server: Server) -> Env:
    res = server.bv(
        "kms", "management", "vault", "create",
        "--compartment-id", server.tenancy,
        "--display-name", "v",
        "--wait-for-state", "ACTIVE", *WAIT,
    )  # fmt: skip
    vault = data_of(res)
    assert vault["lifecycle-state"] == "ACTIVE", vault
    assert vault["id"].startswith("ocid1.vault.oc1.iad."), vault
    assert vault["management-endpoint"], vault
    assert vault["crypto-endpoint"], vault
    key = create_key(server, vault["id"], "flow9-main")
    key2 = create_key(server, vault["id"], "flow9-second")
    return Env(server, server.tenancy, server.ad(1), vault["id"], key["id"], key2["id"])


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """Scratch space for the files our CLI reads and writes."""
    return tmp_path


# --------------------------------------------------------------------------------------------- 1. Vault


def test_vault_get_and_list_are_oci_style(env: Env) -> None:
    server = env.server
    vault = data_of(server.bv("kms", "management", "vault", "get", "--vault-id", env.vault_id))
    assert vault["id"] == env.vault_id
    assert vault["display-name"] == "v"
    assert vault["compartment-id"] == env.tenancy
    assert vault["lifecycle-state"] == "ACTIVE"
    res = server.bv("kms", "management", "vault", "get", "--vault-id", env.vault_id)
    assert res.json.get("etag"), "the real CLI prints the etag beside data"
    listed = data_of(server.bv("kms", "management", "vault", "list", "--compartment-id", env.tenancy))
    assert env.vault_id in {v["id"] for v in listed}


def test_key_get_list_disable_enable(env: Env) -> None:
    server = env.server
    # A separate key, so disabling it cannot disturb the other tests.
    key_id = create_key(server, env.vault_id, "flow9-toggle")["id"]

    # get: the vault is found from the key alone (no --vault-id, no --endpoint)
    key = data_of(server.bv("kms", "management", "key", "get", "--key-id", key_id))
    assert key["id"] == key_id
    assert key["vault-id"] == env.vault_id
    assert key["key-shape"] == {"algorithm": "AES", "length": 32}
    assert key["lifecycle-state"] == "ENABLED"
    assert key["current-key-version"].startswith("ocid1.keyversion.")
    # get with --vault-id gives the same key
    again = data_of(server.bv("kms", "management", "key", "get", "--key-id", key_id, "--vault-id", env.vault_id))
    assert again["id"] == key_id

    listed = data_of(
        server.bv(
            "kms", "management", "key", "list", "--compartment-id", env.tenancy, "--vault-id", env.vault_id, "--all"
        )
    )
    ids = {k["id"] for k in listed}
    assert {key_id, env.key_id, env.key2_id} <= ids

    disabled = data_of(
        server.bv("kms", "management", "key", "disable", "--key-id", key_id, "--wait-for-state", "DISABLED", *WAIT)
    )
    assert disabled["id"] == key_id
    assert disabled["lifecycle-state"] == "DISABLED"
    got = data_of(server.bv("kms", "management", "key", "get", "--key-id", key_id))
    assert got["lifecycle-state"] == "DISABLED"

    enabled = data_of(
        server.bv("kms", "management", "key", "enable", "--key-id", key_id, "--wait-for-state", "ENABLED", *WAIT)
    )
    assert enabled["lifecycle-state"] == "ENABLED"


def test_crypto_encrypt_decrypt_round_trip(env: Env) -> None:
    server = env.server
    plaintext = os.urandom(200) + b"flow nine"
    b64 = base64.b64encode(plaintext).decode()
    enc = data_of(server.bv("kms", "crypto", "encrypt", "--key-id", env.key_id, "--plaintext", b64))
    assert enc["key-id"] == env.key_id
    assert enc["key-version-id"].startswith("ocid1.keyversion.")
    ciphertext = enc["ciphertext"]
    assert ciphertext
    assert ciphertext != b64
    assert plaintext not in base64.b64decode(ciphertext)

    dec = data_of(server.bv("kms", "crypto", "decrypt", "--key-id", env.key_id, "--ciphertext", ciphertext))
    assert base64.b64decode(dec["plaintext"]) == plaintext
    assert dec["key-id"] == env.key_id

    # with associated data: the same AAD decrypts, a different one is refused
    aad = '{"volume": "flow9"}'
    enc2 = data_of(
        server.bv("kms", "crypto", "encrypt", "--key-id", env.key_id, "--plaintext", b64, "--associated-data", aad)
    )
    dec_args = ("--key-id", env.key_id, "--ciphertext", enc2["ciphertext"], "--associated-data", aad)
    dec2 = data_of(server.bv("kms", "crypto", "decrypt", *dec_args))
    assert base64.b64decode(dec2["plaintext"]) == plaintext
    bad = server.bv(
        "kms", "crypto", "decrypt", "--key-id", env.key_id, "--ciphertext", enc2["ciphertext"],
        "--associated-data", '{"volume": "other"}',
        check=False,
    )  # fmt: skip
    assert bad.rc != 0, bad.out
    assert "plaintext" not in bad.out


# --------------------------------------------------------------------------------------------- 2. Volume data


def test_volume_create_write_read_unaligned(env: Env, tmp: Path) -> None:
    server = env.server
    vol = create_volume(env, "flow9-data", kms_key=env.key_id)
    vid = vol["id"]
    assert vid.startswith("ocid1.volume.oc1.iad.")
    assert vol["size-in-gbs"] == 50
    assert vol["kms-key-id"] == env.key_id
    assert vol["availability-domain"] == env.ad
    assert vol["compartment-id"] == env.tenancy

    offset = 3 * MIB + 12345  # not sector or chunk aligned
    data = pattern(5 * MIB + 777, b"flow9-unaligned-")
    write_volume(server, tmp, vid, offset, data)

    assert read_volume(server, tmp, vid, offset, len(data)) == data
    # a range straddling both ends of the write: zeros, the data, zeros
    before, after = 4096 + 7, 8192 + 3
    around = read_volume(server, tmp, vid, offset - before, before + len(data) + after)
    assert around == b"\0" * before + data + b"\0" * after
    # a sub-range starting in the middle of a chunk
    assert read_volume(server, tmp, vid, offset + 1_000_001, 333_333) == data[1_000_001 : 1_000_001 + 333_333]
    # never written: zeros, at the start, far away and at the very end of the volume
    assert read_volume(server, tmp, vid, 0, 1 * MIB) == b"\0" * MIB
    assert read_volume(server, tmp, vid, 20 * (1 << 30) + 5, 65536) == b"\0" * 65536
    end = 50 * (1 << 30)
    assert read_volume(server, tmp, vid, end - 4096, 4096) == b"\0" * 4096

    # the volume is listed, with kebab-case fields
    listed = data_of(server.bv("bv", "volume", "list", "--compartment-id", env.tenancy, "--all"))
    assert vid in {v["id"] for v in listed}


def test_volume_read_past_end_is_refused(env: Env, tmp: Path) -> None:
    vol = create_volume(env, "flow9-bounds")
    end = 50 * (1 << 30)
    res = env.server.bv(
        "volume", "read", vol["id"], "--to-file", str(tmp / "x"), "--offset", str(end - 10), "--length", "20",
        check=False,
    )  # fmt: skip
    assert res.rc == EXIT_INVALID, (res.rc, res.err)


# --------------------------------------------------------------------------------------------- 3. Data at rest


SECRET_PREFIX = b"BLOCKVAULT-SECRET-PATTERN-"


def _first_window(blob: bytes, secret: bytes, needles: list[bytes], width: int = 32) -> int | None:
    """Offset in ``blob`` of the first ``width``-byte window of ``secret`` found, or None.

    Every 32-byte window of the pattern (34-byte records: 26-byte prefix + 8 digits) contains at least 12
    contiguous bytes of the prefix, so occurrences of the prefix's 12-byte pieces find every candidate; each
    candidate is then checked exactly.
    """
    for needle in needles:
        start = 0
        while (pos := blob.find(needle, start)) >= 0:
            start = pos + 1
            for s in range(max(0, pos - width), min(len(blob) - width, pos + len(needle)) + 1):
                if blob[s : s + width] in secret:
                    return s
    return None


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the allocated parts of a (possibly sparse: volumes are 50 GB) file."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def scan_file(path: Path, secret: bytes, needles: list[bytes]) -> tuple[int, int | None]:
    """(bytes scanned, offset of the first window of ``secret`` or None), reading only allocated extents."""
    piece, overlap = 8 * MIB, 64
    scanned = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for start, end in _data_extents(f.fileno(), size):
            pos = start
            while pos < end:
                f.seek(pos)
                blob = f.read(min(piece + overlap, end - pos))
                if not blob:
                    break
                hit = _first_window(blob, secret, needles)
                if hit is not None:
                    return scanned + len(blob), pos + hit
                scanned += min(piece, len(blob))
                pos += piece
    return scanned, None


def test_no_plaintext_at_rest(env: Env, tmp: Path) -> None:
    server = env.server
    secret = pattern(4 * MIB, SECRET_PREFIX)
    vol = create_volume(env, "flow9-at-rest", kms_key=env.key_id)
    write_volume(server, tmp, vol["id"], 1 * MIB + 512, secret)
    assert read_volume(server, tmp, vol["id"], 1 * MIB + 512, len(secret)) == secret
    create_backup(env, vol["id"], "flow9-at-rest-backup")

    # a provider-key volume must be protected at rest too
    plain = create_volume(env, "flow9-at-rest-provider")
    write_volume(server, tmp, plain["id"], 0, secret)
    create_backup(env, plain["id"], "flow9-at-rest-provider-backup")

    needles = [SECRET_PREFIX[i : i + 12] for i in range(len(SECRET_PREFIX) - 11)]
    scanned = 0
    total = 0
    leaks: list[str] = []
    for root, _dirs, files in os.walk(server.data_dir):
        for name in files:
            path = Path(root) / name
            try:
                nbytes, hit = scan_file(path, secret, needles)
            except (FileNotFoundError, IsADirectoryError):
                continue  # removed while walking (temporary files)
            scanned += 1
            total += nbytes
            if hit is not None:
                leaks.append(f"{path.relative_to(server.data_dir)}: a 32-byte window of the pattern at offset {hit}")
    assert scanned > 0
    # the two volumes' 8 MiB are stored somewhere under the data dir (backups may be compressed before encryption)
    assert total >= 2 * len(secret), f"only {total} bytes under {server.data_dir}: where is the data?"
    assert not leaks, "plaintext found at rest:\n" + "\n".join(leaks)


# --------------------------------------------------------------------------------------------- 4. Doc-page forms


@pytest.fixture(scope="module")
def source(env: Env, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A volume with data A, a FULL backup of A, then data B written over part of it."""
    tmp = tmp_path_factory.mktemp("source")
    server = env.server
    vol = create_volume(env, "flow9-source", kms_key=env.key_id)
    offset = 2 * MIB + 4097
    a = pattern(3 * MIB, b"flow9-point-A-")
    write_volume(server, tmp, vol["id"], offset, a)
    backup = create_backup(env, vol["id"], "flow9-source-backup")
    b = pattern(1 * MIB + 3, b"flow9-after-B-")
    write_volume(server, tmp, vol["id"], offset + MIB, b)
    current = a[:MIB] + b + a[MIB + len(b) :]
    return {"volume": vol, "backup": backup, "offset": offset, "at_backup": a, "current": current}


def test_doc_form_restore_from_backup(env: Env, source: dict[str, Any], tmp: Path) -> None:
    server = env.server
    res = server.bv(
        "bv", "create",
        "--display-name", "n",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--kms-key-id", env.key2_id,
        f"--volume-backup-id={source['backup']['id']}",
    )  # fmt: skip
    created = data_of(res)
    assert created["display-name"] == "n"
    assert created["source-details"] == {"type": "volumeBackup", "id": source["backup"]["id"]}
    vol = wait_volume(server, created["id"])
    assert vol["kms-key-id"] == env.key2_id
    assert vol["size-in-gbs"] == 50
    off, a = source["offset"], source["at_backup"]
    # byte for byte the backup point, not the source's later writes; zeros around it
    assert read_volume(server, tmp, vol["id"], off - 100, len(a) + 200) == b"\0" * 100 + a + b"\0" * 100


def test_doc_form_clone(env: Env, source: dict[str, Any], tmp: Path) -> None:
    server = env.server
    res = server.bv(
        "bv", "create",
        "--display-name", "n",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--kms-key-id", env.key2_id,
        f"--source-volume-id={source['volume']['id']}",
    )  # fmt: skip
    created = data_of(res)
    assert created["source-details"] == {"type": "volume", "id": source["volume"]["id"]}
    vol = wait_volume(server, created["id"])
    assert vol["kms-key-id"] == env.key2_id
    off, cur = source["offset"], source["current"]
    assert read_volume(server, tmp, vol["id"], off - 100, len(cur) + 200) == b"\0" * 100 + cur + b"\0" * 100


def test_doc_form_unknown_replica_is_not_found_and_creates_nothing(env: Env) -> None:
    """The keys page's activation form parses; an unknown replica is 404 NotAuthorizedOrNotFound and no volume
    appears."""
    before = {v["id"] for v in env.server.bv("bv", "volume", "list", "--compartment-id", env.tenancy).json["data"]}
    res = env.server.bv(
        "bv", "create",
        "--display-name", "n",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--kms-key-id", env.key_id,
        "--source-volume-replica-id=ocid1.blockvolumereplica.oc1.iad.aaaaaaaaflow9replica",
        check=False,
    )  # fmt: skip
    assert res.rc != 0, res.out
    assert not res.out.strip(), f"nothing should be created: {res.out}"
    assert res.error["code"] == "NotAuthorizedOrNotFound", res.err
    after = {v["id"] for v in env.server.bv("bv", "volume", "list", "--compartment-id", env.tenancy).json["data"]}
    assert after == before


def test_doc_form_volume_kms_key_update(env: Env, tmp: Path) -> None:
    server = env.server
    vol = create_volume(env, "flow9-rekey", kms_key=env.key_id)
    data = pattern(MIB + 5, b"flow9-rekey-")
    write_volume(server, tmp, vol["id"], 4099, data)

    res = server.bv("bv", "volume-kms-key", "update", f"--volume-id={vol['id']}", f"--kms-key-id={env.key2_id}")
    assert res.rc == 0
    shown = data_of(server.bv("bv", "volume-kms-key", "get", "--volume-id", vol["id"]))
    assert shown["kms-key-id"] == env.key2_id
    assert wait_volume(server, vol["id"])["kms-key-id"] == env.key2_id
    assert read_volume(server, tmp, vol["id"], 4099, len(data)) == data


def test_doc_form_backup_update_kms_key(env: Env, source: dict[str, Any], tmp: Path) -> None:
    server = env.server
    bid = source["backup"]["id"]

    res = server.bv("bv", "backup", "update", f"--backup-id={bid}", f"--kms-key-id={env.key2_id}")
    assert data_of(res)["id"] == bid
    got = data_of(server.bv("bv", "backup", "get", f"--backup-id={bid}"))
    assert got["kms-key-id"] == env.key2_id

    # pasted with the quotes kept: the literal '' means "back to the provider key"
    data_of(server.bv("bv", "backup", "update", f"--backup-id={bid}", "--kms-key-id=''"))
    got = data_of(server.bv("bv", "backup", "get", "--volume-backup-id", bid))
    assert "kms-key-id" in got, got
    assert got["kms-key-id"] is None, got

    # and what a shell makes of --kms-key-id='' (an empty value), after a key was set again
    data_of(server.bv("bv", "backup", "update", f"--backup-id={bid}", f"--kms-key-id={env.key_id}"))
    assert data_of(server.bv("bv", "backup", "get", f"--backup-id={bid}"))["kms-key-id"] == env.key_id
    data_of(server.bv("bv", "backup", "update", f"--backup-id={bid}", "--kms-key-id="))
    got = data_of(server.bv("bv", "backup", "get", f"--backup-id={bid}"))
    assert got["kms-key-id"] is None, got
    assert got["lifecycle-state"] == "AVAILABLE", got

    # the backup still restores, byte for byte
    created = data_of(server.bv("bv", "create", "--display-name", "n", f"--volume-backup-id={bid}"))
    vol = wait_volume(server, created["id"])
    assert vol["kms-key-id"] is None
    off, a = source["offset"], source["at_backup"]
    assert read_volume(server, tmp, vol["id"], off, len(a)) == a


# --------------------------------------------------------------------------------------------- 5. Errors


def test_unknown_volume_is_404_exit_11(env: Env, tmp: Path) -> None:
    bogus = "ocid1.volume.oc1.iad.aaaaaaaaflow9doesnotexistxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    server = env.server
    res = server.bv("bv", "volume", "get", "--volume-id", bogus, check=False)
    assert_api_error(res, 404, "NotAuthorizedOrNotFound", EXIT_NOT_FOUND)
    assert not res.out.strip()
    res = server.bv("volume", "read", bogus, "--to-file", str(tmp / "out"), "--length", "4096", check=False)
    assert_api_error(res, 404, "NotAuthorizedOrNotFound", EXIT_NOT_FOUND)
    src = tmp / "in"
    src.write_bytes(b"x" * 4096)
    res = server.bv("volume", "write", bogus, "--from-file", str(src), check=False)
    assert_api_error(res, 404, "NotAuthorizedOrNotFound", EXIT_NOT_FOUND)


def test_disabled_key_is_409_exit_12_on_data(env: Env, tmp: Path) -> None:
    server = env.server
    key_id = create_key(server, env.vault_id, "flow9-disable-me")["id"]
    vol = create_volume(env, "flow9-disabled-key", kms_key=key_id)
    data = pattern(MIB, b"flow9-disabled-")
    write_volume(server, tmp, vol["id"], 8191, data)
    assert read_volume(server, tmp, vol["id"], 8191, len(data)) == data

    server.bv("kms", "management", "key", "disable", "--key-id", key_id, "--wait-for-state", "DISABLED", *WAIT)
    try:
        out = tmp / "refused.img"
        res = server.bv(
            "volume", "read", vol["id"], "--to-file", str(out), "--offset", "8191", "--length", str(len(data)),
            check=False,
        )  # fmt: skip
        err = assert_api_error(res, 409, "Conflict", EXIT_CONFLICT)
        assert key_id in err["message"], f"the error should name the key: {err}"
        assert "DISABLED" in err["message"].upper(), f"the error should name the key's state: {err}"
        assert not out.exists() or data not in out.read_bytes()

        src = tmp / "w.img"
        src.write_bytes(b"y" * 4096)
        res = server.bv("volume", "write", vol["id"], "--from-file", str(src), check=False)
        assert_api_error(res, 409, "Conflict", EXIT_CONFLICT)

        # D1: lifecycleState stays what it was
        assert data_of(server.bv("bv", "volume", "get", "--volume-id", vol["id"]))["lifecycle-state"] == "AVAILABLE"
    finally:
        server.bv("kms", "management", "key", "enable", "--key-id", key_id, "--wait-for-state", "ENABLED", *WAIT)
    # re-enabled: nothing lost
    assert read_volume(server, tmp, vol["id"], 8191, len(data)) == data


@pytest.mark.parametrize("bad", ["not-an-ocid", "ocid1.key", "ocid1.volume.oc1.iad.aaaaaaaaflow9"])
def test_malformed_kms_key_id_is_400_exit_10(env: Env, bad: str) -> None:
    res = env.server.bv(
        "bv", "volume", "create",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--size-in-gbs", "50",
        "--kms-key-id", bad,
        check=False,
    )  # fmt: skip
    assert res.rc == EXIT_INVALID, (res.rc, res.err)
    err = res.error
    assert err["status"] == 400, err
    assert err["code"] in ("InvalidParameter", "CannotParseRequest"), err
    assert not res.out.strip()


def test_well_formed_but_absent_kms_key_is_related_resource_exit_11(env: Env) -> None:
    res = env.server.bv(
        "bv", "volume", "create",
        "--compartment-id", env.tenancy,
        "--availability-domain", env.ad,
        "--size-in-gbs", "50",
        "--kms-key-id", env.key_id[:-6] + "zzzzzz",
        check=False,
    )  # fmt: skip
    err = assert_api_error(res, 400, "RelatedResourceNotAuthorizedOrNotFound", EXIT_NOT_FOUND)
    assert "kmsKeyId" in err["message"], err


# --------------------------------------------------------------------------------------------- 6. Regions


def test_phoenix_volume_via_region_flag(env: Env, tmp: Path) -> None:
    server = env.server
    phx_ad = server.ad(1, PHOENIX)
    res = server.bv(
        "--region", PHOENIX,
        "bv", "volume", "create",
        "--compartment-id", env.tenancy,
        "--availability-domain", phx_ad,
        "--display-name", "flow9-phoenix",
        "--size-in-gbs", "50",
        "--wait-for-state", "AVAILABLE", *WAIT,
    )  # fmt: skip
    vol = data_of(res)
    vid = vol["id"]
    assert ".phx." in vid, vid
    assert vol["availability-domain"] == phx_ad

    data = pattern(2 * MIB + 1, b"flow9-phoenix-")
    write_volume(server, tmp, vid, 5000, data, "--region", PHOENIX)
    assert read_volume(server, tmp, vid, 5000, len(data), "--region", PHOENIX) == data
    # the global option also works after the command, like the oci CLI's
    got = data_of(server.bv("bv", "volume", "get", "--volume-id", vid, "--region", PHOENIX))
    assert got["id"] == vid

    phx = data_of(server.bv("--region", PHOENIX, "bv", "volume", "list", "--compartment-id", env.tenancy, "--all"))
    assert vid in {v["id"] for v in phx}
    assert all(".phx." in v["id"] for v in phx), [v["id"] for v in phx]
    iad = data_of(server.bv("bv", "volume", "list", "--compartment-id", env.tenancy, "--all"))
    assert vid not in {v["id"] for v in iad}
    assert all(".phx." not in v["id"] for v in iad)
    # and ashburn does not serve it
    res = server.bv("bv", "volume", "get", "--volume-id", vid, check=False)
    assert_api_error(res, 404, "NotAuthorizedOrNotFound", EXIT_NOT_FOUND)


# --------------------------------------------------------------------------------------------- 7. Admin


def test_clock_get(env: Env) -> None:
    res = env.server.bv("clock", "get")
    doc = res.json
    assert isinstance(doc, dict), res.out
    assert "now" in doc, doc
    assert "offsetSeconds" in doc, doc
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", doc["now"]), doc
    assert isinstance(doc["offsetSeconds"], int), doc
    assert doc["offsetSeconds"] >= 0, doc


def test_endpoints_lists_both_regions(env: Env) -> None:
    server = env.server
    view = data_of(server.bv("endpoints"))
    regions = {r["region"]: r for r in view["regions"]}
    assert set(regions) >= {ASHBURN, PHOENIX}, regions
    assert regions[ASHBURN]["endpoint"] == server.endpoint(ASHBURN)
    assert regions[PHOENIX]["endpoint"] == server.endpoint(PHOENIX)
    assert regions[ASHBURN]["is-default"] is True
    assert regions[ASHBURN]["availability-domains"][0] == server.ad(1, ASHBURN)
    assert regions[PHOENIX]["availability-domains"][0] == server.ad(1, PHOENIX)
    assert view["tenancy-id"] == server.tenancy
    sel = data_of(server.bv("--region", PHOENIX, "endpoints"))
    assert {r["region"]: r["is-selected"] for r in sel["regions"]}[PHOENIX] is True
