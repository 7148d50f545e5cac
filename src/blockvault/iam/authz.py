"""Authorization: the one function every operation asks before it acts.

Today's rule (the IAM issue replaces the body with policy evaluation, keeping the signature): an authenticated
user of the tenancy may do everything; anything else is denied. Deny by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from blockvault.errors import PermissionDenied
from blockvault.iam.model import Principal


@dataclass(frozen=True)
class Request:
    operation: str  # OCI operation name, e.g. "CreateVolume"
    compartment_id: str | None = None
    target_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)  # e.g. {"request.kms-key.id": ...}


class Authorizer:
    def __init__(self, tenancy_id: str) -> None:
        self._tenancy_id = tenancy_id

    def authorize(self, principal: Principal, request: Request) -> None:
        if principal.tenancy_id != self._tenancy_id:
            raise PermissionDenied(kind=request.operation, ident=request.target_id or "")
