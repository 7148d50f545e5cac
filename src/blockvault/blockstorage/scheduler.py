"""Backup policies of one region (user-defined CRUD, the Oracle-defined ones, assignments) and the scheduler that
makes their backups on the injected domain clock.

The scheduler (docs/design/backup-policies.md) works in three idempotent steps per region and tick:

1. plan: for every assignment, find each schedule's newest run instant not yet handled (`policies.latest_due`),
   pick at most one to run (`policies.choose`: one per asset per tick, one per local day with priority
   Yearly > Monthly > Weekly > Daily), and record in ONE transaction the marks of every due schedule and the
   intent to back up. A crash before that commit redoes the plan; after it, the intent is there.
2. advance each intent: create the SCHEDULED backup (adopting one a crash left behind, found by its name),
   then, for a policy with `destinationRegion`, copy it there under the assignment's `xrcKmsKeyId` once it is
   AVAILABLE, and give the copy the source's expiration (R3.28, R3.30). The destination is reached through its
   `RegionClient` (in process, or over HTTP when another `blockvault serve` serves it), with calls that are safe
   to send again (a create adopts the copy an earlier attempt made): a destination that is down (`Unavailable`)
   leaves the intent where it is until the next tick, like a disabled key (D1);
3. expire: delete every backup whose `expirationTime` has passed (R3.8); a scheduled volume group backup expires
   as one (DeleteVolumeGroupBackup, members included), never member by member.

Assets are volumes, boot volumes and volume groups. A group's assignment makes SCHEDULED group backups
(`VolumeGroupService.create_group_backup`) and governs its members (R3.13): a member's own assignment keeps its
marks moving but makes no backup while its group has an assignment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from blockvault import ids
from blockvault.blockstorage import policies as pol
from blockvault.blockstorage.groups import VolumeGroup, VolumeGroupService
from blockvault.blockstorage.model import AVAILABLE, FAULTY, TERMINATED, TERMINATING, Volume
from blockvault.blockstorage.regions import RegionClient
from blockvault.blockstorage.service import BlockStorageService, NotImplementedYet
from blockvault.clock import Clock
from blockvault.db import tables
from blockvault.db.engine import reading
from blockvault.db.repos import TableRepo
from blockvault.errors import (
    BlockvaultError,
    Conflict,
    IncorrectState,
    InvalidArgument,
    KeyUnusable,
    MissingParameter,
    NotFound,
    RelatedResourceNotFound,
    Unavailable,
)

log = logging.getLogger(__name__)

ASSET_TYPES = ("volume", "bootvolume", "volumegroup")
GIVE_UP_AFTER = timedelta(days=1)  # a scheduled backup that cannot start within a day of its run is dropped
PENDING, CREATED, COPYING, DONE, FAILED = "PENDING", "CREATED", "COPYING", "DONE", "FAILED"


@dataclass
class Assignment:
    id: str
    asset_id: str
    policy_id: str
    xrc_kms_key_id: str | None
    time_created: datetime


def _wire_time(value: datetime) -> str:
    return value.isoformat()


def _string(details: dict[str, Any], name: str) -> str | None:
    value = details.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(field=name, reason="must be a string")
    return value


def _tags(details: dict[str, Any], name: str, current: dict[str, Any]) -> dict[str, Any]:
    value = details.get(name)
    if value is None:
        return current
    if not isinstance(value, dict):
        raise InvalidArgument(field=name, reason="must be a JSON object")
    return value


class BackupPolicyService:
    """Policies and assignments of one region. Stateless apart from the database: cheap to make per request."""

    def __init__(
        self,
        *,
        engine: Engine,
        blockstorage: BlockStorageService,
        clock: Clock,
        compartment_exists: Callable[[str], bool] | None = None,
        random: Callable[[int], bytes] = os.urandom,
        groups: VolumeGroupService | None = None,
    ) -> None:
        """`groups`: the region's volume groups; without it volume groups cannot be assigned (501)."""
        self._engine, self.blockstorage, self._clock, self._random = engine, blockstorage, clock, random
        self.groups = groups
        self._compartment_exists = compartment_exists
        self.region = blockstorage.region.name
        self.assignments = TableRepo(engine, tables.volume_backup_policy_assignments, Assignment)

    # --- policies ---------------------------------------------------------------------------------------------

    @staticmethod
    def _from_row(row: Any) -> pol.Policy:
        return pol.Policy(
            id=row.id,
            display_name=row.display_name,
            compartment_id=row.compartment_id,
            destination_region=row.destination_region,
            schedules=pol.parse_schedules(json.loads(row.schedules)),
            time_created=datetime.fromisoformat(row.time_created),
            freeform_tags=json.loads(row.freeform_tags),
            defined_tags=json.loads(row.defined_tags),
        )

    def get_policy(self, policy_id: str) -> pol.Policy:
        for oracle in pol.oracle_policies():
            if oracle.id == policy_id:
                return oracle
        t = tables.volume_backup_policies
        with reading(self._engine) as conn:
            row = conn.execute(select(t).where(t.c.id == policy_id)).first()
        if row is None:
            raise NotFound(kind="volume backup policy", ident=policy_id)
        return self._from_row(row)

    def list_policies(self, compartment_id: str | None) -> list[pol.Policy]:
        """No compartment: the Oracle-defined policies; a compartment: the user-defined policies in it (OCI)."""
        if not compartment_id:
            return pol.oracle_policies()
        t = tables.volume_backup_policies
        with reading(self._engine) as conn:
            rows = conn.execute(select(t).where(t.c.compartment_id == compartment_id).order_by(t.c.time_created)).all()
        return [self._from_row(r) for r in rows]

    def _check_destination(self, value: Any) -> str | None:
        """A cross-region copy goes to another region this blockvault serves (D11)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise InvalidArgument(field="destinationRegion", reason="must be a region name such as us-phoenix-1")
        if value == self.region:
            raise InvalidArgument(
                field="destinationRegion", reason=f"the policy is in {value}; copies go to another region"
            )
        if value not in self.blockstorage.peers:
            served = ", ".join(sorted(self.blockstorage.peers)) or "none"
            raise InvalidArgument(
                field="destinationRegion", reason=f"{value!r} is not a region this blockvault serves (others: {served})"
            )
        return value

    def _store(self, policy: pol.Policy, conn: Any, *, new: bool) -> None:
        values = {
            "compartment_id": policy.compartment_id,
            "display_name": policy.display_name,
            "destination_region": policy.destination_region,
            "schedules": json.dumps([s.to_json() for s in policy.schedules]),
            "time_created": _wire_time(policy.time_created),
            "freeform_tags": json.dumps(policy.freeform_tags, sort_keys=True),
            "defined_tags": json.dumps(policy.defined_tags, sort_keys=True),
        }
        t = tables.volume_backup_policies
        if new:
            conn.execute(insert(t).values(id=policy.id, **values))
        else:
            conn.execute(update(t).where(t.c.id == policy.id).values(**values))

    def create_policy(self, details: dict[str, Any]) -> pol.Policy:
        compartment_id = _string(details, "compartmentId")
        if not compartment_id:
            raise MissingParameter(field="compartmentId")
        ids.parse(compartment_id, field="compartmentId")
        if self._compartment_exists is not None and not self._compartment_exists(compartment_id):
            raise RelatedResourceNotFound(field="compartmentId", ident=compartment_id)
        now = self._clock.now()
        policy = pol.Policy(
            id=ids.new("volumebackuppolicy", random=self._random),
            display_name=_string(details, "displayName") or f"volumebackuppolicy{now:%Y%m%d%H%M%S}",
            compartment_id=compartment_id,
            destination_region=self._check_destination(details.get("destinationRegion")),
            schedules=pol.parse_schedules(details.get("schedules")),
            time_created=now,
            freeform_tags=_tags(details, "freeformTags", {}),
            defined_tags=_tags(details, "definedTags", {}),
        )
        with self._engine.begin() as conn:
            self._store(policy, conn, new=True)
        return policy

    def _user_policy(self, policy_id: str, action: str) -> pol.Policy:
        policy = self.get_policy(policy_id)
        if policy.oracle_defined:
            raise InvalidArgument(
                field="policyId", reason=f"{policy.display_name} is Oracle-defined and cannot be {action} (R3.10)"
            )
        return policy

    def update_policy(self, policy_id: str, details: dict[str, Any]) -> pol.Policy:
        """Absent fields stay; `schedules` replaces the whole list; `destinationRegion: ""` turns copying off."""
        policy = self._user_policy(policy_id, "modified")
        updated = replace(
            policy,
            display_name=_string(details, "displayName") or policy.display_name,
            destination_region=(
                self._check_destination(details["destinationRegion"])
                if "destinationRegion" in details
                else policy.destination_region
            ),
            schedules=pol.parse_schedules(details["schedules"])
            if details.get("schedules") is not None
            else policy.schedules,
            freeform_tags=_tags(details, "freeformTags", policy.freeform_tags),
            defined_tags=_tags(details, "definedTags", policy.defined_tags),
        )
        with self._engine.begin() as conn:
            self._store(updated, conn, new=False)
        return updated

    def delete_policy(self, policy_id: str) -> None:
        """R3.13: only a policy assigned to nothing can be deleted (409 Conflict otherwise)."""
        policy = self._user_policy(policy_id, "deleted")
        with self._engine.begin() as conn:
            a = tables.volume_backup_policy_assignments
            used = conn.execute(select(a.c.asset_id).where(a.c.policy_id == policy.id)).all()
            if used:
                raise Conflict(
                    kind="volume backup policy",
                    ident=policy.id,
                    reason=f"it is assigned to {len(used)} asset(s) ({', '.join(r.asset_id for r in used[:3])}); "
                    "delete those assignments first",
                )
            t = tables.volume_backup_policies
            conn.execute(delete(t).where(t.c.id == policy.id))

    # --- assignments ------------------------------------------------------------------------------------------

    def asset(self, asset_id: Any) -> Volume | VolumeGroup:
        """The live volume, boot volume or volume group an assignment names (else 404)."""
        if not isinstance(asset_id, str) or not asset_id:
            raise MissingParameter(field="assetId")
        if ids.expect(asset_id, *ASSET_TYPES, field="assetId").resource_type == "volumegroup" and self.groups is None:
            raise NotImplementedYet(feature=f"Volume groups in {self.region}")
        found = self.find_asset(asset_id)
        if found is None:
            raise NotFound(kind="asset", ident=asset_id)
        return found

    def find_asset(self, asset_id: str) -> Volume | VolumeGroup | None:
        """The asset if it is live (not TERMINATING or TERMINATED), else None."""
        if is_group(asset_id):
            group = self.groups.groups.get(asset_id) if self.groups is not None else None
            return None if group is None or group.state in (TERMINATING, TERMINATED) else group
        volume = self.blockstorage.volumes.get(asset_id)
        return None if volume is None or volume.state in (TERMINATING, TERMINATED) else volume

    def create_assignment(self, asset_id: str, policy_id: str, xrc_kms_key_id: str | None) -> Assignment:
        """R3.13: an asset has at most one assignment; a new one replaces the old (and its schedule marks).
        R3.10: a volume group takes only user-defined policies."""
        self.asset(asset_id)
        pol.check_assignable(self.get_policy(policy_id), group=is_group(asset_id))
        assignment = Assignment(
            id=ids.new("volumebackuppolicyassignment", random=self._random),
            asset_id=asset_id,
            policy_id=policy_id,
            xrc_kms_key_id=xrc_kms_key_id or None,
            time_created=self._clock.now(),
        )
        a = tables.volume_backup_policy_assignments
        with self._engine.begin() as conn:
            for old in self.assignments.find(a.c.asset_id == asset_id, conn=conn):
                self._forget_assignment(conn, old.id)
            self.assignments.insert(assignment, conn)
        return assignment

    def get_assignment(self, assignment_id: str) -> Assignment:
        found = self.assignments.get(assignment_id)
        if found is None:
            raise NotFound(kind="volume backup policy assignment", ident=assignment_id)
        return found

    def asset_assignments(self, asset_id: str) -> list[Assignment]:
        return self.assignments.find(tables.volume_backup_policy_assignments.c.asset_id == asset_id)

    def delete_assignment(self, assignment_id: str) -> None:
        self.get_assignment(assignment_id)
        with self._engine.begin() as conn:
            self._forget_assignment(conn, assignment_id)

    @staticmethod
    def _forget_assignment(conn: Any, assignment_id: str) -> None:
        a, m = tables.volume_backup_policy_assignments, tables.backup_schedule_marks
        conn.execute(delete(a).where(a.c.id == assignment_id))
        conn.execute(delete(m).where(m.c.assignment_id == assignment_id))

    # --- the scheduler's steps (one region) ---------------------------------------------------------------------

    def plan(self, now: datetime) -> int:
        """Step 1: record marks and intents for what is due; returns how many intents were recorded."""
        made = 0
        everything = self.assignments.find()
        assigned_groups = {a.asset_id for a in everything if is_group(a.asset_id)}
        for assignment in everything:
            if is_group(assignment.asset_id) and self.groups is None:
                continue  # not composed with volume groups: keep the assignment, make nothing
            asset = self.find_asset(assignment.asset_id)
            if asset is None:
                with self._engine.begin() as conn:  # OCI drops the assignment of a deleted volume or group
                    self._forget_assignment(conn, assignment.id)
                continue
            try:
                policy = self.get_policy(assignment.policy_id)
            except NotFound:
                continue
            governed = (
                isinstance(asset, Volume)
                and asset.volume_group_id in assigned_groups
                and self.find_asset(asset.volume_group_id) is not None
            )
            try:
                made += self._plan_one(assignment, policy, now, governed=governed)
            except (BlockvaultError, SQLAlchemyError) as exc:  # one bad assignment must not stop the others
                log.warning("planning assignment %s failed: %s", assignment.id, exc)
        return made

    def _marks(self, conn: Any, assignment_id: str) -> dict[str, datetime]:
        m = tables.backup_schedule_marks
        rows = conn.execute(select(m).where(m.c.assignment_id == assignment_id)).all()
        return {r.period: datetime.fromisoformat(r.last_instant) for r in rows}

    def _plan_one(self, assignment: Assignment, policy: pol.Policy, now: datetime, *, governed: bool = False) -> int:
        """Read first, write only when something is due: most ticks change nothing and take no write lock. (The
        scheduler is the only writer of marks, so what was read is still true in the write transaction.)
        `governed`: the volume's group has an assignment, which governs it (R3.13): the marks move on (so nothing
        missed meanwhile is caught up when the group's assignment goes) but no backup is made."""
        since = assignment.time_created
        zones = [pol.zone_of(s, self.region) for s in policy.schedules]
        with reading(self._engine) as conn:
            marks = self._marks(conn, assignment.id)
        due: list[pol.Due] = []
        for n, schedule in enumerate(policy.schedules):
            after = max(since, marks.get(schedule.period, since))
            instant = pol.latest_due(schedule, zones[n], after, now)
            if instant is not None:
                due.append(pol.Due(n, schedule, instant))
        if not due:
            return 0
        chosen = None if governed else pol.choose(due, policy.schedules, zones, since)
        with self._engine.begin() as conn:
            m = tables.backup_schedule_marks
            for item in due:
                period = item.schedule.period
                conn.execute(delete(m).where(m.c.assignment_id == assignment.id, m.c.period == period))
                conn.execute(
                    insert(m).values(assignment_id=assignment.id, period=period, last_instant=_wire_time(item.instant))
                )
            if chosen is None:
                return 0
            instant = chosen.instant
            conn.execute(
                insert(tables.scheduled_backups).values(
                    id=f"{assignment.id}/{chosen.schedule.period}/{_wire_time(instant)}",
                    assignment_id=assignment.id,
                    asset_id=assignment.asset_id,
                    period=chosen.schedule.period,
                    instant=_wire_time(instant),
                    display_name=f"Auto-backup for {instant:%Y-%m-%d %H:%M:%S} via policy: {policy.display_name}",
                    backup_type=chosen.schedule.backup_type,
                    retention_seconds=chosen.schedule.retention_seconds,
                    state=PENDING,
                    destination_region=policy.destination_region,
                    xrc_kms_key_id=assignment.xrc_kms_key_id,
                    time_created=_wire_time(now),
                )
            )
            return 1

    def _set_intent(self, intent_id: str, **values: Any) -> None:
        s = tables.scheduled_backups
        with self._engine.begin() as conn:
            conn.execute(update(s).where(s.c.id == intent_id).values(**values))

    def advance(self, now: datetime, regions: dict[str, BackupPolicyService]) -> None:
        """Step 2: move every open intent one step (create the backup, copy it, date the copy)."""
        s = tables.scheduled_backups
        with reading(self._engine) as conn:
            rows = conn.execute(select(s).where(s.c.state.in_([PENDING, CREATED, COPYING]))).all()
        for row in rows:
            try:
                if row.state == PENDING:
                    self._start_backup(row, now)
                elif row.state == CREATED:
                    self._start_copy(row, regions)
                else:
                    self._finish_copy(row, regions)
            except (KeyUnusable, IncorrectState, Unavailable) as exc:  # transient (D1, a backup in progress, the
                # destination's process down): try again later
                if now - datetime.fromisoformat(row.instant) > GIVE_UP_AFTER:
                    self._set_intent(row.id, state=FAILED, error=exc.text)
            except BlockvaultError as exc:
                log.warning("scheduled backup %s failed: %s", row.id, exc)
                self._set_intent(row.id, state=FAILED, error=exc.text)

    def _start_backup(self, row: Any, now: datetime) -> None:
        if is_group(row.asset_id):
            self._start_group_backup(row, now)
            return
        bs = self.blockstorage
        volume = bs.volumes.get(row.asset_id)
        if volume is None or volume.state in (TERMINATING, TERMINATED):
            self._set_intent(row.id, state=FAILED, error="the asset is gone")
            return
        b = tables.backups
        existing = bs.backups.find(
            b.c.volume_id == volume.id, b.c.source_type == "SCHEDULED", b.c.display_name == row.display_name
        )
        if existing:  # a crash after create_backup committed but before this intent was updated
            self._set_intent(row.id, state=CREATED, backup_id=existing[0].id)
            return
        field = "volumeId" if volume.kind == "volume" else "bootVolumeId"
        backup, _ = bs.create_backup(
            volume.kind,
            {field: volume.id, "type": row.backup_type, "displayName": row.display_name},
            source_type="SCHEDULED",
            expiration_time=now + timedelta(seconds=row.retention_seconds),
        )
        self._set_intent(row.id, state=CREATED, backup_id=backup.id)

    def _start_group_backup(self, row: Any, now: datetime) -> None:
        """A SCHEDULED volume group backup: the group backup and every member backup carry the expiration."""
        groups = self._groups()
        group = self.find_asset(row.asset_id)
        if group is None:
            self._set_intent(row.id, state=FAILED, error="the asset is gone")
            return
        c = tables.volume_group_backups.c
        existing = groups.group_backups.find(
            c.volume_group_id == group.id, c.source_type == "SCHEDULED", c.display_name == row.display_name
        )
        if existing:  # a crash after create_group_backup committed but before this intent was updated
            self._set_intent(row.id, state=CREATED, backup_id=existing[0].id)
            return
        view, _ = groups.create_group_backup(
            {"volumeGroupId": group.id, "type": row.backup_type, "displayName": row.display_name},
            source_type="SCHEDULED",
            expiration_time=now + timedelta(seconds=row.retention_seconds),
        )
        self._set_intent(row.id, state=CREATED, backup_id=view.backup.id)

    def _groups(self) -> VolumeGroupService:
        if self.groups is None:
            raise NotImplementedYet(feature=f"Volume groups in {self.region}")
        return self.groups

    def _start_copy(self, row: Any, regions: dict[str, BackupPolicyService]) -> None:
        if is_group(row.asset_id):
            self._start_group_copy(row, regions)
            return
        backup = self.blockstorage.backups.get(row.backup_id)
        destination = self._copy_destination(row, backup.state if backup is not None else None, "backup")
        if destination is None or backup is None:
            return
        details = {"displayName": row.display_name, "kmsKeyId": row.xrc_kms_key_id}
        copy = destination.create_scheduled_copy(backup.kind, self.region, backup.id, details)
        self._set_intent(row.id, state=COPYING, copy_id=copy.id)

    def _start_group_copy(self, row: Any, regions: dict[str, BackupPolicyService]) -> None:
        """A group backup copies as CopyVolumeGroupBackup does (VolumeGroupService.create_group_backup_copy)."""
        groups = self._groups()
        found = groups.group_backups.get(row.backup_id)
        view = groups.backup_view(found) if found is not None else None
        destination = self._copy_destination(row, view.state if view is not None else None, "volume group backup")
        if destination is None or view is None:
            return
        details = {"displayName": row.display_name, "kmsKeyId": row.xrc_kms_key_id}
        copy = destination.create_scheduled_group_copy(self.region, view, details)
        self._set_intent(row.id, state=COPYING, copy_id=copy.backup.id)

    def _copy_destination(self, row: Any, state: str | None, what: str) -> RegionClient | None:
        """The region a finished scheduled backup (in ``state``; None: gone) copies to. None when there is nothing
        to start: still in progress, failed, or no copy wanted (the intent is settled then)."""
        if state is None or state in (TERMINATING, TERMINATED, FAULTY):
            self._set_intent(row.id, state=FAILED, error=f"the scheduled {what} did not complete")
            return None
        if state != AVAILABLE:
            return None
        if not row.destination_region:
            self._set_intent(row.id, state=DONE)
            return None
        destination = self.blockstorage.peers.get(row.destination_region)
        if destination is None:
            self._set_intent(row.id, state=FAILED, error=f"{row.destination_region} is not served")
        return destination

    def _finish_copy(self, row: Any, regions: dict[str, BackupPolicyService]) -> None:
        """R3.30: the copy keeps the source's retention (a group copy: its members too). Set in the destination once
        no copy job is running there, so the jobs' own final saves cannot undo it."""
        destination = self.blockstorage.peers.get(row.destination_region)
        if destination is None:
            self._set_intent(row.id, state=FAILED, error=f"{row.destination_region} is not served")
            return
        if is_group(row.asset_id):
            found = self._groups().group_backups.get(row.backup_id)
            expires = found.expiration_time if found is not None else None
            kind = "volumegroup"
        else:
            source = self.blockstorage.backups.get(row.backup_id)
            expires = source.expiration_time if source is not None else None
            kind = source.kind if source is not None else "volume"
        try:
            done = destination.date_scheduled_copy(kind, row.copy_id, expires, int(row.retention_seconds))
        except NotFound:
            self._set_intent(row.id, state=FAILED, error="the copy is gone")
            return
        if done:
            self._set_intent(row.id, state=DONE)

    def expire(self, now: datetime) -> list[str]:
        """Step 3 (R3.8): delete backups past their expirationTime; returns the ids whose deletion started. A
        scheduled group backup is deleted as one (its members with it, R3.33); its members are never expired on
        their own, so a group backup cannot lose a member to retention and become unrestorable."""
        started: list[str] = []
        members: set[str] = set()
        if self.groups is not None:
            g = tables.volume_group_backups.c
            for found in self.groups.group_backups.find(g.expiration_time.is_not(None), g.state != TERMINATED):
                members.update(found.members.values())
                if found.expiration_time is None or found.expiration_time > now:
                    continue
                if self.groups.backup_view(found).state not in (AVAILABLE, FAULTY):
                    continue
                try:
                    self.groups.delete_group_backup(found.id)
                    started.append(found.id)
                except (IncorrectState, Conflict) as exc:
                    log.info("expired volume group backup %s kept for now: %s", found.id, exc)
        b = tables.backups
        for backup in self.blockstorage.backups.find(
            b.c.expiration_time.is_not(None), b.c.state.in_([AVAILABLE, FAULTY])
        ):
            if backup.expiration_time is None or backup.expiration_time > now or backup.id in members:
                continue
            try:
                self.blockstorage.delete_backup(backup.kind, backup.id)
                started.append(backup.id)
            except (IncorrectState, Conflict) as exc:  # a backup of the volume is in progress: next tick
                log.info("expired backup %s kept for now: %s", backup.id, exc)
        return started

    def intents(self) -> list[dict[str, Any]]:
        """What the scheduler recorded (for tests and the design doc's examples)."""
        s = tables.scheduled_backups
        with reading(self._engine) as conn:
            return [dict(r._mapping) for r in conn.execute(select(s).order_by(s.c.time_created)).all()]


def is_group(asset_id: str) -> bool:
    """Whether an asset OCID names a volume group (assignments hold volumes, boot volumes and groups)."""
    return asset_id.startswith("ocid1.volumegroup.")


class Scheduler:
    """The background thread: every `interval` seconds (and at once after `wake()`) each region plans, advances
    and expires, on the domain clock. One per process; a restart resumes from the database."""

    def __init__(
        self,
        regions: dict[str, BackupPolicyService],
        clock: Clock,
        *,
        interval: float = 1.0,
        stop: threading.Event | None = None,
    ) -> None:
        """`stop`: an event the owner sets at shutdown (the server's own), so no separate stop call is needed."""
        self.regions, self._clock, self._interval = regions, clock, interval
        self._stop = stop or threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backup-scheduler", daemon=True)
        self._lock = threading.Lock()

    def tick(self, now: datetime | None = None) -> None:
        with self._lock:
            moment = now or self._clock.now()
            for name, service in self._each():
                try:
                    service.plan(moment)
                    service.advance(moment, self.regions)
                    service.expire(moment)
                except Exception:
                    log.exception("backup scheduler failed in %s", name)

    def _each(self) -> Iterable[tuple[str, BackupPolicyService]]:
        return sorted(self.regions.items())

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            if self._stop.is_set():
                break
            self._wake.wait(timeout=self._interval)
            self._wake.clear()


__all__ = ["Assignment", "BackupPolicyService", "Scheduler", "is_group"]
