"""Backup policies as values: schedule validation, the Oracle-defined policies, and when a schedule runs (pure).

Nothing here does I/O or reads a clock: callers pass `now`. docs/design/backup-policies.md states the rules:

- a schedule's run instants: one per period, at the period's boundary in the schedule's time zone shifted by the
  offset (NUMERIC_SECONDS: `offsetSeconds`; STRUCTURED: `hourOfDay` / `dayOfWeek` / `dayOfMonth` / `month`);
  boundaries are the top of the hour, midnight, Monday midnight, the 1st of the month, January 1st;
- a `dayOfMonth` past the month's end runs on its last day (29/30/31 in February run on the 28th or 29th);
- `latest_due` gives the newest instant in (after, now], which is all the scheduler needs: after a clock jump it
  runs each due schedule once, never every missed occurrence (the catch-up rule);
- priority when several fall on one day (R3.13): Yearly > Monthly > Weekly > Daily > Hourly.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from blockvault.errors import InvalidArgument

PERIODS = ("ONE_HOUR", "ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR")
RANK = {period: n for n, period in enumerate(PERIODS)}  # higher wins (R3.13)
BACKUP_TYPES = ("FULL", "INCREMENTAL")
OFFSET_TYPES = ("STRUCTURED", "NUMERIC_SECONDS")
TIME_ZONES = ("UTC", "REGIONAL_DATA_CENTER_TIME")
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MONTHS = tuple(calendar.month_name[m].upper() for m in range(1, 13))

HOUR, DAY = 3600, 86400
# offsetSeconds must fall inside the shortest instance of its period, so every period runs exactly once.
MAX_OFFSET = {"ONE_HOUR": HOUR, "ONE_DAY": DAY, "ONE_WEEK": 7 * DAY, "ONE_MONTH": 28 * DAY, "ONE_YEAR": 365 * DAY}
MAX_RETENTION = 100 * 365 * DAY

# REGIONAL_DATA_CENTER_TIME: the data centre's local time; unknown regions run on UTC.
REGION_TIME_ZONES = {
    "us-ashburn-1": "America/New_York",
    "us-phoenix-1": "America/Phoenix",
    "us-sanjose-1": "America/Los_Angeles",
    "us-chicago-1": "America/Chicago",
    "ca-toronto-1": "America/Toronto",
    "eu-frankfurt-1": "Europe/Berlin",
    "uk-london-1": "Europe/London",
    "ap-tokyo-1": "Asia/Tokyo",
}


@dataclass(frozen=True)
class Schedule:
    backup_type: str
    period: str
    retention_seconds: int
    offset_type: str  # NUMERIC_SECONDS also stands for "omitted" (an older client, R3.12)
    offset_seconds: int = 0
    hour_of_day: int = 0
    day_of_week: str = "MONDAY"
    day_of_month: int = 1
    month: str = "JANUARY"
    time_zone: str = "UTC"

    @property
    def rank(self) -> int:
        return RANK[self.period]

    def to_json(self) -> dict[str, Any]:
        """The wire form (VolumeBackupSchedule); STRUCTURED shows only the fields its period uses."""
        out: dict[str, Any] = {
            "backupType": self.backup_type,
            "period": self.period,
            "retentionSeconds": self.retention_seconds,
            "offsetType": self.offset_type,
            "timeZone": self.time_zone,
            "offsetSeconds": self.offset_seconds if self.offset_type == "NUMERIC_SECONDS" else None,
            "hourOfDay": None,
            "dayOfWeek": None,
            "dayOfMonth": None,
            "month": None,
        }
        if self.offset_type == "STRUCTURED":
            if self.period != "ONE_HOUR":
                out["hourOfDay"] = self.hour_of_day
            if self.period == "ONE_WEEK":
                out["dayOfWeek"] = self.day_of_week
            if self.period in ("ONE_MONTH", "ONE_YEAR"):
                out["dayOfMonth"] = self.day_of_month
            if self.period == "ONE_YEAR":
                out["month"] = self.month
        return out


@dataclass(frozen=True)
class Policy:
    id: str
    display_name: str
    compartment_id: str | None  # None: Oracle-defined
    destination_region: str | None
    schedules: tuple[Schedule, ...]
    time_created: datetime
    freeform_tags: dict[str, str]
    defined_tags: dict[str, dict[str, Any]]

    @property
    def oracle_defined(self) -> bool:
        return self.compartment_id is None


# --- validation ---------------------------------------------------------------------------------------------------


def _int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field=field, reason="must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field=field, reason=f"must be between {low} and {high}")
    return value


def _enum(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.upper() not in allowed:
        raise InvalidArgument(field=field, reason=f"must be one of {', '.join(allowed)}")
    return value.upper()


def parse_schedule(raw: Any, field: str = "schedules[0]") -> Schedule:
    """One VolumeBackupSchedule from its JSON; errors name the exact field (400 InvalidParameter)."""
    if not isinstance(raw, dict):
        raise InvalidArgument(field=field, reason="must be a VolumeBackupSchedule object")
    for name in ("backupType", "period", "retentionSeconds"):
        if raw.get(name) is None:
            raise InvalidArgument(field=f"{field}.{name}", reason="is required")
    backup_type = _enum(raw["backupType"], f"{field}.backupType", BACKUP_TYPES)
    period = _enum(raw["period"], f"{field}.period", PERIODS)
    retention = _int(raw["retentionSeconds"], f"{field}.retentionSeconds", 1, MAX_RETENTION)
    time_zone = _enum(raw.get("timeZone") or "UTC", f"{field}.timeZone", TIME_ZONES)
    offset_type = _enum(raw.get("offsetType") or "NUMERIC_SECONDS", f"{field}.offsetType", OFFSET_TYPES)
    if offset_type == "NUMERIC_SECONDS":
        offset = raw.get("offsetSeconds")
        offset = 0 if offset is None else _int(offset, f"{field}.offsetSeconds", 0, MAX_OFFSET[period] - 1)
        return Schedule(backup_type, period, retention, offset_type, offset_seconds=offset, time_zone=time_zone)
    # STRUCTURED: fields an inapplicable period does not use are ignored, as OCI documents.
    hour, weekday, mday, month = 0, "MONDAY", 1, "JANUARY"
    if period != "ONE_HOUR" and raw.get("hourOfDay") is not None:
        hour = _int(raw["hourOfDay"], f"{field}.hourOfDay", 0, 23)
    if period == "ONE_WEEK" and raw.get("dayOfWeek") is not None:
        weekday = _enum(raw["dayOfWeek"], f"{field}.dayOfWeek", DAYS)
    if period in ("ONE_MONTH", "ONE_YEAR") and raw.get("dayOfMonth") is not None:
        mday = _int(raw["dayOfMonth"], f"{field}.dayOfMonth", 1, 31)
    if period == "ONE_YEAR" and raw.get("month") is not None:
        month = _enum(raw["month"], f"{field}.month", MONTHS)
    if period == "ONE_YEAR" and mday > _days_in(MONTHS.index(month) + 1, 2000):
        raise InvalidArgument(field=f"{field}.dayOfMonth", reason=f"{month} has no day {mday}")
    return Schedule(
        backup_type,
        period,
        retention,
        offset_type,
        hour_of_day=hour,
        day_of_week=weekday,
        day_of_month=mday,
        month=month,
        time_zone=time_zone,
    )


def parse_schedules(raw: Any, field: str = "schedules") -> tuple[Schedule, ...]:
    """The schedules of a policy: a list, at most one schedule per period (so priority is always defined)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidArgument(field=field, reason="must be a list of VolumeBackupSchedule")
    out = tuple(parse_schedule(item, f"{field}[{n}]") for n, item in enumerate(raw))
    seen: set[str] = set()
    for n, schedule in enumerate(out):
        if schedule.period in seen:
            raise InvalidArgument(
                field=f"{field}[{n}].period", reason=f"a policy has at most one {schedule.period} schedule"
            )
        seen.add(schedule.period)
    return out


# --- the Oracle-defined policies (R3.10, R3.11) --------------------------------------------------------------------

_WEEK, _MONTH_RET, _YEAR_RET = 4 * 7 * DAY, 365 * DAY, 5 * 365 * DAY


def _structured(period: str, retention: int, **fields: Any) -> Schedule:
    return Schedule("INCREMENTAL", period, retention, "STRUCTURED", time_zone="REGIONAL_DATA_CENTER_TIME", **fields)


_MONTHLY = _structured("ONE_MONTH", _MONTH_RET, day_of_month=1)
_YEARLY = _structured("ONE_YEAR", _YEAR_RET, day_of_month=1, month="JANUARY")
_WEEKLY = _structured("ONE_WEEK", _WEEK, day_of_week="SUNDAY")
_DAILY = _structured("ONE_DAY", 7 * DAY)

ORACLE_SCHEDULES: dict[str, tuple[Schedule, ...]] = {
    "bronze": (_MONTHLY, _YEARLY),
    "silver": (_WEEKLY, _MONTHLY, _YEARLY),
    "gold": (_DAILY, _WEEKLY, _MONTHLY, _YEARLY),
}
ORACLE_CREATED = datetime(2017, 1, 1, tzinfo=UTC)


def oracle_policy_id(name: str) -> str:
    """A fixed OCID per Oracle-defined policy (backup policy OCIDs carry no region, ids.GLOBAL_TYPES)."""
    digest = hashlib.sha256(f"blockvault oracle-defined backup policy {name}".encode()).digest()
    return "ocid1.volumebackuppolicy.oc1..aaaaaaaa" + base64.b32encode(digest[:35]).decode().lower().rstrip("=")


def oracle_policies() -> list[Policy]:
    return [
        Policy(oracle_policy_id(name), name, None, None, schedules, ORACLE_CREATED, {}, {})
        for name, schedules in ORACLE_SCHEDULES.items()
    ]


def check_assignable(policy: Policy, *, group: bool, field: str = "policyId") -> None:
    """R3.10: Oracle-defined policies cannot be used for scheduled volume group backups (400 naming `field`)."""
    if group and policy.oracle_defined:
        raise InvalidArgument(
            field=field,
            reason=f"{policy.display_name!r} is an Oracle-defined policy, and Oracle-defined policies cannot be used "
            "for scheduled volume group backups; assign a user-defined policy to the volume group",
        )


# --- when a schedule runs -----------------------------------------------------------------------------------------


def zone_of(schedule: Schedule, region: str) -> tzinfo:
    if schedule.time_zone == "REGIONAL_DATA_CENTER_TIME":
        name = REGION_TIME_ZONES.get(region)
        if name is not None:
            return ZoneInfo(name)
    return UTC


def _days_in(month: int, year: int) -> int:
    return calendar.monthrange(year, month)[1]


def _period_index(schedule: Schedule, local: datetime) -> int:
    """A counter of periods: consecutive periods have consecutive indexes (in the schedule's wall-clock time)."""
    if schedule.period == "ONE_HOUR":
        return int(local.astimezone(UTC).timestamp()) // HOUR  # hours are absolute: DST never repeats one
    days = local.date().toordinal()
    if schedule.period == "ONE_DAY":
        return days
    if schedule.period == "ONE_WEEK":
        return (days - 1) // 7  # ordinal 1 (0001-01-01) is a Monday
    if schedule.period == "ONE_MONTH":
        return local.year * 12 + local.month - 1
    return local.year


def _instant(schedule: Schedule, index: int, zone: tzinfo) -> datetime:
    """The run instant (UTC) of the period with this index."""
    if schedule.period == "ONE_HOUR":
        return datetime.fromtimestamp(index * HOUR + schedule.offset_seconds, UTC)
    structured = schedule.offset_type == "STRUCTURED"
    if schedule.period == "ONE_DAY":
        start = date.fromordinal(index)
    elif schedule.period == "ONE_WEEK":
        start = date.fromordinal(index * 7 + 1)
        if structured:
            start += timedelta(days=DAYS.index(schedule.day_of_week))
    elif schedule.period == "ONE_MONTH":
        year, month = divmod(index, 12)
        start = date(year, month + 1, 1)
        if structured:
            start = start.replace(day=min(schedule.day_of_month, _days_in(month + 1, year)))
    else:
        start = date(index, 1, 1)
        if structured:
            month_no = MONTHS.index(schedule.month) + 1
            start = date(index, month_no, min(schedule.day_of_month, _days_in(month_no, index)))
    local = datetime(start.year, start.month, start.day, schedule.hour_of_day if structured else 0, tzinfo=zone)
    moment = local.astimezone(UTC)
    if not structured:
        moment += timedelta(seconds=schedule.offset_seconds)
    return moment


def latest_due(schedule: Schedule, zone: tzinfo, after: datetime, now: datetime) -> datetime | None:
    """The newest run instant t with after < t <= now, or None. Run instants grow with the period index and the
    instant of period k lies inside period k, so it is the current period's instant or the previous one's."""
    index = _period_index(schedule, now.astimezone(zone))
    for candidate in (index, index - 1, index - 2):  # -2: a NUMERIC offset past a short (DST) day
        moment = _instant(schedule, candidate, zone)
        if moment <= now:
            return moment if moment > after else None
    return None  # unreachable for valid schedules: the previous period's instant is always in the past


def next_run(schedule: Schedule, zone: tzinfo, after: datetime) -> datetime:
    """The first run instant strictly after `after`."""
    index = _period_index(schedule, after.astimezone(zone))
    for candidate in (index, index + 1, index + 2):
        moment = _instant(schedule, candidate, zone)
        if moment > after:
            return moment
    raise AssertionError("unreachable: a period always has a later run")


def runs_between(schedule: Schedule, zone: tzinfo, after: datetime, until: datetime) -> list[datetime]:
    """Every run instant in (after, until], oldest first (for tests and the doc's examples; O(periods))."""
    out: list[datetime] = []
    moment = next_run(schedule, zone, after)
    while moment <= until:
        out.append(moment)
        moment = next_run(schedule, zone, moment)
    return out


def local_day(moment: datetime, zone: tzinfo) -> date:
    return moment.astimezone(zone).date()


@dataclass(frozen=True)
class Due:
    """A schedule whose newest run instant has not been handled yet."""

    index: int  # position of the schedule in its policy
    schedule: Schedule
    instant: datetime


def _covered(item: Due, schedules: tuple[Schedule, ...], zones: list[tzinfo], since: datetime) -> bool:
    """Whether a higher-ranked schedule of the policy also runs (after `since`) on the local day of this run."""
    zone = zones[item.index]
    day = local_day(item.instant, zone)
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    tick = timedelta(microseconds=1)
    for n, other in enumerate(schedules):
        if other.rank <= item.schedule.rank:
            continue
        if any(run > since for run in runs_between(other, zones[n], start - tick, end - tick)):
            return True
    return False


def choose(due: list[Due], schedules: tuple[Schedule, ...], zones: list[tzinfo], since: datetime) -> Due | None:
    """Which one due schedule of an asset runs now; the others are skipped (R3.13 and the catch-up rule).

    - At most one scheduled backup per asset per tick: the highest-ranked due schedule.
    - A daily-or-longer run that falls on a local day on which a higher-ranked schedule of the same policy also runs
      (at an instant after `since`, when the assignment began) is skipped: that one is the day's backup.
    - Hourly schedules are not limited to one a day; they only yield to a longer schedule due in the same tick.
    """
    best: Due | None = None
    for item in due:
        if item.schedule.period != "ONE_HOUR" and _covered(item, schedules, zones, since):
            continue
        if best is None or item.schedule.rank > best.schedule.rank:
            best = item
    return best


def expiration(created: datetime, schedule: Schedule) -> datetime:
    """R3.8: a scheduled backup expires `retentionSeconds` after it was created."""
    return created + timedelta(seconds=schedule.retention_seconds)
