"""CIS OCI Foundations checks that apply to blockvault (oci-behaviour.md R7.31-R7.36): pure, over plain records.

- 5.2.1 / 5.2.2  block and boot volumes without a customer-managed key (R7.32, R7.33)
- 4.16           customer-managed keys not rotated within 365 days (R7.31): the key's current version is older
                 than 365 days (re-assigning volumes to a newer key, R7.36, retires the old key's findings once no
                 volume uses it)
- vault placement the vault of a key that protects volumes sits in the same compartment as those volumes (R7.19,
                 R7.34: keep vaults in a separate, restricted security compartment)
- 1.x least privilege  `manage keys` (or a family containing it) in the whole tenancy without a condition, to any
                 subject other than the Administrators group (R7.35)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from blockvault.iam.policy import PolicySyntaxError, parse

ROTATION_DAYS = 365  # CIS 4.16 (R7.31)


@dataclass(frozen=True)
class VolumeInfo:
    id: str
    kind: str  # volume | bootvolume
    compartment_id: str
    kms_key_id: str | None
    region: str


@dataclass(frozen=True)
class KeyInfo:
    id: str
    vault_id: str
    compartment_id: str
    state: str
    current_version_created: datetime
    region: str


@dataclass(frozen=True)
class VaultInfo:
    id: str
    compartment_id: str
    region: str


@dataclass(frozen=True)
class PolicyInfo:
    id: str
    name: str
    compartment_id: str
    statements: Sequence[str]


@dataclass(frozen=True)
class Finding:
    recommendation: str
    title: str
    resource_id: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {
            "recommendation": self.recommendation,
            "title": self.title,
            "resourceId": self.resource_id,
            "detail": self.detail,
        }


def check(
    *,
    now: datetime,
    tenancy_id: str,
    volumes: Iterable[VolumeInfo],
    keys: Iterable[KeyInfo],
    vaults: Iterable[VaultInfo],
    policies: Iterable[PolicyInfo],
    admin_group: str = "Administrators",
) -> list[Finding]:
    vols, key_list = list(volumes), list(keys)
    out: list[Finding] = []
    for v in vols:
        if v.kms_key_id is None:
            rec, what = ("5.2.1", "block volume") if v.kind == "volume" else ("5.2.2", "boot volume")
            out.append(
                Finding(
                    rec,
                    f"Ensure {what}s are encrypted with customer-managed keys",
                    v.id,
                    f"{what} in {v.region} uses the provider-managed key; fix: oci bv "
                    f"{'volume' if v.kind == 'volume' else 'boot-volume'}-kms-key update",
                )
            )
    for k in key_list:
        age = now - k.current_version_created
        if k.state == "ENABLED" and age > timedelta(days=ROTATION_DAYS):
            out.append(
                Finding(
                    "4.16",
                    "Ensure customer-managed keys are rotated at least annually",
                    k.id,
                    f"current version is {age.days} days old; fix: oci kms management key rotate, or assign the "
                    "volumes a new key",
                )
            )
    vault_compartment = {v.id: v.compartment_id for v in vaults}
    key_vault = {k.id: k.vault_id for k in key_list}
    flagged: set[tuple[str, str]] = set()
    for v in vols:
        vault_id = key_vault.get(v.kms_key_id or "")
        if vault_id is None or vault_compartment.get(vault_id) != v.compartment_id:
            continue
        if (vault_id, v.compartment_id) in flagged:
            continue
        flagged.add((vault_id, v.compartment_id))
        out.append(
            Finding(
                "R7.19",
                "Keep vaults in a separate security compartment from the volumes they protect",
                vault_id,
                f"vault and the volumes it protects share compartment {v.compartment_id}",
            )
        )
    for p in policies:
        for text in p.statements:
            try:
                st = parse(text)
            except PolicySyntaxError:
                continue
            broad = st.location.tenancy or st.location.ocid == tenancy_id
            admins = st.subjects.kind == "group" and [n.lower() for n in st.subjects.names] == [admin_group.lower()]
            if broad and st.condition is None and "KEY_DELETE" in st.grants and not admins:
                out.append(
                    Finding(
                        "1.x",
                        "Avoid over-broad manage keys: scope key administration to a compartment, vault or key",
                        p.id,
                        f"policy {p.name!r}: {text}",
                    )
                )
    return out
