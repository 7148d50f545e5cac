"""The only module that picks HTTP statuses and OCI error codes for domain errors (STYLE §2.3)."""

from __future__ import annotations

from blockvault.blockstorage.service import NotImplementedYet
from blockvault.errors import (
    AlreadyExists,
    BlockvaultError,
    CannotParseRequest,
    Conflict,
    IncorrectState,
    IntegrityError,
    InvalidArgument,
    InvalidatedRetryToken,
    MissingParameter,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RelatedResourceNotFound,
    Unavailable,
)

HIDDEN = "Authorization failed or requested resource not found."  # one body for absent and forbidden

# Most specific first. None as message: use the error's own text.
WIRE: list[tuple[type[BlockvaultError], int, str, str | None]] = [
    (NotImplementedYet, 501, "MethodNotImplemented", None),
    (MissingParameter, 400, "MissingParameter", None),
    (CannotParseRequest, 400, "CannotParseRequest", None),
    (InvalidArgument, 400, "InvalidParameter", None),
    (NotFound, 404, "NotAuthorizedOrNotFound", HIDDEN),
    (PermissionDenied, 404, "NotAuthorizedOrNotFound", HIDDEN),  # same bytes: no existence oracle
    (RelatedResourceNotFound, 400, "RelatedResourceNotAuthorizedOrNotFound", None),
    (NotAuthenticated, 401, "NotAuthenticated", None),
    (InvalidatedRetryToken, 409, "InvalidatedRetryToken", None),
    (AlreadyExists, 409, "NotAuthorizedOrResourceAlreadyExists", None),  # create conflicts (R7.28)
    (Conflict, 409, "Conflict", None),  # D1: never IncorrectState, which the CLI retries for ten minutes
    (IncorrectState, 409, "IncorrectState", None),
    (PreconditionFailed, 412, "NoEtagMatch", None),
    (Unavailable, 503, "ServiceUnavailable", None),
    # Permanent, so not a 5xx the CLI would retry; the body says plainly what failed.
    (IntegrityError, 409, "IntegrityError", None),
]


def to_wire(exc: BlockvaultError) -> tuple[int, dict[str, str]]:
    for cls, status, code, message in WIRE:
        if isinstance(exc, cls):
            return status, {"code": code, "message": message or exc.text}
    return 500, {"code": "InternalServerError", "message": "internal error"}
