"""The CLI's exit-code table (STYLE §2.3: the CLI is one of the three edges that translate errors).

    0   success
    1   anything not classified below (unexpected server answer, e.g. 405)
    2   usage: argparse errors, contradictory flags, bad local configuration; --wait-for-state timed out
        (2 on timeout is what the real `oci` CLI does)
    10  the request was rejected as invalid: 400 InvalidParameter / MissingParameter / CannotParseRequest, ...
    11  not found or not authorized: 404 NotAuthorizedOrNotFound, 400 RelatedResourceNotAuthorizedOrNotFound, 403
    12  state conflicts: 409 Conflict / IncorrectState / ..., 412 NoEtagMatch
    13  401 NotAuthenticated (bad key, fingerprint, clock skew)
    14  the server is unreachable or failing: connection errors, 429, 5xx
    90  integrity: stored data failed authentication (code IntegrityError / DecryptionFailed); never retried
    130 interrupted (Ctrl-C)

Two lookups share the table: :func:`for_api_error` for answers from the server (status + OCI code), and
:func:`for_error` for exceptions raised on the client side (domain errors and the CLI's own).
"""

from __future__ import annotations

from blockvault import errors
from blockvault.cli import client

OK = 0
GENERIC = 1
USAGE = 2
WAIT_TIMEOUT = 2
INVALID = 10
NOT_FOUND = 11
CONFLICT = 12
NOT_AUTHENTICATED = 13
UNAVAILABLE = 14
INTEGRITY = 90
INTERRUPTED = 130

# Codes that decide on their own, whatever the status (most specific first).
_BY_CODE: dict[str, int] = {
    "IntegrityError": INTEGRITY,
    "DecryptionFailed": INTEGRITY,
    "InvalidParameter": INVALID,
    "MissingParameter": INVALID,
    "CannotParseRequest": INVALID,
    "RelatedResourceNotAuthorizedOrNotFound": NOT_FOUND,
    "NotAuthorizedOrNotFound": NOT_FOUND,
    "Conflict": CONFLICT,
    "IncorrectState": CONFLICT,
    "NoEtagMatch": CONFLICT,
    "NotAuthenticated": NOT_AUTHENTICATED,
    "MethodNotImplemented": INVALID,  # a feature of a later release: the request cannot succeed, the server is fine
}

# Fallback by status when the code is unknown or absent (non-JSON error bodies have no code).
_BY_STATUS: dict[int, int] = {
    400: INVALID,
    401: NOT_AUTHENTICATED,
    403: NOT_FOUND,
    404: NOT_FOUND,
    409: CONFLICT,
    412: CONFLICT,
    429: UNAVAILABLE,
}

# Client-side exceptions, most specific first (IncorrectState is not a Conflict subclass in errors.py).
_BY_CLASS: list[tuple[type[errors.BlockvaultError], int]] = [
    (client.UsageError, USAGE),
    (client.ConfigError, USAGE),
    (client.WaitTimeout, WAIT_TIMEOUT),
    (client.ConnectionFailed, UNAVAILABLE),
    (client.ProtocolError, GENERIC),
    (errors.IntegrityError, INTEGRITY),
    (errors.InvalidArgument, INVALID),
    (errors.NotFound, NOT_FOUND),
    (errors.PermissionDenied, NOT_FOUND),
    (errors.RelatedResourceNotFound, NOT_FOUND),
    (errors.NotAuthenticated, NOT_AUTHENTICATED),
    (errors.Conflict, CONFLICT),
    (errors.IncorrectState, CONFLICT),
    (errors.PreconditionFailed, CONFLICT),
    (errors.Unavailable, UNAVAILABLE),
]


def for_api_error(status: int | None, code: str | None) -> int:
    """Exit code for an error answer from the server (``status`` None = no answer at all)."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status is None:
        return UNAVAILABLE
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return UNAVAILABLE
    return GENERIC


def for_error(exc: BaseException) -> int:
    """Exit code for any error the CLI raises: server answers by status/code, the rest by class."""
    if isinstance(exc, client.ApiError):
        return for_api_error(exc.status, exc.code)
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    return GENERIC
