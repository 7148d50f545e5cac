"""SoftwareKeystore and its root key: file creation, environment value, seal/open, destroy, no plaintext at rest."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockvault.errors import DecryptionFailed, InvalidArgument, NotFound
from blockvault.vault.keystore.base import Keystore, MaterialDestroyed
from blockvault.vault.keystore.software import ROOT_KEY_SIZE, SoftwareKeystore, load_or_create_root_key

ROOT = bytes(range(100, 132))
HANDLE = "ocid1.keyversion.oc1.iad.prefix.aaaav1"


class CountingRandom:
    """Deterministic, distinct bytes for every call, remembering what it handed out."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"{len(self.calls)}:{len(out)}".encode()).digest()
        value = out[:n]
        self.calls.append(value)
        return value


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "keystore" / "keys.db"


@pytest.fixture
def store(store_path: Path) -> Iterator[SoftwareKeystore]:
    ks = SoftwareKeystore(store_path, ROOT)
    yield ks
    ks.close()


# --- root key ---------------------------------------------------------------------------------------------------


def test_root_key_file_is_created_0600_with_32_bytes(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "root.key"
    old = os.umask(0)  # the mode must come from the code, not from a friendly umask
    try:
        key = load_or_create_root_key(path)
    finally:
        os.umask(old)
    assert len(key) == ROOT_KEY_SIZE == 32
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_root_key_reopening_uses_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    first = load_or_create_root_key(path)
    assert load_or_create_root_key(path) == first
    assert path.read_bytes() == first


def test_root_key_two_fresh_files_differ(tmp_path: Path) -> None:
    assert load_or_create_root_key(tmp_path / "a.key") != load_or_create_root_key(tmp_path / "b.key")


def test_root_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    path.write_bytes(b"short")
    with pytest.raises(InvalidArgument):
        load_or_create_root_key(path)


def test_root_key_env_value_is_used_and_no_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    assert load_or_create_root_key(path, base64.b64encode(ROOT).decode()) == ROOT
    assert not path.exists()


def test_root_key_env_value_wins_over_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    load_or_create_root_key(path)
    assert load_or_create_root_key(path, base64.b64encode(ROOT).decode()) == ROOT


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        base64.b64encode(ROOT).decode()[:-4] + "@@@@",
        base64.b64encode(ROOT[:16]).decode(),
        base64.b64encode(ROOT + b"x").decode(),
    ],
    ids=["garbage", "bad-alphabet", "16-bytes", "33-bytes"],
)
def test_root_key_bad_env_value_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_or_create_root_key(tmp_path / "root.key", value)
    assert info.value.context["field"] == "BLOCKVAULT_ROOT_KEY"


# --- seal / open / destroy ----------------------------------------------------------------------------------------


def test_software_keystore_satisfies_the_port(store: SoftwareKeystore) -> None:
    port: Keystore = store
    assert port is store


def test_keystore_file_is_0600(store: SoftwareKeystore, store_path: Path) -> None:
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("length", [16, 24, 32])
def test_seal_open_round_trip(store: SoftwareKeystore, length: int) -> None:
    store.create(HANDLE, length)
    assert store.exists(HANDLE)
    blob = store.seal(HANDLE, b"plaintext", b"aad")
    assert b"plaintext" not in blob
    assert store.open(HANDLE, blob, b"aad") == b"plaintext"


def test_seal_uses_a_fresh_nonce(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    assert store.seal(HANDLE, b"p", b"a") != store.seal(HANDLE, b"p", b"a")


@pytest.mark.parametrize("aad", [b"", b"aad2", b"aa", b"aad\x00"])
def test_open_with_other_aad_fails(store: SoftwareKeystore, aad: bytes) -> None:
    store.create(HANDLE, 32)
    blob = store.seal(HANDLE, b"plaintext", b"aad")
    with pytest.raises(DecryptionFailed):
        store.open(HANDLE, blob, aad)


def test_open_under_another_handle_fails(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    store.create("other", 32)
    blob = store.seal(HANDLE, b"plaintext", b"aad")
    with pytest.raises(DecryptionFailed):
        store.open("other", blob, b"aad")


def test_open_of_a_short_blob_fails(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    with pytest.raises(DecryptionFailed):
        store.open(HANDLE, b"\x00" * 27, b"aad")


def test_material_survives_reopening_with_the_same_root(store_path: Path) -> None:
    first = SoftwareKeystore(store_path, ROOT)
    first.create(HANDLE, 32)
    blob = first.seal(HANDLE, b"plaintext", b"aad")
    first.close()
    second = SoftwareKeystore(store_path, ROOT)
    try:
        assert second.open(HANDLE, blob, b"aad") == b"plaintext"
    finally:
        second.close()


def test_another_root_key_cannot_use_the_material(store_path: Path) -> None:
    first = SoftwareKeystore(store_path, ROOT)
    first.create(HANDLE, 32)
    blob = first.seal(HANDLE, b"plaintext", b"aad")
    first.close()
    second = SoftwareKeystore(store_path, bytes(32))
    try:
        with pytest.raises(DecryptionFailed):
            second.open(HANDLE, blob, b"aad")
    finally:
        second.close()


def test_create_is_idempotent_for_the_same_length_only(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    blob = store.seal(HANDLE, b"plaintext", b"aad")
    store.create(HANDLE, 32)  # no new material
    assert store.open(HANDLE, blob, b"aad") == b"plaintext"
    with pytest.raises(InvalidArgument):
        store.create(HANDLE, 16)


@pytest.mark.parametrize("length", [0, 8, 20, 64])
def test_create_refuses_non_aes_lengths(store: SoftwareKeystore, length: int) -> None:
    with pytest.raises(InvalidArgument):
        store.create(HANDLE, length)
    assert not store.exists(HANDLE)


def test_destroy_makes_open_raise_material_destroyed_and_is_idempotent(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    blob = store.seal(HANDLE, b"plaintext", b"aad")
    assert store.open(HANDLE, blob, b"aad") == b"plaintext"  # the AEAD is now cached
    store.destroy(HANDLE)
    assert store.exists(HANDLE) is False
    with pytest.raises(MaterialDestroyed) as info:
        store.open(HANDLE, blob, b"aad")
    assert isinstance(info.value, NotFound)
    with pytest.raises(MaterialDestroyed):
        store.seal(HANDLE, b"x", b"aad")
    store.destroy(HANDLE)
    store.destroy("never-created")
    with pytest.raises(MaterialDestroyed):
        store.open(HANDLE, blob, b"aad")


def test_destroy_leaves_other_handles(store: SoftwareKeystore) -> None:
    store.create(HANDLE, 32)
    store.create("other", 32)
    blob = store.seal("other", b"plaintext", b"aad")
    store.destroy(HANDLE)
    assert store.open("other", blob, b"aad") == b"plaintext"


def test_open_of_an_unknown_handle_is_material_destroyed(store: SoftwareKeystore) -> None:
    with pytest.raises(MaterialDestroyed):
        store.open("unknown", b"\x00" * 40, b"aad")


# --- nothing secret at rest ---------------------------------------------------------------------------------------


def _files(store_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store_path.parent.iterdir()) if p.is_file())


def test_keys_db_never_contains_the_material_or_the_root_key(store_path: Path) -> None:
    random = CountingRandom()
    store = SoftwareKeystore(store_path, ROOT, random=random)
    materials: list[bytes] = []
    for i, length in enumerate((16, 24, 32)):
        before = len(random.calls)
        store.create(f"handle-{i}", length)
        materials.append(random.calls[before])  # create asks for the material first, then the wrap nonce
        assert len(materials[-1]) == length
    blob = store.seal("handle-2", b"plaintext", b"aad")
    assert store.open("handle-2", blob, b"aad") == b"plaintext"
    store.close()

    raw = _files(store_path)
    assert b"handle-2" in raw  # the file really holds the rows we look into
    for material in materials:
        assert material not in raw
        assert material.hex().encode() not in raw
        assert base64.b64encode(material) not in raw
    assert ROOT not in raw


def test_destroyed_material_is_overwritten_in_the_file(store_path: Path) -> None:
    """secure_delete: after destroy not even the wrapped material is left in the file."""
    random = CountingRandom()
    store = SoftwareKeystore(store_path, ROOT, random=random)
    store.create(HANDLE, 32)
    nonce = random.calls[-1]  # the wrap nonce: the wrapped row starts with version 1 | nonce
    assert len(nonce) == 12
    store.close()
    assert b"\x01" + nonce in store_path.read_bytes()

    store = SoftwareKeystore(store_path, ROOT, random=random)
    store.destroy(HANDLE)
    store.close()
    assert nonce not in _files(store_path)
