"""Signing round trips and tamper rejection for arbitrary bodies and request targets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.errors import NotAuthenticated
from blockvault.iam.signing import KeyId, SignedRequest, content_headers, fingerprint, sign, verify

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_ID = KeyId(
    "ocid1.tenancy.oc1..aaaaaaaaproptenancy",
    "ocid1.user.oc1..aaaaaaaapropuser",
    fingerprint(
        PRIVATE_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ),
)
NOW = datetime(2026, 11, 28, 10, 33, 12, tzinfo=UTC)
DATE = "Sat, 28 Nov 2026 10:33:12 GMT"

# RSA signing costs about a millisecond per example; a few dozen examples per property are plenty.
PROPS = settings(max_examples=40, deadline=None)

# Visible ASCII: what a request line can carry once percent-encoded (no space, no control characters).
_TARGET_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
targets = st.text(_TARGET_CHARS, max_size=80).map(lambda rest: "/" + rest)
body_methods = st.sampled_from(["POST", "PUT", "PATCH"])
methods = st.sampled_from(["GET", "HEAD", "DELETE", "POST", "PUT", "PATCH"])


def _lookup(candidate: KeyId) -> rsa.RSAPublicKey | None:
    return PRIVATE_KEY.public_key() if candidate == KEY_ID else None


def _signed(method: str, target: str, body: bytes) -> SignedRequest:
    headers = {"date": DATE, "host": "127.0.0.1:18080", "content-type": "application/json"}
    if method in ("POST", "PUT", "PATCH"):
        headers |= content_headers(body)
    headers["authorization"] = sign(method, target, headers, body, key_id=str(KEY_ID), private_key=PRIVATE_KEY)
    return SignedRequest(method, target, headers, body)


@PROPS
@given(method=body_methods, target=targets, body=st.binary(max_size=512))
def test_signed_requests_verify(method: str, target: str, body: bytes) -> None:
    assert verify(_signed(method, target, body), lookup=_lookup, now=NOW).key_id == KEY_ID


@PROPS
@given(method=methods, target=targets)
def test_signed_requests_without_body_verify(method: str, target: str) -> None:
    assert verify(_signed(method, target, b""), lookup=_lookup, now=NOW).key_id == KEY_ID


@PROPS
@given(method=body_methods, body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_single_byte_change_of_the_body_is_refused(method: str, body: bytes, data: st.DataObject) -> None:
    req = _signed(method, "/20160918/volumes", body)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    delta = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ delta]) + body[index + 1 :]
    with pytest.raises(NotAuthenticated) as caught:
        verify(replace(req, body=changed), lookup=_lookup, now=NOW)
    assert caught.value.context["check"] == "body_hash"


@PROPS
@given(method=body_methods, body=st.binary(max_size=512), data=st.data())
def test_inserting_or_dropping_a_body_byte_is_refused(method: str, body: bytes, data: st.DataObject) -> None:
    req = _signed(method, "/20160918/volumes", body)
    if body and data.draw(st.booleans()):
        index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        changed = body[:index] + body[index + 1 :]
    else:
        index = data.draw(st.integers(min_value=0, max_value=len(body)))
        changed = body[:index] + data.draw(st.binary(min_size=1, max_size=1)) + body[index:]
    with pytest.raises(NotAuthenticated):
        verify(replace(req, body=changed), lookup=_lookup, now=NOW)


@PROPS
@given(method=methods, target=targets, data=st.data())
def test_any_single_byte_change_of_the_target_is_refused(method: str, target: str, data: st.DataObject) -> None:
    req = _signed(method, target, b"")
    index = data.draw(st.integers(min_value=0, max_value=len(target) - 1))
    replacement = data.draw(_TARGET_CHARS.filter(lambda c: c != target[index]))
    changed = target[:index] + replacement + target[index + 1 :]
    with pytest.raises(NotAuthenticated) as caught:
        verify(replace(req, raw_target=changed), lookup=_lookup, now=NOW)
    assert caught.value.context["check"] == "signature"


@PROPS
@given(method=methods, target=targets, suffix=st.text(_TARGET_CHARS, min_size=1, max_size=8))
def test_extending_or_truncating_the_target_is_refused(method: str, target: str, suffix: str) -> None:
    req = _signed(method, target, b"")
    for changed in (target + suffix, target[:-1]):
        with pytest.raises(NotAuthenticated):
            verify(replace(req, raw_target=changed), lookup=_lookup, now=NOW)
