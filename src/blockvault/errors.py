"""The one error hierarchy. Domain code raises these; only the faces pick HTTP statuses, exit codes or errno.

BlockvaultError
├── InvalidArgument            bad value or format (400 InvalidParameter)
│   ├── MissingParameter       required field absent (400 MissingParameter)
│   └── CannotParseRequest     body is not JSON (400 CannotParseRequest)
├── NotFound                   resource in the path is absent (404 NotAuthorizedOrNotFound)
├── PermissionDenied           caller may not see it (404, byte for byte the same as NotFound)
├── RelatedResourceNotFound    a resource named in the body is absent or forbidden (400, D6)
├── NotAuthenticated           signature or key problems (401)
├── Conflict                   permanent state conflict (409 Conflict, never retried by the CLI)
│   ├── KeyUnusable            the key protecting the data is disabled, pending deletion or deleted (D1)
│   └── InvalidatedRetryToken  opc-retry-token reused for another request (409)
├── IncorrectState             transient state conflict (409 IncorrectState, the CLI retries it)
├── PreconditionFailed         if-match mismatch (412 NoEtagMatch)
├── Unavailable                a dependency is down, retryable (503)
└── IntegrityError             authentication of stored data failed; never retried
    └── DecryptionFailed       opaque AEAD failure (pyca's InvalidTag)
"""

from __future__ import annotations

from typing import Any, ClassVar


class BlockvaultError(Exception):
    """Root of every error blockvault raises on purpose."""

    message: ClassVar[str] = "internal error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.context = context
        if message is None:
            try:
                message = self.message.format(**context)
            except (KeyError, IndexError):
                message = self.message
        super().__init__(message)

    @property
    def text(self) -> str:
        return str(self.args[0]) if self.args else self.message


class InvalidArgument(BlockvaultError):
    message = "invalid value for {field}: {reason}"


class MissingParameter(InvalidArgument):
    message = "missing required parameter {field}"


class CannotParseRequest(InvalidArgument):
    message = "the request body is not valid JSON: {reason}"


class NotFound(BlockvaultError):
    message = "{kind} {ident} not found"


class PermissionDenied(BlockvaultError):
    message = "not authorized for {kind} {ident}"


class RelatedResourceNotFound(BlockvaultError):
    message = "the {field} {ident} does not exist or you are not authorized to use it"


class NotAuthenticated(BlockvaultError):
    message = "the required information to complete authentication was not provided or was incorrect: {reason}"


class Conflict(BlockvaultError):
    message = "{kind} {ident} conflicts with the current state: {reason}"


class KeyUnusable(Conflict):
    message = "key {key_id} is {state}: the data it protects cannot be used until the key is enabled"


class AlreadyExists(Conflict):
    """A create whose name is taken (409 NotAuthorizedOrResourceAlreadyExists)."""

    message = "a {kind} named {ident!r} already exists"


class InvalidatedRetryToken(Conflict):
    message = "the opc-retry-token was already used for a different request"


class IncorrectState(BlockvaultError):
    message = "{kind} {ident} is {state}; expected one of {allowed}"


class PreconditionFailed(BlockvaultError):
    message = "the if-match value does not match the current etag of {kind} {ident}"


class Unavailable(BlockvaultError):
    message = "{dependency} unavailable"
    retryable = True


class IntegrityError(BlockvaultError):
    message = "integrity check failed for {what}"


class DecryptionFailed(IntegrityError):
    message = "decryption failed"
