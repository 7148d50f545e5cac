"""The pure rules of volume groups (blockstorage/groups.py): derived lifecycle states, sourceDetails parsing,
membership changes, and the request bodies of `blockvault bv volume-group ...` (cli/commands/groups.py)."""

from __future__ import annotations

import argparse

import pytest

from blockvault.blockstorage.groups import (
    COMMITTED,
    MAX_MEMBERS,
    check_volume_ids,
    group_backup_state,
    group_state,
    membership_change,
    parse_source,
)
from blockvault.cli.client import UsageError
from blockvault.cli.commands.groups import create_group_body, group_source, update_group_body
from blockvault.errors import InvalidArgument, MissingParameter

V1 = "ocid1.volume.oc1.iad.aaaaone"
V2 = "ocid1.volume.oc1.iad.aaaatwo"
V3 = "ocid1.volume.oc1.iad.aaaathree"
BOOT = "ocid1.bootvolume.oc1.iad.aaaaboot"


# --- group lifecycle ------------------------------------------------------------------------------------------------


def test_group_is_provisioning_until_every_member_is_available() -> None:
    assert group_state("PROVISIONING", ["AVAILABLE", "PROVISIONING"]) == "PROVISIONING"
    assert group_state("PROVISIONING", ["AVAILABLE", "AVAILABLE"]) == "AVAILABLE"


@pytest.mark.parametrize("bad", ["FAULTY", "TERMINATING", "TERMINATED"])
def test_group_with_a_failed_member_is_faulty(bad: str) -> None:
    assert group_state("PROVISIONING", ["AVAILABLE", bad]) == "FAULTY"


@pytest.mark.parametrize("stored", ["AVAILABLE", "TERMINATED", "FAULTY"])
def test_group_states_other_than_provisioning_are_shown_as_stored(stored: str) -> None:
    assert group_state(stored, ["PROVISIONING", "FAULTY"]) == stored


# --- group backup lifecycle -----------------------------------------------------------------------------------------


def test_group_backup_is_committed_until_every_member_backup_is_available() -> None:
    assert group_backup_state(COMMITTED, ["AVAILABLE", "CREATING"]) == COMMITTED
    assert group_backup_state(COMMITTED, ["AVAILABLE", "AVAILABLE"]) == "AVAILABLE"


@pytest.mark.parametrize("bad", ["FAULTY", "TERMINATING", "TERMINATED"])
def test_group_backup_with_a_failed_or_deleted_member_is_faulty(bad: str) -> None:
    assert group_backup_state(COMMITTED, ["CREATING", bad]) == "FAULTY"


def test_group_backup_missing_a_member_backup_is_faulty() -> None:
    assert group_backup_state("AVAILABLE", ["AVAILABLE", "TERMINATED"]) == "FAULTY"
    assert group_backup_state("AVAILABLE", ["AVAILABLE", "AVAILABLE"]) == "AVAILABLE"


def test_group_backup_is_terminated_only_when_every_member_backup_is() -> None:
    assert group_backup_state("TERMINATING", ["TERMINATED", "TERMINATING"]) == "TERMINATING"
    assert group_backup_state("TERMINATING", ["TERMINATED", "TERMINATED"]) == "TERMINATED"
    assert group_backup_state("FAULTY", ["TERMINATED"]) == "FAULTY"


# --- sourceDetails --------------------------------------------------------------------------------------------------


def test_source_volume_ids() -> None:
    assert parse_source({"type": "volumeIds", "volumeIds": [V1, BOOT]}) == ("volumeIds", [V1, BOOT])


@pytest.mark.parametrize(
    ("stype", "value"),
    [
        ("volumeGroupId", "ocid1.volumegroup.oc1.iad.aaaag"),
        ("volumeGroupBackupId", "ocid1.volumegroupbackup.oc1.iad.aaaab"),
        ("volumeGroupReplicaId", "ocid1.volumegroupreplica.oc1.iad.aaaar"),
    ],
)
def test_source_discriminator_is_the_field_name(stype: str, value: str) -> None:
    assert parse_source({"type": stype, stype: value}) == (stype, value)


def test_source_without_type_or_value_is_rejected() -> None:
    with pytest.raises(MissingParameter):
        parse_source(None)
    with pytest.raises(InvalidArgument, match="needs a type"):
        parse_source({"volumeIds": [V1]})
    with pytest.raises(InvalidArgument, match="must be one of"):
        parse_source({"type": "volume", "id": V1})
    with pytest.raises(MissingParameter, match=r"sourceDetails\.volumeGroupId"):
        parse_source({"type": "volumeGroupId", "id": "ocid1.volumegroup.oc1.iad.aaaag"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "at least one volume"),
        ([V1, V1], "listed twice"),
        (V1, "list of volume OCIDs"),
        ([V1, 7], "list of volume OCIDs"),
        (["ocid1.volumebackup.oc1.iad.aaaab"], "not the OCID of a volume or bootvolume"),
        ([f"ocid1.volume.oc1.iad.aaaa{n}" for n in range(MAX_MEMBERS + 1)], f"at most {MAX_MEMBERS}"),
    ],
)
def test_bad_volume_lists_are_rejected(value: object, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        check_volume_ids(value, "volumeIds")


def test_membership_change_is_the_difference_of_the_complete_lists() -> None:
    assert membership_change([V1, V2], [V2, V3]) == ([V3], [V1])
    assert membership_change([V1, V2], [V2, V1]) == ([], [])


# --- CLI request bodies ---------------------------------------------------------------------------------------------


def _create_args(**given: object) -> argparse.Namespace:
    fields = dict.fromkeys(
        (
            "source_details",
            "volume_ids",
            "source_volume_group_id",
            "volume_group_backup_id",
            "backup_policy_id",
            "defined_tags",
            "display_name",
            "freeform_tags",
            "volume_group_replicas",
            "cluster_placement_group_id",
            "xrc_kms_key_id",
        )
    )
    fields.update(given)
    return argparse.Namespace(**fields)


def test_cli_shorthands_make_the_same_source_details_as_the_json() -> None:
    assert group_source(_create_args(volume_ids=[V1, V2])) == {"type": "volumeIds", "volumeIds": [V1, V2]}
    assert group_source(_create_args(source_volume_group_id="g")) == {"type": "volumeGroupId", "volumeGroupId": "g"}
    assert group_source(_create_args(volume_group_backup_id="b")) == {
        "type": "volumeGroupBackupId",
        "volumeGroupBackupId": "b",
    }
    raw = {"type": "volumeIds", "volumeIds": [V1]}
    assert group_source(_create_args(source_details=raw)) == raw


def test_cli_needs_exactly_one_source() -> None:
    with pytest.raises(UsageError):
        group_source(_create_args())
    with pytest.raises(UsageError):
        group_source(_create_args(volume_ids=[V1], source_volume_group_id="g"))


def test_cli_create_body_sends_only_given_fields() -> None:
    body = create_group_body(
        _create_args(display_name="g"), compartment_id="c", availability_domain="ad", source={"type": "volumeIds"}
    )
    assert body == {
        "availabilityDomain": "ad",
        "compartmentId": "c",
        "sourceDetails": {"type": "volumeIds"},
        "displayName": "g",
    }


def test_cli_update_body_keeps_an_explicit_membership_list() -> None:
    args = argparse.Namespace(
        defined_tags=None, display_name=None, freeform_tags=None, volume_ids=[V2], volume_group_replicas=[]
    )
    assert update_group_body(args) == {"volumeIds": [V2], "volumeGroupReplicas": []}
