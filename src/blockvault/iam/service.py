"""Identity: the tenancy, its compartments, users and their API keys. Global (not per region)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from sqlalchemy import Engine, insert, select

from blockvault import ids
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.engine import reading
from blockvault.db.repos import TableRepo
from blockvault.errors import InvalidArgument, NotFound
from blockvault.iam import signing
from blockvault.iam.model import Compartment, Tenancy, User


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
        self._key_cache: dict[tuple[str, str, str], RSAPublicKey] = {}

    def tenancy(self) -> Tenancy | None:
        found = self.tenancies.find()
        return found[0] if found else None

    def bootstrap(
        self, *, name: str, home_region: str, admin_name: str, admin_public_pem: bytes
    ) -> tuple[Tenancy, User, str]:
        """First start: the tenancy (also the root compartment) and an admin user with one API key."""
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
        return tenancy, admin, fp

    def upload_api_key(self, user_id: str, public_pem: bytes) -> str:
        key = signing.load_public_key(public_pem)
        del key
        fp = signing.fingerprint(public_pem)
        if self.users.get(user_id) is None:
            raise NotFound(kind="user", ident=user_id)
        with self._engine.begin() as conn:
            existing = conn.execute(select(tables.api_keys).where(tables.api_keys.c.user_id == user_id)).all()
            if any(r.fingerprint == fp for r in existing):
                raise InvalidArgument(field="key", reason="this API key is already uploaded")
            if len(existing) >= 3:
                raise InvalidArgument(field="key", reason="a user may have at most 3 API keys")
            conn.execute(
                insert(tables.api_keys).values(
                    user_id=user_id,
                    fingerprint=fp,
                    key_pem=public_pem.decode(),
                    state="ACTIVE",
                    time_created=self._clock.now().isoformat(),
                )
            )
        return fp

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

    def compartment_exists(self, compartment_id: str) -> bool:
        tenancy = self.tenancy()
        if tenancy is not None and compartment_id == tenancy.id:
            return True
        compartment = self.compartments.get(compartment_id)
        return compartment is not None and compartment.state == "ACTIVE"

    def get_user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise NotFound(kind="user", ident=user_id)
        return user

    def create_compartment(self, parent_id: str, name: str, description: str) -> Compartment:
        if not self.compartment_exists(parent_id):
            raise NotFound(kind="compartment", ident=parent_id)
        siblings = self.compartments.find(tables.compartments.c.parent_id == parent_id)
        if any(c.name.lower() == name.lower() and c.state != "DELETED" for c in siblings):
            raise InvalidArgument(field="name", reason=f"a compartment named {name!r} already exists there")
        compartment = Compartment(
            id=ids.new("compartment", random=self._random),
            parent_id=parent_id,
            name=name,
            description=description,
            state="ACTIVE",
            time_created=self._clock.now(),
        )
        self.compartments.insert(compartment)
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

    def list_compartments(self, parent_id: str) -> list[Compartment]:
        return self.compartments.find(
            tables.compartments.c.parent_id == parent_id, order_by=[tables.compartments.c.time_created]
        )
