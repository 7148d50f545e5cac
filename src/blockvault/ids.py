"""OCIDs: ocid1.<type>.<realm>.[region][.future-use].<unique> (oci-behaviour.md R8.1-R8.4).

Regional resources carry the region key (`iad`, `phx`); global ones (tenancy, user, compartment, ...) an empty
region (`ocid1.user.oc1..aaaa...`). Keys and vaults carry the vault's prefix in the future-use slot, as OCI does.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from blockvault.errors import InvalidArgument

REALM = "oc1"

# Resource types we mint, and whether they are regional.
REGIONAL_TYPES = frozenset(
    {
        "volume",
        "bootvolume",
        "volumebackup",
        "bootvolumebackup",
        "volumegroup",
        "volumegroupbackup",
        "blockvolumereplica",
        "bootvolumereplica",
        "volumegroupreplica",
        "vault",
        "key",
        "keyversion",
        "workrequest",
    }
)
GLOBAL_TYPES = frozenset(
    {"tenancy", "compartment", "user", "group", "policy", "volumebackuppolicy", "volumebackuppolicyassignment"}
)

_SEGMENT = re.compile(r"^[0-9a-zA-Z_-]*$")


@dataclass(frozen=True, slots=True)
class Ocid:
    resource_type: str
    realm: str
    region: str
    future_use: str
    unique: str

    def __str__(self) -> str:
        parts = ["ocid1", self.resource_type, self.realm, self.region]
        if self.future_use:
            parts.append(self.future_use)
        parts.append(self.unique)
        return ".".join(parts)


def _unique(random: Callable[[int], bytes]) -> str:
    # 35 random bytes -> 56 base32 chars; OCI's unique parts are lower-case base32 starting with "a".
    return "aaaaaaaa" + base64.b32encode(random(35)).decode().lower().rstrip("=")


def new(
    resource_type: str,
    region_key: str = "",
    *,
    future_use: str = "",
    random: Callable[[int], bytes] = os.urandom,
) -> str:
    """Mint a fresh OCID. Regional types need a region key; global types must not have one."""
    if resource_type in REGIONAL_TYPES and not region_key:
        raise ValueError(f"{resource_type} is regional and needs a region key")
    if resource_type in GLOBAL_TYPES and region_key:
        raise ValueError(f"{resource_type} is global and takes no region")
    return str(Ocid(resource_type, REALM, region_key, future_use, _unique(random)))


def parse(text: str, *, field: str = "id") -> Ocid:
    """Parse with the safe rule of R8.3: `ocid1.`, at least 4 more parts, non-empty type and realm."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument(field=field, reason="an OCID is required")
    parts = text.split(".")
    if len(parts) < 5 or parts[0] != "ocid1" or not parts[1] or not parts[2] or not parts[-1]:
        raise InvalidArgument(field=field, reason=f"{text!r} is not a valid OCID")
    if any(not _SEGMENT.fullmatch(p) for p in parts):
        raise InvalidArgument(field=field, reason=f"{text!r} is not a valid OCID")
    future = ".".join(parts[4:-1])
    return Ocid(parts[1].lower(), parts[2], parts[3], future, parts[-1])


def expect(text: str, *types: str, field: str = "id") -> Ocid:
    """Parse and check the resource type; a wrong type is a bad value, not a missing resource."""
    parsed = parse(text, field=field)
    if parsed.resource_type not in types:
        raise InvalidArgument(field=field, reason=f"{text!r} is not the OCID of a {' or '.join(types)}")
    return parsed
