"""Properties of the crypto recipes: injective context encoding, wrap round trips and tamper rejection, the Vault
ciphertext codec, and the AEAD's fixed key sizes (STYLE §2.12: round trip, any bit flip rejected, AAD injectivity)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.crypto import KEY_SIZES, NONCE_SIZE, TAG_SIZE, Aead
from blockvault.crypto.envelope import WRAP_VERSION, encode_context, unwrap_dek, wrap_dek
from blockvault.errors import DecryptionFailed
from blockvault.vault import ciphertext

KEK = Aead(bytes(range(32)))
OTHER_KEK = Aead(bytes(range(1, 33)))
CHEAP = settings(max_examples=100, deadline=None)

contexts = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=5)
deks = st.one_of(
    st.sampled_from(KEY_SIZES).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.binary(min_size=16, max_size=64),
)
nonces = st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE)
version_ids = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=300)


def _fixed(nonce: bytes) -> Callable[[int], bytes]:
    def random(n: int) -> bytes:
        assert n == NONCE_SIZE
        return nonce

    return random


# --- encode_context ----------------------------------------------------------------------------------------------


@CHEAP
@given(a=contexts, b=contexts)
def test_encode_context_is_injective(a: dict[str, str], b: dict[str, str]) -> None:
    assert (encode_context(a) == encode_context(b)) == (a == b)


@CHEAP
@given(a=contexts, b=contexts, c=contexts, d=contexts)
def test_concatenated_encodings_are_injective_for_pairs(
    a: dict[str, str], b: dict[str, str], c: dict[str, str], d: dict[str, str]
) -> None:
    assert (encode_context(a) + encode_context(b) == encode_context(c) + encode_context(d)) == ((a, b) == (c, d))


@CHEAP
@given(a=contexts, b=contexts)
def test_concatenation_with_a_moved_entry_differs(a: dict[str, str], b: dict[str, str]) -> None:
    """Moving one entry from the first context to the second changes the bytes (the split is bound)."""
    if not a:
        return
    key = sorted(a)[0]
    if key in b:
        return
    moved_a = {k: v for k, v in a.items() if k != key}
    moved_b = {**b, key: a[key]}
    assert encode_context(a) + encode_context(b) != encode_context(moved_a) + encode_context(moved_b)


@CHEAP
@given(a=contexts)
def test_encode_context_ignores_insertion_order(a: dict[str, str]) -> None:
    assert encode_context(dict(reversed(list(a.items())))) == encode_context(a)


def test_encode_context_known_answer() -> None:
    assert encode_context({}) == b"\x00\x00\x00\x00"
    assert encode_context({"b": "", "a": "xy"}) == (
        b"\x00\x00\x00\x02" + b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x02xy" + b"\x00\x00\x00\x01b" + b"\x00\x00\x00\x00"
    )


# --- wrap_dek / unwrap_dek ---------------------------------------------------------------------------------------


@CHEAP
@given(dek=deks, context=contexts, nonce=nonces)
def test_wrap_unwrap_round_trip(dek: bytes, context: dict[str, str], nonce: bytes) -> None:
    blob = wrap_dek(KEK, dek, context, random=_fixed(nonce))
    assert len(blob) == 1 + NONCE_SIZE + len(dek) + TAG_SIZE
    assert blob[0] == WRAP_VERSION
    assert blob[1 : 1 + NONCE_SIZE] == nonce
    assert unwrap_dek(KEK, blob, context) == dek


@CHEAP
@given(dek=deks, context=contexts, flip=st.integers(min_value=0))
def test_wrapped_dek_any_bit_flip_is_rejected(dek: bytes, context: dict[str, str], flip: int) -> None:
    blob = bytearray(wrap_dek(KEK, dek, context))
    bit = flip % (len(blob) * 8)
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionFailed):
        unwrap_dek(KEK, bytes(blob), context)


@CHEAP
@given(dek=deks, context=contexts, cut=st.integers(min_value=0))
def test_wrapped_dek_truncation_is_rejected(dek: bytes, context: dict[str, str], cut: int) -> None:
    blob = wrap_dek(KEK, dek, context)
    with pytest.raises(DecryptionFailed):
        unwrap_dek(KEK, blob[: cut % len(blob)], context)


@CHEAP
@given(dek=deks, context=contexts, other=contexts)
def test_wrapped_dek_under_another_context_is_rejected(
    dek: bytes, context: dict[str, str], other: dict[str, str]
) -> None:
    blob = wrap_dek(KEK, dek, context)
    if other == context:
        assert unwrap_dek(KEK, blob, other) == dek
    else:
        with pytest.raises(DecryptionFailed):
            unwrap_dek(KEK, blob, other)


@CHEAP
@given(dek=deks, context=contexts)
def test_wrapped_dek_under_another_kek_is_rejected(dek: bytes, context: dict[str, str]) -> None:
    with pytest.raises(DecryptionFailed):
        unwrap_dek(OTHER_KEK, wrap_dek(KEK, dek, context), context)


@CHEAP
@given(garbage=st.binary(max_size=120), context=contexts)
def test_unwrap_of_garbage_is_decryption_failed(garbage: bytes, context: dict[str, str]) -> None:
    with pytest.raises(DecryptionFailed):
        unwrap_dek(KEK, garbage, context)


# --- the Vault ciphertext codec -----------------------------------------------------------------------------------


@CHEAP
@given(version_id=version_ids, blob=st.binary(min_size=NONCE_SIZE + TAG_SIZE, max_size=200))
def test_ciphertext_pack_unpack_round_trip(version_id: str, blob: bytes) -> None:
    parsed = ciphertext.unpack(ciphertext.pack(version_id, blob))
    assert parsed == ciphertext.Parsed(version_id, blob)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_ciphertext_unpack_of_garbage_raises_only_decryption_failed(data: bytes) -> None:
    try:
        parsed = ciphertext.unpack(data)
    except DecryptionFailed:
        return
    assert ciphertext.pack(parsed.key_version_id, parsed.blob) == data


@CHEAP
@given(
    version_id=version_ids,
    blob=st.binary(min_size=NONCE_SIZE + TAG_SIZE, max_size=100),
    prefix=st.integers(min_value=0),
)
def test_ciphertext_unpack_of_a_mangled_header_raises_only_decryption_failed(
    version_id: str, blob: bytes, prefix: int
) -> None:
    data = ciphertext.pack(version_id, blob)
    cut = data[: prefix % len(data)]
    try:
        ciphertext.unpack(cut)
    except DecryptionFailed:
        return


@CHEAP
@given(
    key_id=st.text(max_size=20),
    versions=st.tuples(st.text(max_size=20), st.text(max_size=20)),
    ads=st.tuples(st.none() | contexts, st.none() | contexts),
)
def test_ciphertext_aad_binds_key_version_and_associated_data(
    key_id: str, versions: tuple[str, str], ads: tuple[dict[str, str] | None, dict[str, str] | None]
) -> None:
    same = versions[0] == versions[1] and (ads[0] or {}) == (ads[1] or {})
    a = ciphertext.aad(key_id, versions[0], ads[0])
    b = ciphertext.aad(key_id, versions[1], ads[1])
    assert (a == b) == same


# --- Aead --------------------------------------------------------------------------------------------------------


@CHEAP
@given(size=st.integers(min_value=0, max_value=100).filter(lambda n: n not in KEY_SIZES))
def test_aead_rejects_bad_key_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Aead(bytes(size))


@pytest.mark.parametrize("size", KEY_SIZES)
def test_aead_accepts_aes_key_sizes(size: int) -> None:
    aead = Aead(bytes(size))
    nonce = bytes(NONCE_SIZE)
    assert aead.open(nonce, aead.seal(nonce, b"x", b"a"), b"a") == b"x"


@CHEAP
@given(nonce=st.binary(max_size=32).filter(lambda n: len(n) != NONCE_SIZE))
def test_aead_bad_nonce_is_value_error_on_seal_and_decryption_failed_on_open(nonce: bytes) -> None:
    with pytest.raises(ValueError):
        KEK.seal(nonce, b"x", b"")
    with pytest.raises(DecryptionFailed):
        KEK.open(nonce, bytes(32), b"")


@CHEAP
@given(plaintext=st.binary(max_size=64), aad=st.binary(max_size=16), nonce=nonces, flip=st.integers(min_value=0))
def test_aead_any_bit_flip_is_rejected(plaintext: bytes, aad: bytes, nonce: bytes, flip: int) -> None:
    sealed = bytearray(KEK.seal(nonce, plaintext, aad))
    bit = flip % (len(sealed) * 8)
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionFailed):
        KEK.open(nonce, bytes(sealed), aad)
