"""Authorization: the one function every operation asks before it acts (docs/design/iam.md).

`Authorizer.authorize(principal, Request)` evaluates the tenancy's policies (iam/policy.py) for the permissions the
operation needs (iam/operations.py) in the request's compartment; a refusal is `PermissionDenied`, which the API
turns into the same bytes as `NotFound` (404 NotAuthorizedOrNotFound). Deny by default.

The directory (compartment tree, groups, memberships, policies) is read from a `DirectorySource` and compiled into a
`PolicyIndex` once per directory generation: every identity write bumps the generation, so a change is in force for
the very next request of this process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from blockvault import ids
from blockvault.errors import PermissionDenied
from blockvault.iam import operations
from blockvault.iam.model import Principal
from blockvault.iam.policy import CompartmentTree, PolicyIndex, Subject, Value, compile_policies, suggest

BLOCKSTORAGE = "blockstorage"  # the service principal of Block Volume (R7.15)


@dataclass(frozen=True)
class Request:
    operation: str  # OCI operation name, e.g. "CreateVolume"
    compartment_id: str | None = None
    target_id: str | None = None
    variables: Mapping[str, Value] = field(default_factory=dict)  # e.g. {"request.kms-key.id": ...}
    permissions: tuple[str, ...] | None = None  # overrides the operation table (secondary checks)


@dataclass(frozen=True)
class Directory:
    """What authorization needs to know about identity, read at one instant."""

    tenancy_id: str
    tree: CompartmentTree
    policies: tuple[tuple[str, str, tuple[str, ...]], ...]  # (policy id, attached compartment, statements)
    user_names: Mapping[str, str]
    user_groups: Mapping[str, tuple[tuple[str, str], ...]]  # user id -> ((group id, group name), ...)


class DirectorySource(Protocol):
    def generation(self) -> int: ...

    def directory(self) -> Directory: ...


@dataclass(frozen=True)
class Missing:
    """One permission a check lacked, and a statement that would grant it."""

    principal: str  # "user <name>" or "service blockstorage"
    permission: str
    compartment_id: str
    statement: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    operation: str
    missing: tuple[Missing, ...] = ()
    granted_by: tuple[str, ...] = ()  # the statements that allowed each permission

    def to_json(self, *, show_compartments: bool = True) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "operation": self.operation,
            "missing": [
                {
                    "principal": m.principal,
                    "permission": m.permission,
                    **({"compartmentId": m.compartment_id} if show_compartments else {}),
                    "statement": m.statement,
                }
                for m in self.missing
            ],
            "grantedBy": list(self.granted_by),
        }


_TARGET_VARS = {
    "key": "target.key.id",
    "vault": "target.vault.id",
    "volume": "target.volume.id",
    "bootvolume": "target.boot-volume.id",
    "volumebackup": "target.volume-backup.id",
    "bootvolumebackup": "target.boot-volume-backup.id",
    "user": "target.user.id",
    "group": "target.group.id",
    "policy": "target.policy.id",
}


@dataclass
class _State:
    generation: int
    directory: Directory
    index: PolicyIndex


class Authorizer:
    def __init__(self, source: DirectorySource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._state: _State | None = None

    # --- state -------------------------------------------------------------------------------------------------

    def _current(self) -> _State:
        gen = self._source.generation()
        state = self._state
        if state is not None and state.generation == gen:
            return state
        with self._lock:
            state = self._state
            if state is None or state.generation != gen:
                directory = self._source.directory()
                state = _State(gen, directory, compile_policies(directory.tree, directory.policies))
                self._state = state
        return state

    @property
    def tenancy_id(self) -> str:
        return self._current().directory.tenancy_id

    def compartment_path(self, compartment_id: str) -> str:
        return self._current().directory.tree.path(compartment_id)

    def _subject(self, d: Directory, user_id: str) -> Subject:
        groups = d.user_groups.get(user_id, ())
        return Subject(
            user_id=user_id,
            group_ids=frozenset(g for g, _ in groups),
            group_names=frozenset(n.lower() for _, n in groups),
        )

    def _variables(self, d: Directory, request: Request, compartment_id: str, user_id: str | None) -> dict[str, Value]:
        env: dict[str, Value] = {"request.operation": request.operation}
        if user_id is not None:
            env["request.user.id"] = user_id
            env["request.user.name"] = d.user_names.get(user_id, "")
            env["request.groups.id"] = tuple(g for g, _ in d.user_groups.get(user_id, ()))
            env["request.principal.type"] = "user"
        else:
            env["request.principal.type"] = "service"
        env["target.compartment.id"] = compartment_id
        name = d.tree.name.get(compartment_id)
        if name is not None:
            env["target.compartment.name"] = name
        if request.target_id:
            try:
                rtype = ids.parse(request.target_id).resource_type
            except Exception:  # noqa: BLE001 - a malformed id just carries no target variable
                rtype = ""
            var = _TARGET_VARS.get(rtype)
            if var:
                env[var] = request.target_id
        env.update(request.variables)
        return env

    # --- checks ------------------------------------------------------------------------------------------------

    def _evaluate(
        self, who: Subject, label: str, request: Request, *, user_id: str | None, subject_text: str
    ) -> Decision:
        state = self._current()
        d = state.directory
        perms = request.permissions if request.permissions is not None else operations.required(request.operation)
        if not perms:
            return Decision(True, request.operation)
        compartment_id = request.compartment_id or d.tenancy_id
        env = self._variables(d, request, compartment_id, user_id)
        missing: list[Missing] = []
        granted: list[str] = []
        key_id = env.get("target.key.id")
        vault_id = env.get("target.vault.id")
        for perm in perms:
            rule = state.index.find(who, perm, compartment_id, env)
            if rule is not None:
                granted.append(rule.text)
                continue
            missing.append(
                Missing(
                    label,
                    perm,
                    compartment_id,
                    suggest(
                        subject=subject_text,
                        permission=perm,
                        location=d.tree.path(compartment_id),
                        key_id=key_id if isinstance(key_id, str) else None,
                        vault_id=vault_id if isinstance(vault_id, str) else None,
                    ),
                )
            )
        return Decision(not missing, request.operation, tuple(missing), tuple(granted))

    def _user_subject_text(self, d: Directory, user_id: str) -> str:
        groups = d.user_groups.get(user_id, ())
        if groups:
            return "group " + sorted(n for _, n in groups)[0]
        return "group <a group of " + d.user_names.get(user_id, user_id) + ">"

    def subject_text(self, user_id: str) -> str:
        """How a hint names the user: `group <one of its groups>`."""
        return self._user_subject_text(self._current().directory, user_id)

    def decide(self, principal: Principal, request: Request) -> Decision:
        """The decision for a user principal, with what is missing when denied."""
        d = self._current().directory
        if principal.tenancy_id != d.tenancy_id or principal.user_id not in d.user_names:
            return Decision(False, request.operation)
        if request.operation in operations.SELF and request.target_id == principal.user_id:
            return Decision(True, request.operation)
        return self._evaluate(
            self._subject(d, principal.user_id),
            "user " + d.user_names[principal.user_id],
            request,
            user_id=principal.user_id,
            subject_text=self._user_subject_text(d, principal.user_id),
        )

    def decide_service(self, service: str, request: Request) -> Decision:
        """The decision for a service principal (`service blockstorage`) acting on a user's behalf."""
        return self._evaluate(
            Subject(service=service), f"service {service}", request, user_id=None, subject_text=f"service {service}"
        )

    def authorize(self, principal: Principal, request: Request) -> None:
        if not self.decide(principal, request).allowed:
            raise PermissionDenied(kind=request.operation, ident=request.target_id or "")

    def allowed(self, principal: Principal, request: Request) -> bool:
        return self.decide(principal, request).allowed

    def explain(self, user_id: str, request: Request) -> Decision:
        """`blockvault iam explain`: the decision for any user (by id), as if that user had asked."""
        return self.decide(Principal(self.tenancy_id, user_id, ""), request)

    def key_delegation(
        self,
        principal: Principal,
        *,
        operation: str,
        key_id: str,
        key_compartment_id: str,
        vault_id: str,
        service: str = BLOCKSTORAGE,
    ) -> Decision:
        """R7.13-R7.19: the caller needs KEY_ASSOCIATE (`use key-delegate`, or `use keys`) on the key and the service
        needs `use keys` on it, both in the key's compartment, with target.key.id and target.vault.id set."""
        variables: dict[str, Value] = {
            "target.key.id": key_id,
            "target.vault.id": vault_id,
            "request.kms-key.id": key_id,
        }
        user = self.decide(
            principal,
            Request(
                operation, key_compartment_id, key_id, variables, permissions=operations.OPERATIONS["AssociateKey"]
            ),
        )
        svc = self.decide_service(
            service,
            Request(
                operation, key_compartment_id, key_id, variables, permissions=operations.OPERATIONS["ServiceUseKey"]
            ),
        )
        return Decision(
            user.allowed and svc.allowed, operation, user.missing + svc.missing, user.granted_by + svc.granted_by
        )


def generic_key_hint(operation: str, key_id: str, subject_text: str, service: str = BLOCKSTORAGE) -> list[str]:
    """The hint for a key the caller may not inspect (or that does not exist): the two statements of R7.19 with the
    key's compartment left for the reader, so the message is the same whether the key exists or not."""
    del operation
    where = f"where target.key.id = '{key_id}'"
    return [
        f"Allow {subject_text} to use key-delegate in compartment <the key's compartment> {where}",
        f"Allow service {service} to use keys in compartment <the key's compartment> {where}",
    ]


def user_subject_text(authz: Authorizer, principal: Principal) -> str:
    return authz.subject_text(principal.user_id)


def statements_of(decision: Decision) -> Sequence[str]:
    return [m.statement for m in decision.missing]
