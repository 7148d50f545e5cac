"""Identity: the tenancy, its compartments, users and their API keys, groups, memberships and policies.
Global (not per region). Every write bumps `generation()`, which tells the Authorizer to recompile its index.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from sqlalchemy import Engine, delete, insert, select, update

from blockvault import ids
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.engine import reading
from blockvault.db.repos import TableRepo
from blockvault.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from blockvault.iam import policy as policy_lang
from blockvault.iam import signing
from blockvault.iam.authz import Directory
from blockvault.iam.model import Compartment, Group, Membership, Policy, Tenancy, User

ADMIN_GROUP = "Administrators"
ADMIN_POLICY = "Tenant Admin Policy"
ADMIN_STATEMENT = "ALLOW GROUP Administrators to manage all-resources IN TENANCY"
# OCI makes the administrator write this one (R7.15-R7.16); blockvault starts with it so that customer-managed keys
# work out of the box. The security-compartment setup (R7.19) narrows or deletes it.
SERVICE_POLICY = "Block Volume Service Policy"
SERVICE_STATEMENT = "Allow service blockstorage to use keys in tenancy"
MAX_API_KEYS = 3  # OCI allows at most 3 API keys per user
MAX_STATEMENTS = 100  # OCI's default limit of statements per policy


@dataclass(frozen=True)
class ApiKey:
    user_id: str
    fingerprint: str
    key_pem: str
    state: str
    time_created: datetime


class IdentityService:
    def __init__(self, *, engine: Engine, clock: Clock, random: Callable[[int], bytes] = os.urandom) -> None:
        self._engine, self._clock, self._random = engine, clock, random
        self.tenancies = TableRepo(engine, tables.tenancies, Tenancy)
        self.compartments = TableRepo(engine, tables.compartments, Compartment)
        self.users = TableRepo(engine, tables.users, User)
        self.groups = TableRepo(engine, tables.groups, Group)
        self.memberships = TableRepo(engine, tables.memberships, Membership)
        self._key_cache: dict[tuple[str, str, str], RSAPublicKey] = {}
        self._generation = 0
        self._gen_lock = threading.Lock()

    # --- change tracking (for the Authorizer) --------------------------------------------------------------------

    def generation(self) -> int:
        return self._generation

    def _changed(self) -> None:
        with self._gen_lock:
            self._generation += 1

    def directory(self) -> Directory:
        """Everything authorization reads, in one consistent read."""
        with reading(self._engine) as conn:
            tenancy = conn.execute(select(tables.tenancies)).first()
            comps = conn.execute(
                select(
                    tables.compartments.c.id,
                    tables.compartments.c.parent_id,
                    tables.compartments.c.name,
                    tables.compartments.c.state,
                )
            ).all()
            users = conn.execute(select(tables.users.c.id, tables.users.c.name, tables.users.c.state)).all()
            groups = {r.id: r.name for r in conn.execute(select(tables.groups.c.id, tables.groups.c.name)).all()}
            members = conn.execute(select(tables.memberships.c.user_id, tables.memberships.c.group_id)).all()
            pols = conn.execute(
                select(tables.policies.c.id, tables.policies.c.compartment_id, tables.policies.c.statements).where(
                    tables.policies.c.state == "ACTIVE"
                )
            ).all()
        root = tenancy.id if tenancy is not None else ""
        parent: dict[str, str | None] = {root: None}
        names: dict[str, str] = {root: tenancy.name if tenancy is not None else ""}
        for c in comps:
            parent[c.id] = c.parent_id
            names[c.id] = c.name
        user_groups: dict[str, list[tuple[str, str]]] = {}
        for m in members:
            if m.group_id in groups:
                user_groups.setdefault(m.user_id, []).append((m.group_id, groups[m.group_id]))
        return Directory(
            tenancy_id=root,
            tree=policy_lang.CompartmentTree(
                root, parent, names, frozenset(c.id for c in comps if c.state != "ACTIVE")
            ),
            policies=tuple((r.id, r.compartment_id, tuple(json.loads(r.statements))) for r in pols),
            user_names={u.id: u.name for u in users if u.state == "ACTIVE"},
            user_groups={k: tuple(v) for k, v in user_groups.items()},
        )

    # --- tenancy and bootstrap -----------------------------------------------------------------------------------

    def tenancy(self) -> Tenancy | None:
        found = self.tenancies.find()
        return found[0] if found else None

    def _tenancy_id(self) -> str:
        tenancy = self.tenancy()
        if tenancy is None:
            raise NotFound(kind="tenancy", ident="")
        return tenancy.id

    def bootstrap(
        self, *, name: str, home_region: str, admin_name: str, admin_public_pem: bytes
    ) -> tuple[Tenancy, User, str]:
        """First start: the tenancy (also the root compartment) and an admin user with one API key, who is an
        ordinary member of the Administrators group that `manage all-resources in tenancy` governs."""
        now = self._clock.now()
        tenancy = Tenancy(
            id=ids.new("tenancy", random=self._random), name=name, home_region=home_region, time_created=now
        )
        admin = User(
            id=ids.new("user", random=self._random),
            tenancy_id=tenancy.id,
            name=admin_name,
            description="bootstrap administrator",
            state="ACTIVE",
            time_created=now,
        )
        with self._engine.begin() as conn:
            self.tenancies.insert(tenancy, conn)
            self.users.insert(admin, conn)
        fp = self.upload_api_key(admin.id, admin_public_pem)
        self.ensure_administrators(admin.id)
        return tenancy, admin, fp

    def ensure_administrators(self, admin_user_id: str) -> None:
        """The Administrators group, the admin's membership, the tenant admin policy and the Block Volume service
        policy, unless a group of that name already exists (an operator's later changes are theirs to keep)."""
        tenancy_id = self._tenancy_id()
        if self.groups.find(tables.groups.c.name == ADMIN_GROUP):
            return
        group = self.create_group(ADMIN_GROUP, "tenancy administrators")
        self.add_user_to_group(admin_user_id, group.id)
        self.create_policy(tenancy_id, ADMIN_POLICY, "administrators manage everything", [ADMIN_STATEMENT])
        self.create_policy(tenancy_id, SERVICE_POLICY, "Block Volume may use Vault keys", [SERVICE_STATEMENT])

    # --- API keys --------------------------------------------------------------------------------------------------

    def upload_api_key(self, user_id: str, public_pem: bytes) -> str:
        key = signing.load_public_key(public_pem)
        del key
        fp = signing.fingerprint(public_pem)
        self.get_user(user_id)
        with self._engine.begin() as conn:
            existing = conn.execute(select(tables.api_keys).where(tables.api_keys.c.user_id == user_id)).all()
            if any(r.fingerprint == fp for r in existing):
                raise AlreadyExists(kind="API key", ident=fp)
            if len(existing) >= MAX_API_KEYS:
                raise InvalidArgument(field="key", reason=f"a user may have at most {MAX_API_KEYS} API keys")
            conn.execute(
                insert(tables.api_keys).values(
                    user_id=user_id,
                    fingerprint=fp,
                    key_pem=public_pem.decode(),
                    state="ACTIVE",
                    time_created=self._clock.now().isoformat(),
                )
            )
        self._changed()
        return fp

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        self.get_user(user_id)
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(tables.api_keys)
                .where(tables.api_keys.c.user_id == user_id)
                .order_by(tables.api_keys.c.time_created)
            ).all()
        return [
            ApiKey(r.user_id, r.fingerprint, r.key_pem, r.state, datetime.fromisoformat(r.time_created)) for r in rows
        ]

    def delete_api_key(self, user_id: str, fingerprint: str) -> None:
        self.get_user(user_id)
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(tables.api_keys).where(
                    tables.api_keys.c.user_id == user_id, tables.api_keys.c.fingerprint == fingerprint
                )
            )
        if result.rowcount != 1:
            raise NotFound(kind="API key", ident=fingerprint)
        self._key_cache = {k: v for k, v in self._key_cache.items() if k[1] != user_id or k[2] != fingerprint}
        self._changed()

    def public_key(self, key_id: signing.KeyId) -> RSAPublicKey | None:
        """The signer's uploaded public key, or None (unknown tenancy, user or fingerprint; inactive user)."""
        cache_key = (key_id.tenancy_id, key_id.user_id, key_id.fingerprint)
        with reading(self._engine) as conn:
            row = conn.execute(
                select(tables.api_keys.c.key_pem, tables.users.c.tenancy_id, tables.users.c.state)
                .join(tables.users, tables.users.c.id == tables.api_keys.c.user_id)
                .where(
                    tables.api_keys.c.user_id == key_id.user_id,
                    tables.api_keys.c.fingerprint == key_id.fingerprint,
                    tables.api_keys.c.state == "ACTIVE",
                )
            ).first()
        if row is None or row.tenancy_id != key_id.tenancy_id or row.state != "ACTIVE":
            self._key_cache.pop(cache_key, None)
            return None
        cached = self._key_cache.get(cache_key)
        if cached is None:
            cached = signing.load_public_key(row.key_pem.encode())
            self._key_cache[cache_key] = cached
        return cached

    # --- compartments ----------------------------------------------------------------------------------------------

    def compartment_exists(self, compartment_id: str) -> bool:
        tenancy = self.tenancy()
        if tenancy is not None and compartment_id == tenancy.id:
            return True
        compartment = self.compartments.get(compartment_id)
        return compartment is not None and compartment.state == "ACTIVE"

    def create_compartment(self, parent_id: str, name: str, description: str) -> Compartment:
        if not self.compartment_exists(parent_id):
            raise NotFound(kind="compartment", ident=parent_id)
        _check_name(name)
        siblings = self.compartments.find(tables.compartments.c.parent_id == parent_id)
        if any(c.name.lower() == name.lower() and c.state != "DELETED" for c in siblings):
            raise AlreadyExists(kind="compartment", ident=name)
        compartment = Compartment(
            id=ids.new("compartment", random=self._random),
            parent_id=parent_id,
            name=name,
            description=description,
            state="ACTIVE",
            time_created=self._clock.now(),
        )
        self.compartments.insert(compartment)
        self._changed()
        return compartment

    def get_compartment(self, compartment_id: str) -> Compartment:
        tenancy = self.tenancy()
        if tenancy is not None and compartment_id == tenancy.id:
            return Compartment(
                id=tenancy.id,
                parent_id=None,
                name=tenancy.name,
                description="root compartment",
                state="ACTIVE",
                time_created=tenancy.time_created,
            )
        compartment = self.compartments.get(compartment_id)
        if compartment is None:
            raise NotFound(kind="compartment", ident=compartment_id)
        return compartment

    def list_compartments(self, parent_id: str, *, subtree: bool = False) -> list[Compartment]:
        found = self.compartments.find(
            tables.compartments.c.parent_id == parent_id, order_by=[tables.compartments.c.time_created]
        )
        if subtree:
            for child in list(found):
                found += self.list_compartments(child.id, subtree=True)
        return found

    def update_compartment(self, compartment_id: str, name: str | None, description: str | None) -> Compartment:
        compartment = self.get_compartment(compartment_id)
        if compartment.parent_id is None or compartment.state != "ACTIVE":
            raise NotFound(kind="compartment", ident=compartment_id)
        if name is not None and name.lower() != compartment.name.lower():
            _check_name(name)
            siblings = self.compartments.find(tables.compartments.c.parent_id == compartment.parent_id)
            if any(c.name.lower() == name.lower() and c.state != "DELETED" for c in siblings):
                raise AlreadyExists(kind="compartment", ident=name)
        updated = replace(
            compartment,
            name=compartment.name if name is None else name,
            description=compartment.description if description is None else description,
        )
        self.compartments.save(updated, expect={"state": "ACTIVE"})
        self._changed()
        return updated

    def delete_compartment(self, compartment_id: str, *, in_use: Callable[[str], bool]) -> None:
        """Only an empty compartment goes (no active children, policies or resources: `in_use` asks the regions)."""
        compartment = self.get_compartment(compartment_id)
        if compartment.parent_id is None or compartment.state != "ACTIVE":
            raise NotFound(kind="compartment", ident=compartment_id)
        children = [c for c in self.list_compartments(compartment_id) if c.state == "ACTIVE"]
        pols = self.list_policies(compartment_id)
        if children or pols or in_use(compartment_id):
            raise Conflict(
                kind="compartment",
                ident=compartment_id,
                reason="it is not empty (compartments, policies, volumes, backups, vaults or keys remain)",
            )
        self.compartments.save(replace(compartment, state="DELETED"), expect={"state": "ACTIVE"})
        self._changed()

    # --- users -----------------------------------------------------------------------------------------------------

    def get_user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise NotFound(kind="user", ident=user_id)
        return user

    def list_users(self) -> list[User]:
        return self.users.find(order_by=[tables.users.c.time_created])

    def create_user(self, name: str, description: str) -> User:
        _check_name(name)
        if self.users.find(tables.users.c.name == name):
            raise AlreadyExists(kind="user", ident=name)
        user = User(
            id=ids.new("user", random=self._random),
            tenancy_id=self._tenancy_id(),
            name=name,
            description=description,
            state="ACTIVE",
            time_created=self._clock.now(),
        )
        self.users.insert(user)
        self._changed()
        return user

    def update_user(self, user_id: str, description: str | None) -> User:
        user = self.get_user(user_id)
        updated = replace(user, description=user.description if description is None else description)
        self.users.save(updated)
        self._changed()
        return updated

    def delete_user(self, user_id: str) -> None:
        """The user, its API keys and its memberships go at once: its signatures stop working immediately."""
        self.get_user(user_id)
        with self._engine.begin() as conn:
            conn.execute(delete(tables.api_keys).where(tables.api_keys.c.user_id == user_id))
            conn.execute(delete(tables.memberships).where(tables.memberships.c.user_id == user_id))
            conn.execute(delete(tables.users).where(tables.users.c.id == user_id))
        self._key_cache = {k: v for k, v in self._key_cache.items() if k[1] != user_id}
        self._changed()

    # --- groups and memberships ------------------------------------------------------------------------------------

    def get_group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            raise NotFound(kind="group", ident=group_id)
        return group

    def list_groups(self) -> list[Group]:
        return self.groups.find(order_by=[tables.groups.c.time_created])

    def create_group(self, name: str, description: str) -> Group:
        _check_name(name)
        if any(g.name.lower() == name.lower() for g in self.groups.find()):
            raise AlreadyExists(kind="group", ident=name)
        group = Group(
            id=ids.new("group", random=self._random),
            tenancy_id=self._tenancy_id(),
            name=name,
            description=description,
            state="ACTIVE",
            time_created=self._clock.now(),
        )
        self.groups.insert(group)
        self._changed()
        return group

    def update_group(self, group_id: str, description: str | None) -> Group:
        group = self.get_group(group_id)
        updated = replace(group, description=group.description if description is None else description)
        self.groups.save(updated)
        self._changed()
        return updated

    def delete_group(self, group_id: str) -> None:
        """OCI: a group must be empty before it can be deleted."""
        self.get_group(group_id)
        if self.memberships.find(tables.memberships.c.group_id == group_id):
            raise Conflict(kind="group", ident=group_id, reason="it still has members; remove them first")
        with self._engine.begin() as conn:
            conn.execute(delete(tables.groups).where(tables.groups.c.id == group_id))
        self._changed()

    def add_user_to_group(self, user_id: str, group_id: str) -> Membership:
        self.get_user(user_id)
        self.get_group(group_id)
        existing = self.memberships.find(
            tables.memberships.c.user_id == user_id, tables.memberships.c.group_id == group_id
        )
        if existing:
            raise AlreadyExists(kind="membership", ident=f"{user_id} in {group_id}")
        membership = Membership(
            id=ids.new("groupmembership", random=self._random),
            user_id=user_id,
            group_id=group_id,
            state="ACTIVE",
            time_created=self._clock.now(),
        )
        self.memberships.insert(membership)
        self._changed()
        return membership

    def get_membership(self, membership_id: str) -> Membership:
        membership = self.memberships.get(membership_id)
        if membership is None:
            raise NotFound(kind="membership", ident=membership_id)
        return membership

    def list_memberships(self, user_id: str | None = None, group_id: str | None = None) -> list[Membership]:
        cond = []
        if user_id:
            cond.append(tables.memberships.c.user_id == user_id)
        if group_id:
            cond.append(tables.memberships.c.group_id == group_id)
        return self.memberships.find(*cond, order_by=[tables.memberships.c.time_created])

    def remove_membership(self, membership_id: str) -> None:
        self.get_membership(membership_id)
        with self._engine.begin() as conn:
            conn.execute(delete(tables.memberships).where(tables.memberships.c.id == membership_id))
        self._changed()

    # --- policies --------------------------------------------------------------------------------------------------

    @staticmethod
    def _policy(row: object) -> Policy:
        r = row._mapping  # type: ignore[attr-defined]
        return Policy(
            id=r["id"],
            compartment_id=r["compartment_id"],
            name=r["name"],
            description=r["description"],
            statements=list(json.loads(r["statements"])),
            state=r["state"],
            time_created=datetime.fromisoformat(r["time_created"]),
            version_date=r["version_date"],
        )

    def check_statements(self, compartment_id: str, statements: object) -> list[str]:
        """Each statement must parse and its location must name a compartment at or below the policy's; the
        error names the statement's index and the offending word."""
        if not isinstance(statements, list) or not statements:
            raise InvalidArgument(field="statements", reason="must be a non-empty array of strings")
        if len(statements) > MAX_STATEMENTS:
            raise InvalidArgument(field="statements", reason=f"at most {MAX_STATEMENTS} statements per policy")
        tree = self.directory().tree
        out: list[str] = []
        for i, text in enumerate(statements):
            field_name = f"statements[{i}]"
            if not isinstance(text, str):
                raise InvalidArgument(field=field_name, reason="must be a string")
            st = policy_lang.parse(text, field_name=field_name)
            if tree.resolve(st.location, compartment_id) is None:
                raise InvalidArgument(
                    field=field_name,
                    reason=f"location {policy_lang.render_location(st.location)!r} is not the policy's compartment "
                    "or a compartment below it",
                )
            out.append(text)
        return out

    def get_policy(self, policy_id: str) -> Policy:
        with reading(self._engine) as conn:
            row = conn.execute(select(tables.policies).where(tables.policies.c.id == policy_id)).first()
        if row is None or row.state != "ACTIVE":
            raise NotFound(kind="policy", ident=policy_id)
        return self._policy(row)

    def list_policies(self, compartment_id: str | None = None) -> list[Policy]:
        stmt = select(tables.policies).where(tables.policies.c.state == "ACTIVE")
        if compartment_id is not None:
            stmt = stmt.where(tables.policies.c.compartment_id == compartment_id)
        with reading(self._engine) as conn:
            rows = conn.execute(stmt.order_by(tables.policies.c.time_created)).all()
        return [self._policy(r) for r in rows]

    def create_policy(
        self, compartment_id: str, name: str, description: str, statements: object, version_date: str | None = None
    ) -> Policy:
        if not self.compartment_exists(compartment_id):
            raise NotFound(kind="compartment", ident=compartment_id)
        _check_name(name)
        checked = self.check_statements(compartment_id, statements)
        if any(p.name.lower() == name.lower() for p in self.list_policies()):
            raise AlreadyExists(kind="policy", ident=name)
        pol = Policy(
            id=ids.new("policy", random=self._random),
            compartment_id=compartment_id,
            name=name,
            description=description,
            statements=checked,
            state="ACTIVE",
            time_created=self._clock.now(),
            version_date=version_date,
        )
        with self._engine.begin() as conn:
            conn.execute(
                insert(tables.policies).values(
                    id=pol.id,
                    compartment_id=pol.compartment_id,
                    name=pol.name,
                    description=pol.description,
                    statements=json.dumps(pol.statements),
                    version_date=pol.version_date,
                    state=pol.state,
                    time_created=pol.time_created.isoformat(),
                )
            )
        self._changed()
        return pol

    def update_policy(
        self, policy_id: str, *, description: str | None, statements: object | None, version_date: str | None
    ) -> Policy:
        pol = self.get_policy(policy_id)
        checked = pol.statements if statements is None else self.check_statements(pol.compartment_id, statements)
        updated = replace(
            pol,
            description=pol.description if description is None else description,
            statements=checked,
            version_date=pol.version_date if version_date is None else version_date,
        )
        with self._engine.begin() as conn:
            conn.execute(
                update(tables.policies)
                .where(tables.policies.c.id == policy_id)
                .values(
                    description=updated.description,
                    statements=json.dumps(updated.statements),
                    version_date=updated.version_date,
                )
            )
        self._changed()
        return updated

    def delete_policy(self, policy_id: str) -> None:
        self.get_policy(policy_id)
        with self._engine.begin() as conn:
            conn.execute(delete(tables.policies).where(tables.policies.c.id == policy_id))
        self._changed()


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
        raise InvalidArgument(field="name", reason="1 to 100 printable characters")


__all__: Sequence[str] = ["ADMIN_GROUP", "ApiKey", "IdentityService"]
