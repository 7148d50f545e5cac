"""Backup policies, assignments and the scheduler (oci-behaviour.md R3.8, R3.10-R3.13, R3.28, R3.30; oci-wire.md
§4.4; docs/design/backup-policies.md), driven by the real `oci` CLI and our CLI.

Uses its own server: the tests move the domain clock by days, which must not disturb other modules' keys.
Every test that assigns a policy removes the assignment at its end, so later clock jumps make no more backups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import DAY, Sdk, advance_clock, create_policy, e2e_conftest, schedule, server_now, wait_for
from iam_helpers import cli_error, new_user, oci_as, policy

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    conf = e2e_conftest()
    server = conf.start_server(tmp_path_factory.mktemp("policies") / "data")
    yield server
    conf.stop_server(server)


def oci(srv: Any, *args: str, region: str = IAD) -> Any:
    return srv.oci(*args, endpoint=srv.endpoint(region)).json


def oci_fails(srv: Any, *args: str, region: str = IAD) -> dict[str, Any]:
    result = srv.oci(*args, endpoint=srv.endpoint(region), check=False)
    return cli_error(result)


def assign(srv: Any, volume_id: str, policy_id: str, *more: str) -> Any:
    return oci(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", volume_id, "--policy-id", policy_id, *more
    )["data"]


def unassign(srv: Any, assignment_id: str) -> None:
    oci(srv, "bv", "volume-backup-policy-assignment", "delete", "--policy-assignment-id", assignment_id, "--force")


def backups_of(srv: Any, compartment: str, volume_id: str | None = None, region: str = IAD) -> list[Any]:
    args = ["bv", "backup", "list", "-c", compartment, "--all"]
    if volume_id:
        args += ["--volume-id", volume_id]
    return list((oci(srv, *args, region=region) or {"data": []})["data"])


def scheduled(srv: Any, compartment: str, volume_id: str, region: str = IAD) -> list[Any]:
    return [b for b in backups_of(srv, compartment, volume_id, region) if b["source-type"] == "SCHEDULED"]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_past_next(srv: Any, hour: int) -> int:
    """Seconds from the server's now to one minute after the next hh:00 UTC."""
    now = server_now(srv)
    target = now.astimezone(UTC).replace(hour=hour, minute=1, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return int((target - now).total_seconds()) + 1


@pytest.fixture(scope="module")
def world(srv: Any) -> dict[str, Any]:
    sdk = Sdk(srv, IAD)
    return {"sdk": sdk, "phx": Sdk(srv, PHX)}


def new_volume(world: dict[str, Any], compartment: str, name: str) -> str:
    return str(world["sdk"].create_volume(compartment, name=name).id)


# --- Oracle-defined policies ---------------------------------------------------------------------------------------


def test_oracle_defined_policies_are_listed_and_read_only(srv: Any) -> None:
    listed = oci(srv, "bv", "volume-backup-policy", "list")["data"]
    by_name = {p["display-name"]: p for p in listed}
    assert set(by_name) == {"gold", "silver", "bronze"}
    gold = by_name["gold"]
    assert gold["compartment-id"] is None
    assert sorted(s["period"] for s in gold["schedules"]) == ["ONE_DAY", "ONE_MONTH", "ONE_WEEK", "ONE_YEAR"]
    assert {s["backup-type"] for p in listed for s in p["schedules"]} == {"INCREMENTAL"}  # R3.11
    silver_weekly = next(s for s in by_name["silver"]["schedules"] if s["period"] == "ONE_WEEK")
    assert (silver_weekly["day-of-week"], silver_weekly["retention-seconds"]) == ("SUNDAY", 28 * DAY)
    # the same policies, with the same ids, in every region
    phx = oci(srv, "bv", "volume-backup-policy", "list", region=PHX)["data"]
    assert {p["id"] for p in phx} == {p["id"] for p in listed}
    got = oci(srv, "bv", "volume-backup-policy", "get", "--policy-id", gold["id"])["data"]
    assert got == gold

    # R3.10: no change, no delete, no cross-region copy
    err = oci_fails(srv, "bv", "volume-backup-policy", "update", "--policy-id", gold["id"], "--display-name", "x")
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert "Oracle-defined" in err["message"]
    err = oci_fails(
        srv, "bv", "volume-backup-policy", "update", "--policy-id", gold["id"], "--destination-region", PHX, "--force"
    )
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    err = oci_fails(srv, "bv", "volume-backup-policy", "delete", "--policy-id", gold["id"], "--force")
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert [p["display-name"] for p in oci(srv, "bv", "volume-backup-policy", "list")["data"]].count("gold") == 1


# --- user-defined policies -----------------------------------------------------------------------------------------


def test_user_defined_policy_create_get_list_update_delete(srv: Any, world: dict[str, Any]) -> None:
    compartment = world["sdk"].new_compartment("pol-crud")
    daily = schedule("ONE_DAY", 7 * DAY, offsetType="STRUCTURED", hourOfDay=2)
    weekly = schedule("ONE_WEEK", 28 * DAY, offsetType="STRUCTURED", dayOfWeek="SATURDAY", hourOfDay=4)
    created = create_policy(srv, compartment, "nightly", [daily, weekly], "--destination-region", PHX)
    assert created["id"].startswith("ocid1.volumebackuppolicy.oc1..")
    assert (created["compartment-id"], created["destination-region"]) == (compartment, PHX)
    first = created["schedules"][0]
    assert (first["period"], first["hour-of-day"], first["retention-seconds"], first["offset-type"]) == (
        "ONE_DAY",
        2,
        7 * DAY,
        "STRUCTURED",
    )
    assert created["schedules"][1]["day-of-week"] == "SATURDAY"

    assert oci(srv, "bv", "volume-backup-policy", "get", "--policy-id", created["id"])["data"] == created
    listed = oci(srv, "bv", "volume-backup-policy", "list", "-c", compartment)["data"]
    assert [p["id"] for p in listed] == [created["id"]]
    assert created["id"] not in {p["id"] for p in oci(srv, "bv", "volume-backup-policy", "list")["data"]}

    # duplicating a policy = a new policy with the same schedules (R3.13)
    dup = create_policy(srv, compartment, "nightly-copy", [daily, weekly])
    assert dup["schedules"] == created["schedules"]
    assert dup["id"] != created["id"]

    updated = oci(
        srv,
        "bv",
        "volume-backup-policy",
        "update",
        "--policy-id",
        created["id"],
        "--display-name",
        "hourly",
        "--schedules",
        json.dumps([schedule("ONE_HOUR", 6 * 3600, offsetType="NUMERIC_SECONDS", offsetSeconds=900)]),
        "--force",
    )["data"]
    assert updated["display-name"] == "hourly"
    assert [(s["period"], s["offset-seconds"]) for s in updated["schedules"]] == [("ONE_HOUR", 900)]
    assert updated["destination-region"] == PHX  # absent in the update: unchanged

    for pid in (created["id"], dup["id"]):
        oci(srv, "bv", "volume-backup-policy", "delete", "--policy-id", pid, "--force")
    err = oci_fails(srv, "bv", "volume-backup-policy", "get", "--policy-id", created["id"])
    assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")


@pytest.mark.parametrize(
    ("schedules", "more", "field"),
    [
        ([{"backupType": "FULL", "period": "ONE_DAY"}], [], "schedules[0].retentionSeconds"),
        ([schedule("ONE_FORTNIGHT", 60)], [], "schedules[0].period"),
        ([{**schedule("ONE_DAY", 60), "backupType": "DIFF"}], [], "schedules[0].backupType"),
        ([schedule("ONE_DAY", 60, offsetType="STRUCTURED", hourOfDay=25)], [], "schedules[0].hourOfDay"),
        ([schedule("ONE_WEEK", 60, offsetType="STRUCTURED", dayOfWeek="FUNDAY")], [], "schedules[0].dayOfWeek"),
        ([schedule("ONE_DAY", 60, timeZone="PST")], [], "schedules[0].timeZone"),
        ([schedule("ONE_DAY", 60), schedule("ONE_DAY", 120)], [], "schedules[1].period"),
        ([schedule("ONE_DAY", 60)], ["--destination-region", "mars-central-1"], "destinationRegion"),
        ([schedule("ONE_DAY", 60)], ["--destination-region", IAD], "destinationRegion"),
    ],
)
def test_invalid_policy_is_400_naming_the_field(
    srv: Any, world: dict[str, Any], schedules: list[Any], more: list[str], field: str
) -> None:
    tenancy = srv.tenancy
    result = srv.oci(
        "bv",
        "volume-backup-policy",
        "create",
        "-c",
        tenancy,
        "--schedules",
        json.dumps(schedules),
        *more,
        check=False,
    )
    err = cli_error(result)
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert field in err["message"]


# --- the scheduler -------------------------------------------------------------------------------------------------


def test_scheduled_backup_appears_with_expiration_and_is_deleted_after_it(srv: Any, world: dict[str, Any]) -> None:
    compartment = world["sdk"].new_compartment("pol-sched")
    volume = new_volume(world, compartment, "scheduled")
    pol = create_policy(
        srv, compartment, "daily-2d", [schedule("ONE_DAY", 2 * DAY, offsetType="STRUCTURED", hourOfDay=3)]
    )
    assignment = assign(srv, volume, pol["id"])
    assert (assignment["asset-id"], assignment["policy-id"], assignment["xrc-kms-key-id"]) == (volume, pol["id"], None)
    manual = oci(srv, "bv", "backup", "create", "--volume-id", volume, "--wait-for-state", "AVAILABLE")["data"]
    assert (manual["source-type"], manual["expiration-time"]) == ("MANUAL", None)  # R3.8
    assert scheduled(srv, compartment, volume) == []

    advance_clock(srv, seconds_past_next(srv, 3))
    first = wait_for(
        lambda: scheduled(srv, compartment, volume),
        lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
        what="the first scheduled backup",
    )[0]
    assert "daily-2d" in first["display-name"]
    made = when(first["time-created"])
    assert abs((when(first["expiration-time"]) - made) - timedelta(days=2)) < timedelta(seconds=5)  # R3.8

    # Three days later: exactly one more (the catch-up rule: missed runs are not replayed), and the first one,
    # past its expirationTime, is deleted; the manual backup never expires.
    advance_clock(srv, 3 * DAY)

    def state() -> tuple[list[Any], Any]:
        items = scheduled(srv, compartment, volume)
        return items, next(b for b in items if b["id"] == first["id"])

    items, _old = wait_for(
        state,
        lambda s: (
            s[1]["lifecycle-state"] == "TERMINATED"
            and any(b["lifecycle-state"] == "AVAILABLE" for b in s[0] if b["id"] != first["id"])
        ),
        what="retention deletes the expired scheduled backup",
    )
    newer = [b for b in items if b["id"] != first["id"]]
    assert len(newer) == 1
    assert when(newer[0]["expiration-time"]) > server_now(srv)
    kept = oci(srv, "bv", "backup", "get", "--volume-backup-id", manual["id"])["data"]
    assert (kept["lifecycle-state"], kept["expiration-time"]) == ("AVAILABLE", None)
    unassign(srv, assignment["id"])


def test_policy_copies_scheduled_backups_to_its_destination_under_the_xrc_key(srv: Any, world: dict[str, Any]) -> None:
    sdk, phx = world["sdk"], world["phx"]
    compartment = sdk.new_compartment("pol-xrc")
    phx_key = phx.new_key(phx.new_vault(compartment, "phx-vault"), compartment, "phx-key")
    volume = new_volume(world, compartment, "copied")
    pol = create_policy(srv, compartment, "hourly-dr", [schedule("ONE_HOUR", 3 * DAY)], "--destination-region", PHX)
    # R3.28: the destination key must be a key of the destination region
    iad_key = sdk.new_key(sdk.new_vault(compartment, "iad-vault"), compartment, "iad-key")
    err = oci_fails(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", volume, "--policy-id", pol["id"],
        "--xrc-kms-key-id", iad_key.id,
    )  # fmt: skip
    assert (err["status"], err["code"]) == (400, "InvalidParameter")
    assert "xrcKmsKeyId" in err["message"]

    assignment = assign(srv, volume, pol["id"], "--xrc-kms-key-id", phx_key.id)
    assert assignment["xrc-kms-key-id"] == phx_key.id
    advance_clock(srv, 3600)
    source = wait_for(
        lambda: scheduled(srv, compartment, volume),
        lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
        what="the scheduled backup in ashburn",
    )[0]
    copy = wait_for(
        lambda: backups_of(srv, compartment, region=PHX),
        lambda items: (
            len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE" and items[0]["expiration-time"] is not None
        ),
        what="the policy's copy in phoenix",
    )[0]
    assert copy["id"].startswith("ocid1.volumebackup.oc1.phx.")
    assert copy["kms-key-id"] == phx_key.id  # R3.28: under xrcKmsKeyId, never the source's key
    assert copy["source-type"] == "SCHEDULED"
    assert copy["source-volume-backup-id"] == source["id"]
    assert copy["expiration-time"] == source["expiration-time"]  # R3.30: same retention as the source
    unassign(srv, assignment["id"])


def test_assignments_replace_each_other_and_hold_their_policy(srv: Any, world: dict[str, Any]) -> None:
    compartment = world["sdk"].new_compartment("pol-assign")
    volume = new_volume(world, compartment, "assigned")
    mine = create_policy(srv, compartment, "mine", [schedule("ONE_WEEK", 30 * DAY)])
    gold = next(p for p in oci(srv, "bv", "volume-backup-policy", "list")["data"] if p["display-name"] == "gold")

    first = assign(srv, volume, mine["id"])
    err = oci_fails(srv, "bv", "volume-backup-policy", "delete", "--policy-id", mine["id"], "--force")
    assert (err["status"], err["code"]) == (409, "Conflict")  # R3.13: assigned policies stay
    assert volume in err["message"]

    second = assign(srv, volume, gold["id"])  # R3.13: silently replaces the first
    found = oci(
        srv, "bv", "volume-backup-policy-assignment", "get-volume-backup-policy-asset-assignment", "--asset-id", volume
    )["data"]
    assert [a["id"] for a in found] == [second["id"]]
    assert found[0]["policy-id"] == gold["id"]
    err = oci_fails(srv, "bv", "volume-backup-policy-assignment", "get", "--policy-assignment-id", first["id"])
    assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")
    got = oci(srv, "bv", "volume-backup-policy-assignment", "get", "--policy-assignment-id", second["id"])["data"]
    assert got == second

    oci(srv, "bv", "volume-backup-policy", "delete", "--policy-id", mine["id"], "--force")  # unassigned now
    unassign(srv, second["id"])
    none = oci(
        srv, "bv", "volume-backup-policy-assignment", "get-volume-backup-policy-asset-assignment", "--asset-id", volume
    )
    assert none is None or none["data"] == []

    group = "ocid1.volumegroup.oc1.iad." + volume.rsplit(".", 1)[1]
    err = oci_fails(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", group, "--policy-id", gold["id"]
    )
    assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")  # no such group (groups: own module)

    missing = volume[:-6] + "aaaaaa"
    err = oci_fails(
        srv, "bv", "volume-backup-policy-assignment", "create", "--asset-id", missing, "--policy-id", gold["id"]
    )
    assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")


def test_our_cli_manages_policies_and_assignments(srv: Any, world: dict[str, Any]) -> None:
    compartment = world["sdk"].new_compartment("pol-ourcli")
    volume = new_volume(world, compartment, "ours")
    oracle = json.loads(srv.bv("bv", "volume-backup-policy", "list").out)["data"]
    assert sorted(p["display-name"] for p in oracle) == ["bronze", "gold", "silver"]
    created = json.loads(
        srv.bv(
            "bv",
            "volume-backup-policy",
            "create",
            "-c",
            compartment,
            "--display-name",
            "ours",
            "--schedules",
            json.dumps([schedule("ONE_MONTH", 90 * DAY, offsetType="STRUCTURED", dayOfMonth=15)]),
        ).out
    )["data"]
    assert created["schedules"][0]["day-of-month"] == 15
    listed = json.loads(srv.bv("bv", "volume-backup-policy", "list", "-c", compartment).out)["data"]
    assert [p["id"] for p in listed] == [created["id"]]
    updated = json.loads(
        srv.bv("bv", "volume-backup-policy", "update", "--policy-id", created["id"], "--display-name", "renamed").out
    )["data"]
    assert updated["display-name"] == "renamed"
    made = json.loads(
        srv.bv(
            "bv", "volume-backup-policy-assignment", "create", "--asset-id", volume, "--policy-id", created["id"]
        ).out
    )["data"]
    got = json.loads(
        srv.bv(
            "bv", "volume-backup-policy-assignment", "get-volume-backup-policy-asset-assignment", "--asset-id", volume
        ).out
    )["data"]
    assert [a["id"] for a in got] == [made["id"]]
    refused = srv.bv("bv", "volume-backup-policy", "delete", "--policy-id", created["id"], check=False)
    assert refused.rc != 0
    assert "Conflict" in refused.err
    srv.bv("bv", "volume-backup-policy-assignment", "delete", "--policy-assignment-id", made["id"])
    srv.bv("bv", "volume-backup-policy", "delete", "--policy-id", created["id"])
    assert (
        json.loads(srv.bv("bv", "volume-backup-policy", "list", "-c", compartment).out or '{"data": []}')["data"] == []
    )


def test_backup_policy_permissions_follow_volume_family(srv: Any, world: dict[str, Any], tmp_path: Path) -> None:
    """R7.25/R7.26: `manage volume-family` covers backup policies and assignments; `inspect volumes` does not."""
    compartment = world["sdk"].new_compartment("pol-iam")
    volume = new_volume(world, compartment, "iam")
    admin = new_user(srv, tmp_path, "bkadmin")
    reader = new_user(srv, tmp_path, "bkreader")
    for user, verb in ((admin, "manage volume-family"), (reader, "inspect volumes")):
        group = srv.oci("iam", "group", "create", "--name", f"g-{user.name}", "--description", "g").json["data"]["id"]
        srv.oci("iam", "group", "add-user", "--group-id", group, "--user-id", user.id)
        gname = f"g-{user.name}"
        policy(srv, compartment, f"p-{user.name}", f"Allow group {gname} to {verb} in compartment id {compartment}")
    sched = json.dumps([schedule("ONE_DAY", DAY)])
    denied = oci_as(
        srv, reader, "bv", "volume-backup-policy", "create", "-c", compartment, "--schedules", sched, check=False
    )
    assert cli_error(denied)["status"] == 404
    made = oci_as(srv, admin, "bv", "volume-backup-policy", "create", "-c", compartment, "--schedules", sched).json
    pid = made["data"]["id"]
    denied = oci_as(
        srv, reader, "bv", "volume-backup-policy-assignment", "create", "--asset-id", volume, "--policy-id", pid,
        check=False,
    )  # fmt: skip
    assert cli_error(denied)["status"] == 404
    done = oci_as(
        srv, admin, "bv", "volume-backup-policy-assignment", "create", "--asset-id", volume, "--policy-id", pid
    ).json["data"]
    oci_as(
        srv, admin, "bv", "volume-backup-policy-assignment", "delete", "--policy-assignment-id", done["id"], "--force"
    )
    oci_as(srv, admin, "bv", "volume-backup-policy", "delete", "--policy-id", pid, "--force")


def test_scheduler_resumes_after_a_restart_without_doubling(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What ran is recorded: a restart neither repeats a run nor loses the schedule."""
    conf = e2e_conftest()
    data_dir = tmp_path_factory.mktemp("policies-restart") / "data"
    server = conf.start_server(data_dir)
    try:
        world = {"sdk": Sdk(server, IAD)}
        compartment = world["sdk"].new_compartment("pol-restart")
        volume = new_volume(world, compartment, "restarted")
        pol = create_policy(server, compartment, "daily", [schedule("ONE_DAY", 10 * DAY)])
        assign(server, volume, pol["id"])
        advance_clock(server, seconds_past_next(server, 0))
        first = wait_for(
            lambda: scheduled(server, compartment, volume),
            lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
            what="the first scheduled backup",
        )[0]
        offset = int(advance_clock(server, 0)["offsetSeconds"])
        conf.stop_server(server)
        server = conf.start_server(data_dir, port=server.port)
        # The clock offset is not persisted: put it back, so the run already made is due again unless recorded.
        advance_clock(server, offset)
        # A witness that the restarted scheduler has ticked after that: an hourly policy on another volume makes
        # its backup in a tick that also planned the first volume's (one tick covers every assignment).
        witness = new_volume({"sdk": Sdk(server, IAD)}, compartment, "witness")
        hourly = create_policy(server, compartment, "hourly", [schedule("ONE_HOUR", DAY)])
        assign(server, witness, hourly["id"])
        advance_clock(server, 3600)
        wait_for(
            lambda: scheduled(server, compartment, witness),
            lambda items: len(items) == 1 and items[0]["lifecycle-state"] == "AVAILABLE",
            what="the witness's scheduled backup",
        )
        assert [b["id"] for b in scheduled(server, compartment, volume)] == [first["id"]]  # not repeated
        advance_clock(server, DAY)  # and the schedule goes on
        items = wait_for(
            lambda: scheduled(server, compartment, volume),
            lambda items: len(items) >= 2 and all(b["lifecycle-state"] == "AVAILABLE" for b in items),
            what="the next day's scheduled backup",
        )
        assert len(items) == 2
        assert first["id"] in {b["id"] for b in items}
        assert len({b["display-name"] for b in items}) == 2
    finally:
        conf.stop_server(server)
