"""Identity records (global, as in OCI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class Tenancy:
    id: str
    name: str
    home_region: str
    time_created: datetime


@dataclass
class Compartment:
    id: str
    parent_id: str | None
    name: str
    description: str
    state: str
    time_created: datetime


@dataclass
class User:
    id: str
    tenancy_id: str
    name: str
    description: str
    state: str
    time_created: datetime


@dataclass(frozen=True)
class Principal:
    """Who made a request: a user of a tenancy (service principals come with the IAM issue)."""

    tenancy_id: str
    user_id: str
    fingerprint: str


@dataclass
class Group:
    id: str
    tenancy_id: str
    name: str
    description: str
    state: str
    time_created: datetime


@dataclass
class Membership:
    id: str
    user_id: str
    group_id: str
    state: str
    time_created: datetime


@dataclass
class Policy:
    id: str
    compartment_id: str
    name: str
    description: str
    statements: list[str]
    state: str
    time_created: datetime
    version_date: str | None = None


@dataclass
class ApiKeyRecord:
    user_id: str
    fingerprint: str
    key_pem: str
    state: str
    time_created: datetime
