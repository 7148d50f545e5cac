"""OCI request-signature verification against real CLI captures, the official SDK signer, and tampering."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oci.signer import Signer
from starlette.datastructures import Headers

from blockvault.errors import InvalidArgument, NotAuthenticated
from blockvault.iam.signing import (
    KeyId,
    SignedRequest,
    Verified,
    content_headers,
    fingerprint,
    load_public_key,
    parse_authorization,
    sign,
    signing_string,
    verify,
)

# shared/ sits beside the repository, both here and in CI (<repo>/../shared); tests/unit/x.py -> parents[2] is <repo>.
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
CAPTURES = SHARED / "spec" / "captures"


def _load_captures() -> list[dict[str, Any]]:
    path = CAPTURES / "requests.jsonl"
    if not path.is_file():
        # A missing spec must fail the run, never skip it: these are the only real-world vectors we have.
        raise FileNotFoundError(f"signature captures not found at {path}; shared/ must sit beside the repository")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise AssertionError(f"{path} holds no captured requests")
    return rows


ROWS = _load_captures()
CAPTURED_PEM = (CAPTURES / "oci_api_key_public.pem").read_bytes()
CAPTURED_PUBLIC_KEY = load_public_key(CAPTURED_PEM)
CAPTURED_KEY_ID_TEXT = ROWS[0]["signature"]["params"]["keyId"]
CAPTURED_KEY_ID = KeyId(*CAPTURED_KEY_ID_TEXT.split("/"))

TENANCY = "ocid1.tenancy.oc1..aaaaaaaatesttenancy"
USER = "ocid1.user.oc1..aaaaaaaatestuser"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = PRIVATE_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
KEY_ID = KeyId(TENANCY, USER, fingerprint(PUBLIC_PEM))
DATE = "Sat, 28 Nov 2026 10:33:12 GMT"
NOW = datetime(2026, 11, 28, 10, 33, 12, tzinfo=UTC)


def _lookup_for(key_id: KeyId, key: rsa.RSAPublicKey) -> Callable[[KeyId], rsa.RSAPublicKey | None]:
    def lookup(candidate: KeyId) -> rsa.RSAPublicKey | None:
        return key if candidate == key_id else None

    return lookup


CAPTURED_LOOKUP = _lookup_for(CAPTURED_KEY_ID, CAPTURED_PUBLIC_KEY)
LOOKUP = _lookup_for(KEY_ID, PRIVATE_KEY.public_key())


def _captured(row: Mapping[str, Any]) -> SignedRequest:
    return SignedRequest(row["method"], row["raw_target"], dict(row["headers"]), row["body"].encode("utf-8"))


def _date_of(req: SignedRequest) -> datetime:
    return parsedate_to_datetime(req.headers["date"])


def _first(predicate: Callable[[dict[str, Any]], bool]) -> SignedRequest:
    return _captured(next(row for row in ROWS if predicate(row)))


CAPTURED_POST = _first(lambda r: r["method"] == "POST" and len(r["body"]) > 20)
CAPTURED_GET = _first(lambda r: r["method"] == "GET")
CAPTURED_QUERY = _first(lambda r: "%" in r["raw_target"] and "+" in r["raw_target"])


def _with_headers(req: SignedRequest, **changes: str | None) -> SignedRequest:
    headers = dict(req.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return replace(req, headers=headers)


def _signed(
    method: str,
    target: str = "/20160918/volumes",
    body: bytes = b"",
    *,
    extra: Mapping[str, str] | None = None,
    signed_headers: list[str] | None = None,
) -> SignedRequest:
    headers = {"date": DATE, "host": "127.0.0.1:18080", "content-type": "application/json"}
    if method in ("POST", "PUT", "PATCH"):
        headers |= content_headers(body)
    headers |= dict(extra or {})
    headers["authorization"] = sign(
        method, target, headers, body, key_id=str(KEY_ID), private_key=PRIVATE_KEY, signed_headers=signed_headers
    )
    return SignedRequest(method, target, headers, body)


def _refused(
    req: SignedRequest,
    check: str,
    *,
    lookup: Callable[[KeyId], rsa.RSAPublicKey | None] = LOOKUP,
    now: datetime = NOW,
) -> NotAuthenticated:
    """Assert the request is refused by the named check, and that the error echoes no secret material."""
    with pytest.raises(NotAuthenticated) as caught:
        verify(req, lookup=lookup, now=now)
    error = caught.value
    assert error.context["check"] == check, error.text
    text = str(error)
    authorization = req.headers.get("authorization", "")
    signature = authorization.partition('signature="')[2].partition('"')[0]
    if signature:
        assert signature not in text
        assert signature[:16] not in text
    assert "BEGIN" not in text
    assert "(request-target): " not in text
    return error


# --- the real thing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[f"{i:02d}-{r['label']}-{r['method']}" for i, r in enumerate(ROWS)])
def test_captured_request_verifies(row: dict[str, Any]) -> None:
    req = _captured(row)
    assert verify(req, lookup=CAPTURED_LOOKUP, now=_date_of(req)) == Verified(CAPTURED_KEY_ID)


@pytest.mark.parametrize("row", ROWS, ids=[f"{i:02d}-{r['label']}-{r['method']}" for i, r in enumerate(ROWS)])
def test_captured_signing_string_matches_the_recorded_one(row: dict[str, Any]) -> None:
    names = row["signature"]["params"]["headers"].split()
    assert signing_string(_captured(row), names) == row["signature"]["signing_string"].encode("ascii")


def test_captures_cover_every_method_and_escaped_queries() -> None:
    assert {row["method"] for row in ROWS} >= {"GET", "POST", "PUT", "DELETE"}
    assert CAPTURED_QUERY.raw_target.count("%") >= 3


def test_fingerprint_of_captured_key_matches_captured_key_id() -> None:
    assert fingerprint(CAPTURED_PEM) == CAPTURED_KEY_ID.fingerprint == "0a:f0:55:23:d3:38:9c:01:64:f8:6b:d5:5a:65:52:8f"


def test_fingerprint_is_md5_of_der_subject_public_key_info() -> None:
    der = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fingerprint(PUBLIC_PEM) == ":".join(f"{b:02x}" for b in hashlib.md5(der, usedforsecurity=False).digest())


# --- the official SDK signer ------------------------------------------------------------------------------------

SDK_CASES = {
    "get": ("GET", "http://127.0.0.1:18080/20160918/volumes/ocid1.volume.oc1.iad.aaaa", None, None),
    "post-body": ("POST", "http://127.0.0.1:18080/20160918/volumes", b'{"displayName": "v\xc3\xa9"}', None),
    "put-empty": ("PUT", "http://127.0.0.1:18080/20160918/volumes/ocid1.volume.oc1.iad.aaaa", b"", None),
    "delete": ("DELETE", "http://127.0.0.1:18080/20160918/volumes/ocid1.volume.oc1.iad.aaaa", None, None),
    "escapes": (
        "GET",
        "http://127.0.0.1:18080/prefix/20160918/volumes/a%2Fb%20c",
        None,
        {"availabilityDomain": "Uocm:PHX-AD-1", "displayName": "my vol/\u00e9+x"},
    ),
    "post-empty-on-default-port": ("POST", "https://kms.example.com/20180608/keys/k/actions/enable", None, None),
}


def _sdk_signed(method: str, url: str, body: bytes | None, params: dict[str, str] | None) -> SignedRequest:
    signer = Signer(
        TENANCY,
        USER,
        KEY_ID.fingerprint,
        private_key_file_location=None,
        private_key_content=PRIVATE_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
    )
    prepared = requests.Request(method, url, data=body, params=params).prepare()
    signer(prepared)
    assert prepared.method is not None
    assert prepared.path_url is not None
    raw_body = prepared.body
    sent = raw_body if isinstance(raw_body, bytes) else str(raw_body or "").encode("utf-8")
    headers = {name.lower(): str(value) for name, value in prepared.headers.items()}
    return SignedRequest(prepared.method, prepared.path_url, headers, sent)


@pytest.mark.parametrize("case", sorted(SDK_CASES))
def test_sdk_signed_request_verifies(case: str) -> None:
    req = _sdk_signed(*SDK_CASES[case])
    assert verify(req, lookup=LOOKUP, now=_date_of(req)).key_id == KEY_ID


def test_sdk_escapes_reach_the_signature_raw() -> None:
    req = _sdk_signed(*SDK_CASES["escapes"])
    assert req.raw_target == (
        "/prefix/20160918/volumes/a%2Fb%20c?availabilityDomain=Uocm%3APHX-AD-1&displayName=my+vol%2F%C3%A9%2Bx"
    )
    decoded = replace(req, raw_target=req.raw_target.replace("+", "%20"))
    _refused(decoded, "signature", now=_date_of(req))


@pytest.mark.parametrize("case", sorted(SDK_CASES))
def test_sdk_signature_matches_ours(case: str) -> None:
    # PKCS#1 v1.5 is deterministic, so our signer must reproduce the SDK's Authorization value byte for byte.
    req = _sdk_signed(*SDK_CASES[case])
    ours = sign(req.method, req.raw_target, req.headers, req.body, key_id=str(KEY_ID), private_key=PRIVATE_KEY)
    assert ours == req.headers["authorization"]


# --- tampering --------------------------------------------------------------------------------------------------


def test_changed_body_is_refused() -> None:
    req = CAPTURED_POST
    _refused(replace(req, body=req.body + b" "), "body_hash", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    middle = len(req.body) // 2
    same_length = req.body[:middle] + bytes([req.body[middle] ^ 0x01]) + req.body[middle + 1 :]
    _refused(replace(req, body=same_length), "body_hash", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_content_length_mismatch_is_refused() -> None:
    req = CAPTURED_POST
    wrong = str(int(req.headers["content-length"]) + 1)
    _refused(_with_headers(req, content_length=wrong), "content_length", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    # Signed but inconsistent: the signature is fine, the length check alone must refuse it.
    body = b'{"a": 1}'
    lying = _signed("POST", body=body, extra={"content-length": str(len(body) - 1)})
    _refused(lying, "content_length")


@pytest.mark.parametrize("value", ["+8", "8 ", "0x8", "\u00b2", "", "9" * 30])
def test_content_length_must_be_plain_decimal(value: str) -> None:
    _refused(_signed("POST", body=b"12345678", extra={"content-length": value}), "content_length")


@pytest.mark.parametrize(
    ("name", "value"),
    [("content-type", "text/plain"), ("host", "127.0.0.1:18081"), ("date", "Sat, 28 Nov 2026 10:33:13 GMT")],
)
def test_changed_signed_header_is_refused(name: str, value: str) -> None:
    req = CAPTURED_POST
    _refused(_with_headers(req, **{name: value}), "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_unsigned_header_may_change() -> None:
    req = _with_headers(CAPTURED_POST, opc_request_id="0" * 32, user_agent="something else")
    assert verify(req, lookup=CAPTURED_LOOKUP, now=_date_of(req)).key_id == CAPTURED_KEY_ID


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("displayName=my+vol", "displayName=my%20vol"),  # the same value, encoded differently
        ("%3A", "%3a"),  # escapes are compared raw, never normalised
        ("compartmentId=ocid1.compartment.oc1..aaaa", "compartmentId=ocid1.compartment.oc1..bbbb"),
        ("/20160918/volumes?", "/20160918/volumes/?"),
    ],
)
def test_changed_target_is_refused(old: str, new: str) -> None:
    req = CAPTURED_QUERY
    assert old in req.raw_target
    tampered = replace(req, raw_target=req.raw_target.replace(old, new, 1))
    _refused(tampered, "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_dropped_query_is_refused() -> None:
    req = CAPTURED_QUERY
    tampered = replace(req, raw_target=req.raw_target.partition("?")[0])
    _refused(tampered, "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


@pytest.mark.parametrize("method", ["DELETE", "HEAD"])
def test_changed_method_is_refused(method: str) -> None:
    req = CAPTURED_GET
    _refused(replace(req, method=method), "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_changed_body_method_is_refused() -> None:
    req = CAPTURED_POST
    _refused(replace(req, method="PUT"), "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    # Turning a POST into a GET drops the body requirement but the signature still covers the method.
    _refused(replace(req, method="GET"), "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def _bit_flips(signature: str) -> Iterator[str]:
    raw = base64.b64decode(signature)
    for index in (0, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        yield base64.b64encode(bytes(flipped)).decode("ascii")


@pytest.mark.parametrize("req", [CAPTURED_GET, CAPTURED_POST], ids=["get", "post"])
def test_flipped_signature_bit_is_refused(req: SignedRequest) -> None:
    authorization = req.headers["authorization"]
    signature = parse_authorization(authorization)["signature"]
    for flipped in _bit_flips(signature):
        tampered = _with_headers(req, authorization=authorization.replace(signature, flipped))
        _refused(tampered, "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_truncated_signature_is_refused() -> None:
    authorization = CAPTURED_GET.headers["authorization"]
    signature = parse_authorization(authorization)["signature"]
    tampered = _with_headers(CAPTURED_GET, authorization=authorization.replace(signature, signature[:-4]))
    _refused(tampered, "signature", lookup=CAPTURED_LOOKUP, now=_date_of(CAPTURED_GET))


@pytest.mark.parametrize("value", ["not base64!", "QUJD=", "QUJD\tRA=="])
def test_signature_that_is_not_base64_is_refused(value: str) -> None:
    authorization = CAPTURED_GET.headers["authorization"]
    signature = parse_authorization(authorization)["signature"]
    tampered = _with_headers(CAPTURED_GET, authorization=authorization.replace(signature, value))
    with pytest.raises(NotAuthenticated):
        verify(tampered, lookup=CAPTURED_LOOKUP, now=_date_of(CAPTURED_GET))


@pytest.mark.parametrize(
    ("part", "replacement"),
    [
        (2, "0a:f0:55:23:d3:38:9c:01:64:f8:6b:d5:5a:65:52:8e"),  # wrong fingerprint
        (1, "ocid1.user.oc1..aaaaaaaaotheruser"),  # unknown user
        (0, "ocid1.tenancy.oc1..aaaaaaaaothertenancy"),  # unknown tenancy
    ],
)
def test_unknown_key_is_refused(part: int, replacement: str) -> None:
    req = CAPTURED_GET
    parts = CAPTURED_KEY_ID_TEXT.split("/")
    parts[part] = replacement
    tampered = _with_headers(
        req, authorization=req.headers["authorization"].replace(CAPTURED_KEY_ID_TEXT, "/".join(parts))
    )
    error = _refused(tampered, "key", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    # The 401 text is the same as for a bad signature, so it does not reveal which keys exist.
    signature = parse_authorization(req.headers["authorization"])["signature"]
    flipped = next(_bit_flips(signature))
    bad_signature = _with_headers(req, authorization=req.headers["authorization"].replace(signature, flipped))
    assert error.text == _refused(bad_signature, "signature", lookup=CAPTURED_LOOKUP, now=_date_of(req)).text


def test_deleted_key_is_refused() -> None:
    _refused(CAPTURED_GET, "key", lookup=lambda _: None, now=_date_of(CAPTURED_GET))


def test_key_of_another_user_does_not_verify() -> None:
    # The lookup hands back a real key, just not the one that signed: the RSA check must catch it.
    req = CAPTURED_GET
    _refused(req, "signature", lookup=lambda _: PRIVATE_KEY.public_key(), now=_date_of(req))


@pytest.mark.parametrize(
    "key_id",
    [
        "ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..aaaa",
        "ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..aaaa/0a:f0:55:23:d3:38:9c:01:64:f8:6b:d5:5a:65:52:8f/x",
        "ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..aaaa/0A:F0:55:23:D3:38:9C:01:64:F8:6B:D5:5A:65:52:8F",
        "ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..aaaa/0af05523d3389c0164f86bd55a65528f",
        "ocid1.user.oc1..aaaa/ocid1.tenancy.oc1..aaaa/0a:f0:55:23:d3:38:9c:01:64:f8:6b:d5:5a:65:52:8f",
        "ST$eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "",
    ],
)
def test_malformed_key_id_is_refused(key_id: str) -> None:
    req = CAPTURED_GET
    tampered = _with_headers(req, authorization=req.headers["authorization"].replace(CAPTURED_KEY_ID_TEXT, key_id))
    _refused(tampered, "key_id", lookup=CAPTURED_LOOKUP, now=_date_of(req))


@pytest.mark.parametrize("minutes", [-6, 6, -60 * 24, 60 * 24 * 365])
def test_date_more_than_five_minutes_off_is_refused(minutes: int) -> None:
    req = CAPTURED_POST
    _refused(req, "date", lookup=CAPTURED_LOOKUP, now=_date_of(req) + timedelta(minutes=minutes))


@pytest.mark.parametrize("offset", [timedelta(minutes=-4), timedelta(minutes=4), timedelta(minutes=5)])
def test_date_within_five_minutes_is_accepted(offset: timedelta) -> None:
    req = CAPTURED_POST
    assert verify(req, lookup=CAPTURED_LOOKUP, now=_date_of(req) + offset).key_id == CAPTURED_KEY_ID
    assert verify(req, lookup=CAPTURED_LOOKUP, now=_date_of(req) - offset).key_id == CAPTURED_KEY_ID


def test_max_skew_is_a_parameter() -> None:
    req = CAPTURED_GET
    with pytest.raises(NotAuthenticated):
        verify(req, lookup=CAPTURED_LOOKUP, now=_date_of(req) + timedelta(seconds=2), max_skew=timedelta(seconds=1))


@pytest.mark.parametrize(
    "value",
    ["yesterday", "", "Sat, 28 Nov 2026 10:33:12", "Sat, 28 Nov 2026 10:33:12 -0000", "Sat, 28 Nov 2026 25:00:00 GMT"],
)
def test_unparseable_date_is_refused(value: str) -> None:
    _refused(_signed("GET", extra={"date": value}), "date")


def test_x_date_may_replace_date() -> None:
    req = _signed("GET", extra={"x-date": DATE}, signed_headers=["x-date", "(request-target)", "host"])
    assert verify(req, lookup=LOOKUP, now=NOW).key_id == KEY_ID
    _refused(req, "date", now=NOW + timedelta(minutes=6))


def test_every_signed_date_is_checked() -> None:
    stale = "Sat, 28 Nov 2026 09:00:00 GMT"
    req = _signed("GET", extra={"x-date": stale}, signed_headers=["date", "x-date", "(request-target)", "host"])
    _refused(req, "date")


def test_missing_authorization_is_refused() -> None:
    _refused(_with_headers(CAPTURED_GET, authorization=None), "authorization", lookup=CAPTURED_LOOKUP)


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", "Signatures", "HMAC-SHA256"])
def test_wrong_scheme_is_refused(scheme: str) -> None:
    req = CAPTURED_GET
    authorization = req.headers["authorization"].replace("Signature", scheme, 1)
    _refused(_with_headers(req, authorization=authorization), "scheme", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    _refused(_with_headers(req, authorization=f"{scheme} abc"), "scheme", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_scheme_is_case_insensitive() -> None:
    req = CAPTURED_GET
    authorization = req.headers["authorization"].replace("Signature", "signature", 1)
    assert verify(_with_headers(req, authorization=authorization), lookup=CAPTURED_LOOKUP, now=_date_of(req))


@pytest.mark.parametrize("missing", ["content-length", "content-type", "x-content-sha256", "host", "(request-target)"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_method_without_a_required_signed_header_is_refused(method: str, missing: str) -> None:
    names = ["date", "(request-target)", "host", "content-length", "content-type", "x-content-sha256"]
    names.remove(missing)
    _refused(_signed(method, body=b"{}", signed_headers=names), "headers")


@pytest.mark.parametrize("missing", ["date", "host", "(request-target)"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_any_method_without_a_required_signed_header_is_refused(method: str, missing: str) -> None:
    names = ["date", "(request-target)", "host"]
    names.remove(missing)
    _refused(_signed(method, signed_headers=names), "headers")


def test_listed_header_absent_from_request_is_refused() -> None:
    req = CAPTURED_POST
    _refused(_with_headers(req, content_type=None), "missing_header", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_extra_signed_headers_are_verified() -> None:
    names = ["date", "(request-target)", "host", "opc-request-id"]
    req = _signed("GET", extra={"opc-request-id": "A" * 32}, signed_headers=names)
    assert verify(req, lookup=LOOKUP, now=NOW).key_id == KEY_ID
    _refused(_with_headers(req, opc_request_id="B" * 32), "signature")


def test_get_with_an_unsigned_body_is_refused() -> None:
    req = _signed("GET")
    _refused(replace(req, body=b"{}"), "body_hash")


def test_delete_may_send_an_unsigned_empty_body_and_length() -> None:
    req = _signed("DELETE", extra={"content-length": "0"})
    assert verify(req, lookup=LOOKUP, now=NOW).key_id == KEY_ID


@pytest.mark.parametrize(
    ("param", "value", "check"),
    [
        ("algorithm", "rsa-sha1", "algorithm"),
        ("algorithm", "hmac-sha256", "algorithm"),
        ("algorithm", "RSA-SHA256", "algorithm"),
        ("version", "2", "version"),
        ("headers", "date (request-target) host host", "headers"),
    ],
)
def test_unsupported_parameters_are_refused(param: str, value: str, check: str) -> None:
    req = CAPTURED_GET
    params = parse_authorization(req.headers["authorization"])
    params[param] = value
    authorization = "Signature " + ",".join(f'{k}="{v}"' for k, v in params.items())
    _refused(_with_headers(req, authorization=authorization), check, lookup=CAPTURED_LOOKUP, now=_date_of(req))


@pytest.mark.parametrize("param", ["algorithm", "keyId", "signature", "headers"])
def test_missing_parameters_are_refused(param: str) -> None:
    req = CAPTURED_GET
    params = parse_authorization(req.headers["authorization"])
    del params[param]
    authorization = "Signature " + ",".join(f'{k}="{v}"' for k, v in params.items())
    with pytest.raises(NotAuthenticated):
        verify(_with_headers(req, authorization=authorization), lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_version_may_be_omitted_and_order_is_free() -> None:
    req = CAPTURED_GET
    params = parse_authorization(req.headers["authorization"])
    del params["version"]
    authorization = "Signature " + ", ".join(f'{k}="{v}"' for k, v in reversed(params.items()))
    assert verify(_with_headers(req, authorization=authorization), lookup=CAPTURED_LOOKUP, now=_date_of(req))


GARBAGE = [
    "Signature",
    "Signature ",
    "Signature garbage",
    'Signature keyId="a",',
    'Signature ,keyId="a"',
    "Signature keyId=a",
    'Signature keyId="a" signature="b"',
    'Signature keyId="a",keyId="b"',
    'Signature keyId="a\\"b"',
    'Signature keyId="a',
    'Signature keyId="a"\r\nhost: x',
    'Signature keyId="' + "a" * 20_000 + '"',
    "Signature \x00",
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_authorization_is_refused(value: str) -> None:
    with pytest.raises(NotAuthenticated):
        parse_authorization(value)
    _refused(_with_headers(CAPTURED_GET, authorization=value), "authorization", lookup=CAPTURED_LOOKUP)


def test_parse_authorization_reads_the_sdk_format() -> None:
    params = parse_authorization(CAPTURED_POST.headers["authorization"])
    assert params.keys() == {"algorithm", "headers", "keyId", "signature", "version"}
    assert params["headers"] == "date (request-target) host content-length content-type x-content-sha256"
    assert params["keyId"] == CAPTURED_KEY_ID_TEXT


def test_control_characters_in_signed_values_are_refused() -> None:
    # A newline inside a value could forge extra signing-string lines; the wire never carries one.
    req = _signed("GET", extra={"x-thing": "a"}, signed_headers=["date", "(request-target)", "host", "x-thing"])
    _refused(_with_headers(req, x_thing="a\nhost: evil"), "header_value")
    _refused(replace(req, raw_target="/a b"), "request_target")
    _refused(replace(req, raw_target=""), "request_target")


def test_values_outside_latin1_are_refused() -> None:
    req = _signed("GET", extra={"x-thing": "a"}, signed_headers=["date", "(request-target)", "host", "x-thing"])
    _refused(_with_headers(req, x_thing="\u20ac"), "encoding")


def test_latin1_header_bytes_are_signed_as_sent() -> None:
    names = ["date", "(request-target)", "host", "x-thing"]
    req = _signed("GET", extra={"x-thing": "caf\u00e9"}, signed_headers=names)
    assert b"x-thing: caf\xe9" in signing_string(req, names)
    assert verify(req, lookup=LOOKUP, now=NOW).key_id == KEY_ID


def test_starlette_headers_work_and_signed_duplicates_are_refused() -> None:
    req = CAPTURED_GET
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()]
    as_received = replace(req, headers=Headers(raw=raw))
    assert verify(as_received, lookup=CAPTURED_LOOKUP, now=_date_of(req)).key_id == CAPTURED_KEY_ID
    unsigned_twice = replace(req, headers=Headers(raw=[*raw, (b"accept", b"text/html")]))
    assert verify(unsigned_twice, lookup=CAPTURED_LOOKUP, now=_date_of(req))
    signed_twice = replace(req, headers=Headers(raw=[*raw, (b"host", b"evil.example")]))
    _refused(signed_twice, "duplicate_header", lookup=CAPTURED_LOOKUP, now=_date_of(req))
    authorization_twice = replace(req, headers=Headers(raw=[*raw, (b"authorization", b'Signature a="b"')]))
    _refused(authorization_twice, "authorization", lookup=CAPTURED_LOOKUP, now=_date_of(req))


def test_naive_now_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(CAPTURED_GET, lookup=CAPTURED_LOOKUP, now=datetime(2026, 11, 28, 10, 33, 12))


# --- sign -------------------------------------------------------------------------------------------------------


def test_sign_uses_the_sdk_header_lists() -> None:
    get = parse_authorization(_signed("GET").headers["authorization"])
    post = parse_authorization(_signed("POST", body=b"x").headers["authorization"])
    assert get["headers"] == "date (request-target) host"
    assert post["headers"] == "date (request-target) host content-length content-type x-content-sha256"
    assert post["keyId"] == str(KEY_ID)
    assert post["version"] == "1"


def test_sign_refuses_absent_headers() -> None:
    with pytest.raises(ValueError, match="x-content-sha256"):
        sign(
            "POST",
            "/a",
            {"date": DATE, "host": "h", "content-type": "a", "content-length": "0"},
            b"",
            key_id=str(KEY_ID),
            private_key=PRIVATE_KEY,
        )


def test_content_headers_match_the_sdk_for_an_empty_body() -> None:
    assert content_headers(b"") == {
        "content-length": "0",
        "x-content-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    }


# --- keys -------------------------------------------------------------------------------------------------------


def test_load_public_key_accepts_the_captured_key() -> None:
    assert load_public_key(CAPTURED_PEM).key_size == 2048


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        PRIVATE_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        _pem(ec.generate_private_key(ec.SECP256R1())),
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 (refusal test)
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=2040)),  # noqa: S505 (refusal test)
    ],
    ids=["empty", "garbage", "bad-der", "private-key", "ec", "rsa-1024", "rsa-2040"],
)
def test_load_public_key_refuses(pem: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_public_key(pem)
    assert caught.value.context["field"] == "key"


@pytest.mark.parametrize("pem", [b"", b"garbage"])
def test_fingerprint_of_garbage_is_invalid_argument(pem: bytes) -> None:
    with pytest.raises(InvalidArgument):
        fingerprint(pem)
