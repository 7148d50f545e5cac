"""Backup policies on volume groups and `backupPolicyId` at create time (oci-behaviour.md R3.10, R3.13, R3.28,
R3.33; docs/design/backup-policies.md), driven by the real `oci` CLI (the SDK where the CLI needs an image).

Uses its own server: the tests move the domain clock by days. Every test that assigns a policy removes its
assignments at its end, so later clock jumps make no more backups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import oci as oci_sdk
import pytest
from helpers import DAY, Sdk, advance_clock, create_policy, e2e_conftest, schedule, server_now, wait_for
from iam_helpers import cli_error

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"
HOUR = 3600


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    conf = e2e_conftest()
    server = conf.start_server(tmp_path_factory.mktemp("group-policies") / "data")
    yield server
    conf.stop_server(server)


@pytest.fixture(scope="module")
def sdk(srv: Any) -> Sdk:
    return Sdk(srv, IAD)


def oci(srv: Any, *args: str) -> Any:
    return srv.oci(*args, endpoint=srv.endpoint(IAD)).json


def oci_fails(srv: Any, *args: str) -> dict[str, Any]:
    return cli_error(srv.oci(*args, endpoint=srv.endpoint(IAD), check=False))


def data(out: Any) -> list[Any]:
    return list((out or {"data": []})["data"])


def gold(srv: Any) -> Any:
    return next(p for p in oci(srv, "bv", "volume-backup-policy", "list")["data"] if p["display-name"] == "gold")


def assign(srv: Any, asset_id: str, policy_id: str) -> Any:
    return oci(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", asset_id, "--policy-id", policy_id
    )["data"]


def assignments_of(srv: Any, asset_id: str) -> list[Any]:
    return data(
        oci(
            srv,
            "bv",
            "volume-backup-policy-assignment",
            "get-volume-backup-policy-asset-assignment",
            "--asset-id",
            asset_id,
        )
    )


def unassign(srv: Any, assignment_id: str) -> None:
    oci(srv, "bv", "volume-backup-policy-assignment", "delete", "--policy-assignment-id", assignment_id, "--force")


def new_group(srv: Any, sdk: Sdk, compartment: str, name: str, volume_ids: list[str], *more: str) -> Any:
    return oci(
        srv,
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        sdk.ad(1),
        "--display-name",
        name,
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": volume_ids}),
        "--wait-for-state",
        "AVAILABLE",
        *more,
    )["data"]


def group_backups(srv: Any, compartment: str, group_id: str) -> list[Any]:
    return data(
        oci(srv, "bv", "volume-group-backup", "list", "-c", compartment, "--volume-group-id", group_id, "--all")
    )


def scheduled_volume_backups(srv: Any, compartment: str, volume_id: str) -> list[Any]:
    out = data(oci(srv, "bv", "backup", "list", "-c", compartment, "--volume-id", volume_id, "--all"))
    return [b for b in out if b["source-type"] == "SCHEDULED"]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_past_next(srv: Any, hour: int) -> int:
    """Seconds from the server's now to one minute after the next hh:00 UTC."""
    now = server_now(srv)
    target = now.astimezone(UTC).replace(hour=hour, minute=1, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return int((target - now).total_seconds()) + 1


def test_group_assignment_makes_scheduled_group_backups_that_expire_and_governs_members(srv: Any, sdk: Sdk) -> None:
    compartment = sdk.new_compartment("gpol-sched")
    v1 = sdk.create_volume(compartment, name="m1").id
    v2 = sdk.create_volume(compartment, name="m2").id
    group = new_group(srv, sdk, compartment, "scheduled-group", [v1, v2])["id"]

    # R3.10: Oracle-defined policies cannot be used for scheduled volume group backups.
    err = oci_fails(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", group, "--policy-id", gold(srv)["id"]
    )
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert "Oracle-defined" in err["message"]
    assert "volume group" in err["message"]
    assert assignments_of(srv, group) == []

    daily = create_policy(
        srv, compartment, "group-daily", [schedule("ONE_DAY", 2 * DAY, offsetType="STRUCTURED", hourOfDay=3)]
    )
    group_assignment = assign(srv, group, daily["id"])
    assert (group_assignment["asset-id"], group_assignment["policy-id"]) == (group, daily["id"])
    assert [a["id"] for a in assignments_of(srv, group)] == [group_assignment["id"]]
    # m1 has its own hourly assignment too: while its group has one, the group's governs it (R3.13).
    hourly = create_policy(srv, compartment, "member-hourly", [schedule("ONE_HOUR", DAY)])
    member_assignment = assign(srv, v1, hourly["id"])

    advance_clock(srv, seconds_past_next(srv, 3))
    first = wait_for(
        lambda: group_backups(srv, compartment, group),
        lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
        what="the first scheduled group backup",
    )[0]
    assert first["source-type"] == "SCHEDULED"
    assert "group-daily" in first["display-name"]
    expires = when(first["expiration-time"])
    assert abs((expires - when(first["time-created"])) - timedelta(days=2)) < timedelta(seconds=5)
    members = [oci(srv, "bv", "backup", "get", "--volume-backup-id", m)["data"] for m in first["volume-backup-ids"]]
    assert sorted(m["volume-id"] for m in members) == sorted([v1, v2])
    assert {(m["source-type"], m["expiration-time"]) for m in members} == {("SCHEDULED", first["expiration-time"])}
    # m1's own hourly schedule did not run: its only scheduled backup is its group backup member.
    assert {b["id"] for b in scheduled_volume_backups(srv, compartment, v1)} <= set(first["volume-backup-ids"])

    # Three days on: one more group backup (missed runs are not replayed), the first one is deleted by retention
    # as one, with its member backups (R3.33); m1's hourly schedule still made nothing of its own.
    advance_clock(srv, 3 * DAY)

    def state() -> tuple[list[Any], Any]:
        items = group_backups(srv, compartment, group)
        return items, next(b for b in items if b["id"] == first["id"])

    items, _old = wait_for(
        state,
        lambda s: (
            s[1]["lifecycle-state"] == "TERMINATED"
            and any(b["id"] != first["id"] and b["lifecycle-state"] == "AVAILABLE" for b in s[0])
        ),
        what="the expired group backup deleted and a new one made",
    )
    assert len(items) == 2
    for member_id in first["volume-backup-ids"]:
        member = oci(srv, "bv", "backup", "get", "--volume-backup-id", member_id)["data"]
        assert member["lifecycle-state"] in ("TERMINATING", "TERMINATED")
    in_groups = {m for b in items for m in b["volume-backup-ids"]}
    assert {b["id"] for b in scheduled_volume_backups(srv, compartment, v1)} <= in_groups

    # Without the group's assignment, m1's own assignment runs again (from its next run on).
    unassign(srv, group_assignment["id"])
    advance_clock(srv, HOUR)
    own = wait_for(
        lambda: [b for b in scheduled_volume_backups(srv, compartment, v1) if b["id"] not in in_groups],
        lambda found: len(found) == 1 and found[0]["lifecycle-state"] == "AVAILABLE",
        what="m1's own hourly backup",
    )
    assert "member-hourly" in own[0]["display-name"]
    unassign(srv, member_assignment["id"])


def test_create_volume_and_boot_volume_with_backup_policy_id_assign_it(srv: Any, sdk: Sdk) -> None:
    compartment = sdk.new_compartment("gpol-create")
    policy_id = gold(srv)["id"]
    volume = oci(
        srv,
        "bv",
        "volume",
        "create",
        "-c",
        compartment,
        "--availability-domain",
        sdk.ad(1),
        "--size-in-gbs",
        "50",
        "--display-name",
        "with-policy",
        "--backup-policy-id",
        policy_id,
        "--wait-for-state",
        "AVAILABLE",
    )["data"]
    found = assignments_of(srv, volume["id"])
    assert [(a["asset-id"], a["policy-id"]) for a in found] == [(volume["id"], policy_id)]
    unassign(srv, found[0]["id"])

    boot = sdk.bs.create_boot_volume(
        oci_sdk.core.models.CreateBootVolumeDetails(
            compartment_id=compartment,
            availability_domain=sdk.ad(1),
            size_in_gbs=50,
            display_name="boot-with-policy",
            backup_policy_id=policy_id,
        )
    ).data
    found = assignments_of(srv, boot.id)
    assert [(a["asset-id"], a["policy-id"]) for a in found] == [(boot.id, policy_id)]
    unassign(srv, found[0]["id"])


def test_a_bad_backup_policy_id_creates_nothing(srv: Any, sdk: Sdk) -> None:
    compartment = sdk.new_compartment("gpol-bad")
    missing = gold(srv)["id"][:-6] + "zzzzzz"
    err = oci_fails(
        srv,
        "bv",
        "volume",
        "create",
        "-c",
        compartment,
        "--availability-domain",
        sdk.ad(1),
        "--size-in-gbs",
        "50",
        "--backup-policy-id",
        missing,
    )
    assert (err["status"], err["code"]) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    assert "backupPolicyId" in err["message"]
    assert data(oci(srv, "bv", "volume", "list", "-c", compartment)) == []

    # A volume group takes only user-defined policies (R3.10): refused before the group is made.
    v = sdk.create_volume(compartment, name="lonely").id
    err = oci_fails(
        srv,
        "bv",
        "volume-group",
        "create",
        "--compartment-id",
        compartment,
        "--availability-domain",
        sdk.ad(1),
        "--source-details",
        json.dumps({"type": "volumeIds", "volumeIds": [v]}),
        "--backup-policy-id",
        gold(srv)["id"],
    )
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert "backupPolicyId" in err["message"]
    assert "Oracle-defined" in err["message"]
    assert data(oci(srv, "bv", "volume-group", "list", "-c", compartment)) == []
    assert oci(srv, "bv", "volume", "get", "--volume-id", v)["data"].get("volume-group-id") is None


def test_create_volume_group_with_backup_policy_id_assigns_it(srv: Any, sdk: Sdk) -> None:
    compartment = sdk.new_compartment("gpol-group-create")
    v = sdk.create_volume(compartment, name="grouped").id
    weekly = create_policy(srv, compartment, "group-weekly", [schedule("ONE_WEEK", 30 * DAY)])
    group = new_group(srv, sdk, compartment, "with-policy", [v], "--backup-policy-id", weekly["id"])
    found = assignments_of(srv, group["id"])
    assert [(a["asset-id"], a["policy-id"]) for a in found] == [(group["id"], weekly["id"])]
    # The policy cannot be deleted while the group holds it (R3.13), and a deleted group drops its assignment.
    err = oci_fails(srv, "bv", "volume-backup-policy", "delete", "--policy-id", weekly["id"], "--force")
    assert (err["status"], err["code"]) == (409, "Conflict")
    assert group["id"] in err["message"]
    oci(srv, "bv", "volume-group", "delete", "--volume-group-id", group["id"], "--force")
    get = ("bv", "volume-backup-policy-assignment", "get", "--policy-assignment-id", found[0]["id"])
    gone = wait_for(
        lambda: srv.oci(*get, endpoint=srv.endpoint(IAD), check=False),
        lambda result: result.rc != 0,
        what="the deleted group's assignment dropped",
    )
    assert (cli_error(gone)["status"], cli_error(gone)["code"]) == (404, "NotAuthorizedOrNotFound")
    oci(srv, "bv", "volume-backup-policy", "delete", "--policy-id", weekly["id"], "--force")


def test_a_group_policy_with_a_destination_copies_the_group_backup_there(srv: Any, sdk: Sdk) -> None:
    """R3.30: the scheduled group backup is copied to the policy's destination region as CopyVolumeGroupBackup
    copies it, and the copy (members included) keeps the source's expirationTime."""
    compartment = sdk.new_compartment("gpol-xr")
    v = sdk.create_volume(compartment, name="xr-member").id
    group = new_group(srv, sdk, compartment, "xr-group", [v])["id"]
    hourly = oci(
        srv, "bv", "volume-backup-policy", "create", "-c", compartment, "--display-name", "group-dr",
        "--schedules", json.dumps([schedule("ONE_HOUR", 3 * DAY)]), "--destination-region", PHX,
    )["data"]  # fmt: skip
    assignment = assign(srv, group, hourly["id"])
    advance_clock(srv, HOUR)
    source = wait_for(
        lambda: group_backups(srv, compartment, group),
        lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
        what="the scheduled group backup",
    )[0]
    unassign(srv, assignment["id"])  # no more runs; the copy of this one still completes

    def copies() -> list[Any]:
        args = ("bv", "volume-group-backup", "list", "-c", compartment, "--all")
        return data(srv.oci(*args, endpoint=srv.endpoint(PHX)).json)

    copy = wait_for(
        copies,
        lambda items: len(items) == 1 and items[0]["expiration-time"] is not None,
        what="the group backup copy in the destination, dated",
    )[0]
    assert copy["source-volume-group-backup-id"] == source["id"]
    assert copy["lifecycle-state"] == "AVAILABLE"
    assert copy["expiration-time"] == source["expiration-time"]
    for member_id in copy["volume-backup-ids"]:
        member = srv.oci("bv", "backup", "get", "--volume-backup-id", member_id, endpoint=srv.endpoint(PHX)).json
        assert member["data"]["expiration-time"] == source["expiration-time"]
