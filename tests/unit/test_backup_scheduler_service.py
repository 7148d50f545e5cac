"""The scheduler's steps (plan, advance, expire) in process, with explicit times and jobs run by hand: crash and
restart points, adoption of a backup a crash left behind, transient failures, retention, volume groups
(blockstorage/scheduler.py, docs/design/backup-policies.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from blockvault.backup.objectstore.local import LocalObjectStore
from blockvault.blockstorage.groups import VolumeGroupService
from blockvault.blockstorage.jobs import JobRunner
from blockvault.blockstorage.scheduler import FAILED, PENDING, BackupPolicyService
from blockvault.blockstorage.service import BlockStorageService, Region
from blockvault.clock import OffsetClock
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.errors import InvalidArgument
from blockvault.vault.keystore.software import SoftwareKeystore
from blockvault.vault.service import VaultService

AD = "bvlt:US-ASHBURN-AD-1"
COMPARTMENT = "ocid1.compartment.oc1..aaaapolicies"
DAY = 86400


@dataclass
class Stack:
    bs: BlockStorageService
    runner: JobRunner
    engine: Engine
    groups: VolumeGroupService

    def run_jobs(self) -> None:
        for _ in range(20):
            pending = self.runner.pending()
            if not pending:
                return
            for job in pending:
                self.runner.run_one(job)
        raise AssertionError("jobs did not finish")

    def service(self) -> BackupPolicyService:
        """A fresh service object: what a restarted process would build from the same database."""
        return BackupPolicyService(engine=self.engine, blockstorage=self.bs, clock=OffsetClock(), groups=self.groups)

    def volume(self) -> str:
        volume, _ = self.bs.create_volume(
            "volume", {"compartmentId": COMPARTMENT, "availabilityDomain": AD, "sizeInGBs": 50, "displayName": "v"}
        )
        self.run_jobs()
        return volume.id

    def scheduled(self, volume_id: str) -> list[object]:
        return [b for b in self.bs.list_backups("volume", None, volume_id, None, None) if b.source_type == "SCHEDULED"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    engine = make_engine(sqlite_url(tmp_path / "meta.db"))
    upgrade(engine, "region")
    keystore = SoftwareKeystore(tmp_path / "keystore" / "keys.db", bytes(range(32)))
    clock = OffsetClock()
    vault = VaultService(
        engine=engine,
        keystore=keystore,
        clock=clock,
        region="us-ashburn-1",
        region_key="iad",
        endpoint="http://127.0.0.1:1/us-ashburn-1/",
    )
    runner = JobRunner(engine, region_key="iad", clock=clock)  # never started: the test runs jobs by hand
    bs = BlockStorageService(
        engine=engine,
        vault=vault,
        objects=LocalObjectStore(tmp_path / "objects"),
        region=Region("us-ashburn-1", "iad", (AD,), tmp_path / "region"),
        clock=clock,
        runner=runner,
        compartment_exists=lambda _c: True,
    )
    try:
        yield Stack(bs, runner, engine, VolumeGroupService(blockstorage=bs, engine=engine, clock=clock))
    finally:
        bs.close()
        keystore.close()
        engine.dispose()


DAILY = [{"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 2 * DAY}]


def _assigned(stack: Stack) -> tuple[BackupPolicyService, str, datetime]:
    svc = stack.service()
    volume = stack.volume()
    policy = svc.create_policy({"compartmentId": COMPARTMENT, "displayName": "daily", "schedules": DAILY})
    assignment = svc.create_assignment(volume, policy.id, None)
    midnight = (assignment.time_created + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return svc, volume, midnight


def test_a_restart_after_planning_neither_repeats_nor_loses_the_run(stack: Stack) -> None:
    svc, volume, midnight = _assigned(stack)
    now = midnight + timedelta(minutes=5)
    assert svc.plan(now) == 1
    assert [i["state"] for i in svc.intents()] == [PENDING]
    restarted = stack.service()  # the process died before making the backup
    assert restarted.plan(now) == 0  # the run is marked: not planned twice
    restarted.advance(now, {"us-ashburn-1": restarted})
    stack.run_jobs()
    made = stack.scheduled(volume)
    assert len(made) == 1
    assert made[0].expiration_time == now + timedelta(days=2)  # R3.8: decision time + retentionSeconds
    assert restarted.plan(now + timedelta(hours=23)) == 0  # the next run is tomorrow
    assert restarted.plan(now + timedelta(days=1)) == 1


def test_a_backup_a_crash_left_behind_is_adopted(stack: Stack) -> None:
    svc, volume, midnight = _assigned(stack)
    now = midnight + timedelta(minutes=5)
    svc.plan(now)
    intent = svc.intents()[0]
    # the crash: create_backup committed, the intent was not updated
    stack.bs.create_backup(
        "volume", {"volumeId": volume, "displayName": intent["display_name"]}, source_type="SCHEDULED"
    )
    stack.service().advance(now, {})
    assert len(stack.scheduled(volume)) == 1
    assert svc.intents()[0]["backup_id"] == stack.scheduled(volume)[0].id  # type: ignore[attr-defined]


def test_a_run_blocked_by_a_backup_in_progress_waits_then_is_dropped_after_a_day(stack: Stack) -> None:
    svc, volume, midnight = _assigned(stack)
    stack.bs.create_backup("volume", {"volumeId": volume})  # a manual backup, left CREATING (jobs not run)
    now = midnight + timedelta(minutes=5)
    svc.plan(now)
    svc.advance(now, {})
    assert svc.intents()[0]["state"] == PENDING  # IncorrectState: transient, retried
    svc.advance(now + timedelta(days=1, minutes=1), {})
    intent = svc.intents()[0]
    assert intent["state"] == FAILED
    assert "BACKUP_IN_PROGRESS" in intent["error"]
    assert stack.scheduled(volume) == []


def test_only_expired_scheduled_backups_are_deleted(stack: Stack) -> None:
    svc, volume, midnight = _assigned(stack)
    manual, _ = stack.bs.create_backup("volume", {"volumeId": volume})
    stack.run_jobs()
    now = midnight + timedelta(minutes=5)
    svc.plan(now)
    svc.advance(now, {})
    stack.run_jobs()
    (made,) = stack.scheduled(volume)
    assert svc.expire(now + timedelta(days=2) - timedelta(seconds=1)) == []
    assert svc.expire(now + timedelta(days=2)) == [made.id]  # type: ignore[attr-defined]
    stack.run_jobs()
    assert stack.bs.backups.get(made.id).state == "TERMINATED"  # type: ignore[attr-defined, union-attr]
    assert svc.expire(now + timedelta(days=3650)) == []
    assert stack.bs.backups.get(manual.id).state == "AVAILABLE"  # type: ignore[union-attr]


def test_a_deleted_volume_loses_its_assignment(stack: Stack) -> None:
    svc, volume, midnight = _assigned(stack)
    stack.bs.delete_volume("volume", volume)
    stack.run_jobs()
    assert svc.plan(midnight + timedelta(minutes=5)) == 0
    assert svc.asset_assignments(volume) == []


def _group(stack: Stack, *volume_ids: str) -> str:
    details = {"type": "volumeIds", "volumeIds": list(volume_ids)}
    view, _ = stack.groups.create_group(
        {"compartmentId": COMPARTMENT, "availabilityDomain": AD, "displayName": "g", "sourceDetails": details}
    )
    return view.group.id


def test_a_group_assignment_makes_scheduled_group_backups_that_expire_as_one(stack: Stack) -> None:
    svc, v1, midnight = _assigned(stack)  # v1 has its own daily assignment
    v2 = stack.volume()
    group = _group(stack, v1, v2)
    gold = next(p for p in svc.list_policies(None) if p.display_name == "gold")
    with pytest.raises(InvalidArgument, match="Oracle-defined"):  # R3.10
        svc.create_assignment(group, gold.id, None)
    policy = svc.create_policy({"compartmentId": COMPARTMENT, "displayName": "group-daily", "schedules": DAILY})
    svc.create_assignment(group, policy.id, None)

    now = midnight + timedelta(minutes=5)
    assert svc.plan(now) == 1  # the group's run; v1's own is governed by its group (R3.13)
    assert [i["asset_id"] for i in svc.intents()] == [group]
    svc.advance(now, {})
    stack.run_jobs()
    (made,) = stack.groups.list_group_backups(None, group, None)
    assert (made.state, made.backup.source_type) == ("AVAILABLE", "SCHEDULED")
    assert made.backup.expiration_time == now + timedelta(days=2)
    assert {(b.source_type, b.expiration_time) for b in made.members} == {("SCHEDULED", now + timedelta(days=2))}
    assert sorted(b.volume_id for b in made.members) == sorted([v1, v2])

    # Retention deletes the group backup as one, never its members on their own (R3.33).
    assert svc.expire(now + timedelta(days=2) - timedelta(seconds=1)) == []
    assert svc.expire(now + timedelta(days=2)) == [made.backup.id]
    stack.run_jobs()
    gone = stack.groups.get_group_backup(made.backup.id)
    assert gone.state == "TERMINATED"
    assert {b.state for b in gone.members} == {"TERMINATED"}


def test_a_governed_member_skips_its_runs_and_resumes_when_its_group_goes(stack: Stack) -> None:
    svc, v1, midnight = _assigned(stack)
    group = _group(stack, v1)
    policy = svc.create_policy({"compartmentId": COMPARTMENT, "displayName": "group-daily", "schedules": DAILY})
    svc.create_assignment(group, policy.id, None)
    now = midnight + timedelta(minutes=5)
    assert svc.plan(now) == 1
    stack.groups.delete_group(group)
    # The run v1 skipped while governed is not caught up; its next one runs, and the group's assignment is gone.
    assert svc.plan(now + timedelta(minutes=1)) == 0
    assert svc.asset_assignments(group) == []
    assert svc.plan(now + timedelta(days=1)) == 1
    assert [i["asset_id"] for i in svc.intents()] == [group, v1]
