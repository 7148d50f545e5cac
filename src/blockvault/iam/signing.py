"""Verify OCI HTTP request signatures (oci-wire.md §2): a pure, sans-I/O core.

The API edge turns an incoming request into a `SignedRequest` and calls `verify()` with a key lookup and the
current time; nothing here reads a clock, a socket or a database.

The scheme is draft-cavage-http-signatures (-08) as the SDK's vendored `httpsig_cffi` implements it:

    authorization: Signature algorithm="rsa-sha256",headers="<names>",keyId="<tenancy>/<user>/<fingerprint>",
                   signature="<base64>",version="1"

The signing string has one line per name in `headers`, in that order, joined by "\\n" with no trailing newline:

    date: Sat, 28 Nov 2026 10:33:12 GMT
    (request-target): post /20160918/volumes?opc-x=1      <- lower-case method, raw path and query as sent
    host: 127.0.0.1:18080
    content-length: 221                                   <- POST/PUT/PATCH only, also for empty bodies
    content-type: application/json
    x-content-sha256: <base64(SHA-256(body))>

and is signed with RSASSA-PKCS1-v1_5 / SHA-256 by the API key whose public half the user uploaded.

Strings in a `SignedRequest` are the latin-1 decoding of the bytes on the wire (what ASGI servers and Starlette hand
over), and they are encoded back the same way, so the verifier checks exactly the bytes the client signed. The SDK
signs ASCII only, for which every choice agrees.

Every refusal is a `NotAuthenticated` whose message never contains the signature, key material or the signing string.
Its `context["check"]` names the check that failed (for logs and tests); a missing key and a wrong signature share
one message, so the 401 body is no oracle for which (tenancy, user, fingerprint) triples exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from blockvault import ids
from blockvault.errors import BlockvaultError, InvalidArgument, NotAuthenticated

__all__ = [
    "ALGORITHM",
    "MIN_KEY_BITS",
    "REQUEST_TARGET",
    "VERSION",
    "KeyId",
    "SignedRequest",
    "Verified",
    "content_headers",
    "fingerprint",
    "load_public_key",
    "parse_authorization",
    "sign",
    "signing_string",
    "verify",
]

ALGORITHM = "rsa-sha256"
VERSION = "1"
# OCI refuses API keys shorter than 2048 bits (public "Required Keys and OCIDs" page); so do we.
MIN_KEY_BITS = 2048
# Real headers are about 600 bytes (a 2048-bit signature is 344 base64 characters); 16 KiB bounds the regex work
# while leaving room for 16384-bit keys and long keyIds.
_MAX_AUTHORIZATION = 16 * 1024

REQUEST_TARGET = "(request-target)"
_DATE_HEADERS = ("date", "x-date")
# oci-wire.md §2: the SDK signs these for every request, and the body headers for POST/PUT/PATCH (even empty bodies).
_GENERIC_HEADERS = ("date", REQUEST_TARGET, "host")
_BODY_HEADERS = ("content-length", "content-type", "x-content-sha256")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# RFC 7235 §2.1 auth-param with a quoted value (draft-cavage quotes every value). OWS is SP / HTAB only, and
# backslashes are refused rather than unescaped: no OCI client sends quoted-pairs.
_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
_PAIR = rf'{_NAME}[ \t]*=[ \t]*"[^"\\]*"'
_CREDENTIALS = re.compile(r"[ \t]*([^ \t]+)(?:[ \t]+(.*?))?[ \t]*", re.DOTALL)
_PARAMS = re.compile(rf"{_PAIR}(?:[ \t]*,[ \t]*{_PAIR})*")
_PAIR_GROUPS = re.compile(rf'({_NAME})[ \t]*=[ \t]*"([^"\\]*)"')
# oci-wire.md §1.3: lower-case MD5, colon-separated.
_FINGERPRINT = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){15}")
# RFC 7230 §3.2 field-value: no control characters but HTAB. A CR or LF inside a value could forge signing-string lines.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TARGET_CHAR = re.compile(r"[\x00-\x20\x7f]")
_METHOD = re.compile(r"[A-Za-z]+")

_BAD_SIGNATURE = "the signature does not verify with an API key of the user named in keyId"


@dataclass(frozen=True)
class SignedRequest:
    """An HTTP request as received: latin-1 decoded strings, lower-case header names, the raw body."""

    method: str
    raw_target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class KeyId:
    """The API key a request claims to be signed with: `<tenancy OCID>/<user OCID>/<fingerprint>`."""

    tenancy_id: str
    user_id: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.tenancy_id}/{self.user_id}/{self.fingerprint}"


@dataclass(frozen=True)
class Verified:
    """Proof that a request carried a valid signature by `key_id` (authentication only, not authorization)."""

    key_id: KeyId


def _refuse(reason: str, check: str) -> NoReturn:
    raise NotAuthenticated(reason=reason, check=check)


def parse_authorization(value: str) -> dict[str, str]:
    """Parse `Signature name="value",...` (any order) into a dict of parameters.

    The scheme is matched case-insensitively (RFC 7235 §2.1); parameter names are kept as sent. Raises
    `NotAuthenticated` for another scheme, duplicate parameters or anything that is not that grammar.
    """
    if len(value) > _MAX_AUTHORIZATION:
        _refuse("the authorization header is too long", "authorization")
    credentials = _CREDENTIALS.fullmatch(value)
    if credentials is None or credentials.group(1).lower() != "signature":
        _refuse("the authorization scheme must be Signature", "scheme")
    pairs = credentials.group(2) or ""
    if not _PARAMS.fullmatch(pairs):
        _refuse('the authorization header is not of the form Signature name="value",...', "authorization")
    params: dict[str, str] = {}
    for name, param in _PAIR_GROUPS.findall(pairs):
        if name in params:
            _refuse(f"the authorization parameter {name} appears more than once", "authorization")
        params[name] = param
    return params


def _collect(headers: Mapping[str, str]) -> dict[str, list[str]]:
    # items() rather than the mapping itself: multi-valued mappings (Starlette's Headers) yield every repetition.
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name.lower(), []).append(value)
    return collected


def _header(collected: Mapping[str, list[str]], name: str) -> str:
    values = collected.get(name)
    if not values:
        _refuse(f"the signed header {name} is missing from the request", "missing_header")
    if len(values) > 1:
        _refuse(f"the signed header {name} appears more than once", "duplicate_header")
    if _BAD_VALUE_CHAR.search(values[0]):
        _refuse(f"the signed header {name} contains control characters", "header_value")
    return values[0]


def _encode(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        _refuse("a signed value has characters that cannot have come off the wire", "encoding")


def _signing_string(method: str, raw_target: str, collected: Mapping[str, list[str]], names: Sequence[str]) -> bytes:
    if not _METHOD.fullmatch(method):
        _refuse("the request method is not a token", "request_target")
    if not raw_target or _BAD_TARGET_CHAR.search(raw_target):
        _refuse("the request target is empty or contains spaces or control characters", "request_target")
    lines = []
    for name in names:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {method.lower()} {raw_target}")
        else:
            lines.append(f"{name}: {_header(collected, name)}")
    return _encode("\n".join(lines))


def signing_string(req: SignedRequest, headers_list: Sequence[str]) -> bytes:
    """The bytes that are signed: one `name: value` line per listed header, joined by "\\n".

    `(request-target)` becomes `<lower-case method> <raw target>`. Raises `NotAuthenticated` if a listed header is
    missing, repeated or holds control characters.
    """
    return _signing_string(req.method, req.raw_target, _collect(req.headers), [h.lower() for h in headers_list])


def _parse_key_id(value: str | None) -> KeyId:
    if value is None:
        _refuse("the keyId parameter is missing", "key_id")
    parts = value.split("/")
    if len(parts) != 3 or not _FINGERPRINT.fullmatch(parts[2]):
        _refuse("keyId must be <tenancy OCID>/<user OCID>/<lower-case colon-separated fingerprint>", "key_id")
    try:
        ids.expect(parts[0], "tenancy", field="keyId")
        ids.expect(parts[1], "user", field="keyId")
    except InvalidArgument:
        _refuse("keyId must start with a tenancy OCID and a user OCID", "key_id")
    return KeyId(parts[0], parts[1], parts[2])


def _decode_signature(value: str | None) -> bytes:
    if not value:
        _refuse("the signature parameter is missing", "signature_format")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        _refuse("the signature parameter is not base64", "signature_format")


def _required_headers(method: str) -> tuple[str, ...]:
    if method.upper() in _BODY_METHODS:
        return (REQUEST_TARGET, "host", *_BODY_HEADERS)
    return (REQUEST_TARGET, "host")


def _parse_headers_param(value: str | None, method: str) -> list[str]:
    if value is None:
        _refuse("the headers parameter is missing", "headers")
    names = [name.lower() for name in value.split()]
    if len(set(names)) != len(names):
        _refuse("the headers parameter lists a header more than once", "headers")
    if not any(name in names for name in _DATE_HEADERS):
        _refuse("the signature must cover date or x-date", "headers")
    for name in _required_headers(method):
        if name not in names:
            _refuse(f"the signature must cover {name} for {method.upper()} requests", "headers")
    return names


def _check_body(body: bytes, collected: Mapping[str, list[str]], names: Sequence[str]) -> None:
    if "x-content-sha256" in names:
        expected = base64.b64encode(hashlib.sha256(body).digest())
        sent = _header(collected, "x-content-sha256").encode("utf-8", "replace")
        if not hmac.compare_digest(expected, sent):
            _refuse("x-content-sha256 does not match the request body", "body_hash")
    elif body:
        # Only body methods must sign the hash; a body that no signature covers is refused, never passed on.
        _refuse("the request has a body but the signature does not cover x-content-sha256", "body_hash")
    if "content-length" in names:
        length = _header(collected, "content-length")
        # The length bound keeps int() clear of the 4300-digit conversion limit.
        if not (0 < len(length) <= 20 and length.isascii() and length.isdigit() and int(length) == len(body)):
            _refuse("content-length does not match the request body", "content_length")


def _check_date(value: str, name: str, now: datetime, max_skew: timedelta) -> None:
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        _refuse(f"the {name} header is not an HTTP date", "date")
    if sent.tzinfo is None:
        _refuse(f"the {name} header has no time zone; send GMT", "date")
    if abs(sent - now) > max_skew:
        seconds = int(max_skew.total_seconds())
        _refuse(f"the {name} header is more than {seconds} seconds away from the server clock", "date")


def verify(
    req: SignedRequest,
    *,
    lookup: Callable[[KeyId], rsa.RSAPublicKey | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=5),
) -> Verified:
    """Check the request's signature, body digest, length and date; return the key that signed it.

    `lookup` maps a KeyId to the user's uploaded public key, or None when the tenancy, user or fingerprint is unknown
    or the key was deleted. `now` must be timezone-aware. Cheap checks come first; the lookup and the RSA operation run
    only for a well-formed, fresh request. Raises `NotAuthenticated` on any failure.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    collected = _collect(req.headers)
    authorization = collected.get("authorization")
    if not authorization:
        _refuse("the authorization header is missing", "authorization")
    if len(authorization) > 1:
        _refuse("the authorization header appears more than once", "authorization")
    params = parse_authorization(authorization[0])
    if params.get("algorithm") != ALGORITHM:
        _refuse(f"the algorithm parameter must be {ALGORITHM}", "algorithm")
    if params.get("version", VERSION) != VERSION:
        _refuse(f"the version parameter must be {VERSION}", "version")
    key_id = _parse_key_id(params.get("keyId"))
    signature = _decode_signature(params.get("signature"))
    names = _parse_headers_param(params.get("headers"), req.method)
    message = _signing_string(req.method, req.raw_target, collected, names)
    _check_body(req.body, collected, names)
    for name in _DATE_HEADERS:
        if name in names:
            _check_date(_header(collected, name), name, now, max_skew)
    public_key = lookup(key_id)
    if not isinstance(public_key, rsa.RSAPublicKey):
        _refuse(_BAD_SIGNATURE, "key")
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise NotAuthenticated(reason=_BAD_SIGNATURE, check="signature") from None
    return Verified(key_id)


def _load_pem(pem: bytes) -> PublicKeyTypes:
    try:
        return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidArgument(field="key", reason="not a PEM-encoded public key") from exc


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Parse an uploaded API key: a PEM public key, RSA, at least MIN_KEY_BITS. Raises `InvalidArgument`."""
    key = _load_pem(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidArgument(field="key", reason="only RSA keys are supported")
    if key.key_size < MIN_KEY_BITS:
        raise InvalidArgument(field="key", reason=f"RSA keys must have at least {MIN_KEY_BITS} bits")
    return key


def fingerprint(public_key_pem: bytes) -> str:
    """The key's OCI fingerprint: lower-case, colon-separated MD5 of its DER SubjectPublicKeyInfo (oci-wire.md §1.3)."""
    der = _load_pem(public_key_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # MD5 is OCI's choice of identifier, not a security boundary: the signature check is what authenticates.
    return ":".join(f"{byte:02x}" for byte in hashlib.md5(der, usedforsecurity=False).digest())


def content_headers(body: bytes) -> dict[str, str]:
    """The `content-length` and `x-content-sha256` values a client sends (and signs) with `body`."""
    return {
        "content-length": str(len(body)),
        "x-content-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode("ascii"),
    }


def sign(
    req_method: str,
    raw_target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_id: str,
    private_key: rsa.RSAPrivateKey,
    signed_headers: Sequence[str] | None = None,
) -> str:
    """An Authorization value in the Python SDK's format, for tests and our own clients.

    Signs `signed_headers` (default: the SDK's list for the method) from `headers` exactly as given, so a caller can
    sign inconsistent requests on purpose; `body` is covered only through the `x-content-sha256` value in `headers`
    (see `content_headers`). Raises `ValueError` if a header to sign is absent.
    """
    names = list(signed_headers) if signed_headers is not None else _default_signed_headers(req_method)
    collected = _collect(headers)
    absent = [n for n in names if n.lower() != REQUEST_TARGET and n.lower() not in collected]
    if absent:
        raise ValueError(f"cannot sign absent headers: {', '.join(absent)}")
    try:
        message = _signing_string(req_method, raw_target, collected, [n.lower() for n in names])
    except BlockvaultError as exc:
        raise ValueError(exc.text) from exc
    signature = base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")
    return (
        f'Signature algorithm="{ALGORITHM}",headers="{" ".join(names)}",keyId="{key_id}",'
        f'signature="{signature}",version="{VERSION}"'
    )


def _default_signed_headers(method: str) -> list[str]:
    if method.upper() in _BODY_METHODS:
        return [*_GENERIC_HEADERS, *_BODY_HEADERS]
    return list(_GENERIC_HEADERS)
