"""Backup policy schedules (blockstorage/policies.py): validation, the Oracle-defined policies, run instants, the
catch-up and priority rules (oci-behaviour.md R3.8, R3.10-R3.13; docs/design/backup-policies.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.blockstorage import policies as pol
from blockvault.errors import InvalidArgument

NY = ZoneInfo("America/New_York")
DAY = 86400


def sched(period: str = "ONE_DAY", **extra: Any) -> pol.Schedule:
    raw: dict[str, Any] = {"backupType": "INCREMENTAL", "period": period, "retentionSeconds": 7 * DAY, **extra}
    return pol.parse_schedule(raw)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"period": "ONE_DAY", "retentionSeconds": 60}, "schedules[0].backupType"),
        ({"backupType": "FULL", "retentionSeconds": 60}, "schedules[0].period"),
        ({"backupType": "FULL", "period": "ONE_DAY"}, "schedules[0].retentionSeconds"),
        ({"backupType": "DIFFERENTIAL", "period": "ONE_DAY", "retentionSeconds": 60}, "schedules[0].backupType"),
        ({"backupType": "FULL", "period": "TWO_DAYS", "retentionSeconds": 60}, "schedules[0].period"),
        ({"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 0}, "schedules[0].retentionSeconds"),
        ({"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": "7d"}, "schedules[0].retentionSeconds"),
        (
            {"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 60, "timeZone": "CET"},
            "schedules[0].timeZone",
        ),
        (
            {"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 60, "offsetType": "CRON"},
            "schedules[0].offsetType",
        ),
        ({"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 60, "offsetSeconds": DAY}, "offsetSeconds"),
        ({"backupType": "FULL", "period": "ONE_HOUR", "retentionSeconds": 60, "offsetSeconds": -1}, "offsetSeconds"),
        (
            {
                "backupType": "FULL",
                "period": "ONE_DAY",
                "retentionSeconds": 60,
                "offsetType": "STRUCTURED",
                "hourOfDay": 24,
            },
            "schedules[0].hourOfDay",
        ),
        (
            {
                "backupType": "FULL",
                "period": "ONE_WEEK",
                "retentionSeconds": 60,
                "offsetType": "STRUCTURED",
                "dayOfWeek": "SUN",
            },
            "schedules[0].dayOfWeek",
        ),
        (
            {
                "backupType": "FULL",
                "period": "ONE_MONTH",
                "retentionSeconds": 60,
                "offsetType": "STRUCTURED",
                "dayOfMonth": 32,
            },
            "schedules[0].dayOfMonth",
        ),
        (
            {
                "backupType": "FULL",
                "period": "ONE_YEAR",
                "retentionSeconds": 60,
                "offsetType": "STRUCTURED",
                "month": "FEBRUARY",
                "dayOfMonth": 30,
            },
            "schedules[0].dayOfMonth",
        ),
    ],
)
def test_an_invalid_schedule_field_is_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        pol.parse_schedules([raw])
    assert field in info.value.text


def test_a_policy_has_at_most_one_schedule_per_period() -> None:
    one = {"backupType": "FULL", "period": "ONE_DAY", "retentionSeconds": 60}
    with pytest.raises(InvalidArgument, match=r"schedules\[1\]\.period"):
        pol.parse_schedules([one, {**one, "backupType": "INCREMENTAL"}])


def test_structured_fields_of_other_periods_are_ignored() -> None:
    s = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=5, dayOfWeek="NOT-A-DAY", month=13)
    assert s.to_json()["hourOfDay"] == 5
    assert s.to_json()["dayOfWeek"] is None
    assert s.to_json()["month"] is None


def test_omitted_offset_type_means_numeric_seconds_and_utc() -> None:
    s = sched("ONE_DAY", offsetSeconds=7200)
    wire = s.to_json()
    assert (wire["offsetType"], wire["offsetSeconds"], wire["timeZone"]) == ("NUMERIC_SECONDS", 7200, "UTC")
    assert pol.parse_schedule(wire) == s  # the wire form parses back to the same schedule


# --- Oracle-defined policies (R3.10, R3.11) ----------------------------------------------------------------------


def test_oracle_defined_policies_have_the_documented_schedules() -> None:
    found = {p.display_name: p for p in pol.oracle_policies()}
    assert set(found) == {"gold", "silver", "bronze"}
    periods = {name: [s.period for s in p.schedules] for name, p in found.items()}
    assert periods == {
        "bronze": ["ONE_MONTH", "ONE_YEAR"],
        "silver": ["ONE_WEEK", "ONE_MONTH", "ONE_YEAR"],
        "gold": ["ONE_DAY", "ONE_WEEK", "ONE_MONTH", "ONE_YEAR"],
    }
    retention = {s.period: s.retention_seconds for s in found["gold"].schedules}
    assert retention == {"ONE_DAY": 7 * DAY, "ONE_WEEK": 28 * DAY, "ONE_MONTH": 365 * DAY, "ONE_YEAR": 5 * 365 * DAY}
    for p in found.values():
        assert p.oracle_defined
        assert p.destination_region is None
        assert all(s.backup_type == "INCREMENTAL" for s in p.schedules)
    weekly = next(s for s in found["silver"].schedules if s.period == "ONE_WEEK")
    assert weekly.day_of_week == "SUNDAY"
    assert len({p.id for p in found.values()}) == 3
    assert found["gold"].id == pol.oracle_policy_id("gold")  # fixed, so a restart keeps assignments valid


# --- run instants ------------------------------------------------------------------------------------------------


def test_daily_structured_runs_at_its_hour() -> None:
    s = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=3)
    runs = pol.runs_between(s, UTC, utc(2026, 11, 28, 12), utc(2026, 12, 1, 12))
    assert runs == [utc(2026, 11, 29, 3), utc(2026, 11, 30, 3), utc(2026, 12, 1, 3)]


def test_weekly_numeric_offset_counts_from_monday_midnight() -> None:
    s = sched("ONE_WEEK", offsetSeconds=DAY + 3600)
    assert pol.next_run(s, UTC, utc(2026, 11, 28)) == utc(2026, 12, 1, 1)  # Tuesday 01:00


def test_month_end_day_is_clamped_to_the_last_day() -> None:
    s = sched("ONE_MONTH", offsetType="STRUCTURED", dayOfMonth=31, hourOfDay=1)
    runs = pol.runs_between(s, UTC, utc(2027, 1, 1), utc(2027, 4, 1))
    assert runs == [utc(2027, 1, 31, 1), utc(2027, 2, 28, 1), utc(2027, 3, 31, 1)]


def test_yearly_structured_runs_on_its_month_and_day() -> None:
    s = sched("ONE_YEAR", offsetType="STRUCTURED", month="MARCH", dayOfMonth=15, hourOfDay=6)
    assert pol.next_run(s, UTC, utc(2026, 11, 28)) == utc(2027, 3, 15, 6)


def test_regional_time_follows_the_data_centre_and_its_dst() -> None:
    s = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=0, timeZone="REGIONAL_DATA_CENTER_TIME")
    zone = pol.zone_of(s, "us-ashburn-1")
    assert pol.next_run(s, zone, utc(2026, 12, 1)) == utc(2026, 12, 1, 5)  # EST
    assert pol.next_run(s, zone, utc(2026, 7, 1)) == utc(2026, 7, 1, 4)  # EDT
    assert pol.zone_of(s, "xx-nowhere-1") is UTC
    assert pol.zone_of(sched("ONE_DAY"), "us-ashburn-1") is UTC


def test_latest_due_is_the_newest_run_only() -> None:
    """The catch-up rule: after a jump of a month a daily schedule is due once, at its newest run."""
    s = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=2)
    assert pol.latest_due(s, UTC, utc(2026, 11, 1), utc(2026, 12, 1, 12)) == utc(2026, 12, 1, 2)
    assert pol.latest_due(s, UTC, utc(2026, 12, 1, 2), utc(2026, 12, 1, 12)) is None  # handled already
    assert pol.latest_due(s, UTC, utc(2026, 12, 1, 3), utc(2026, 12, 2, 1, 59)) is None  # not yet


def test_expiration_is_creation_plus_retention() -> None:
    s = sched("ONE_DAY")
    assert pol.expiration(utc(2026, 1, 1), s) == utc(2026, 1, 8)


_PERIOD_BOUNDS = {
    "ONE_HOUR": (3600, 3600),
    "ONE_DAY": (23 * 3600, 25 * 3600),
    "ONE_WEEK": (7 * DAY - 3600, 7 * DAY + 3600),
    "ONE_MONTH": (28 * DAY - 3600, 31 * DAY + 3600),
    "ONE_YEAR": (365 * DAY - 3600, 366 * DAY + 3600),
}


@st.composite
def schedules(draw: st.DrawFn) -> pol.Schedule:
    period = draw(st.sampled_from(pol.PERIODS))
    raw: dict[str, Any] = {"backupType": "FULL", "period": period, "retentionSeconds": 3600}
    raw["timeZone"] = draw(st.sampled_from(pol.TIME_ZONES))
    if draw(st.booleans()):
        raw["offsetType"] = "STRUCTURED"
        raw["hourOfDay"] = draw(st.integers(0, 23))
        raw["dayOfWeek"] = draw(st.sampled_from(pol.DAYS))
        raw["dayOfMonth"] = draw(st.integers(1, 31))
        raw["month"] = draw(st.sampled_from(pol.MONTHS))
        if period == "ONE_YEAR":
            raw["dayOfMonth"] = min(raw["dayOfMonth"], 28)
    else:
        raw["offsetSeconds"] = draw(st.integers(0, pol.MAX_OFFSET[period] - 1))
    return pol.parse_schedule(raw)


moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
regions = st.sampled_from(["us-ashburn-1", "us-phoenix-1", "eu-frankfurt-1"])


@settings(max_examples=300, deadline=None)
@given(s=schedules(), region=regions, after=moments, span=st.integers(0, 400 * DAY))
def test_latest_due_is_in_range_and_nothing_later_is(s: pol.Schedule, region: str, after: datetime, span: int) -> None:
    zone = pol.zone_of(s, region)
    now = after + timedelta(seconds=span)
    due = pol.latest_due(s, zone, after, now)
    if due is None:
        assert pol.next_run(s, zone, after) > now
    else:
        assert after < due <= now
        assert pol.next_run(s, zone, due) > now


@settings(max_examples=300, deadline=None)
@given(s=schedules(), region=regions, start=moments)
def test_consecutive_runs_are_one_period_apart(s: pol.Schedule, region: str, start: datetime) -> None:
    zone = pol.zone_of(s, region)
    first = pol.next_run(s, zone, start)
    second = pol.next_run(s, zone, first)
    low, high = _PERIOD_BOUNDS[s.period]
    assert first > start
    assert low <= (second - first).total_seconds() <= high
    if s.offset_type == "STRUCTURED" and s.period != "ONE_HOUR":
        local = first.astimezone(zone)
        if s.period == "ONE_WEEK":
            assert pol.DAYS[local.weekday()] == s.day_of_week
        if s.period == "ONE_YEAR":
            assert pol.MONTHS[local.month - 1] == s.month


# --- which schedule runs (R3.13, the catch-up rule) ----------------------------------------------------------------


def _gold() -> tuple[tuple[pol.Schedule, ...], list[Any]]:
    gold = next(p for p in pol.oracle_policies() if p.display_name == "gold")
    return gold.schedules, [UTC for _ in gold.schedules]


def _due(schedules: tuple[pol.Schedule, ...], zones: list[Any], after: datetime, now: datetime) -> list[pol.Due]:
    out = []
    for n, s in enumerate(schedules):
        instant = pol.latest_due(s, zones[n], after, now)
        if instant is not None:
            out.append(pol.Due(n, s, instant))
    return out


def test_priority_yearly_over_monthly_weekly_daily_on_one_day() -> None:
    schedules, zones = _gold()
    since = utc(2020, 1, 1)
    # 2023-01-01 was a Sunday and the 1st of January: all four gold schedules fall on it.
    due = _due(schedules, zones, utc(2022, 12, 31, 12), utc(2023, 1, 1, 12))
    assert sorted(d.schedule.period for d in due) == ["ONE_DAY", "ONE_MONTH", "ONE_WEEK", "ONE_YEAR"]
    chosen = pol.choose(due, schedules, zones, since)
    assert chosen is not None
    assert chosen.schedule.period == "ONE_YEAR"
    # 2023-10-01: a Sunday and the 1st of a month: monthly beats weekly and daily.
    due = _due(schedules, zones, utc(2023, 9, 30, 12), utc(2023, 10, 1, 12))
    chosen = pol.choose(due, schedules, zones, since)
    assert chosen is not None
    assert chosen.schedule.period == "ONE_MONTH"


def test_a_lower_schedule_earlier_on_a_day_a_higher_one_runs_is_skipped() -> None:
    daily = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=1)
    weekly = sched("ONE_WEEK", offsetType="STRUCTURED", dayOfWeek="SUNDAY", hourOfDay=23)
    schedules, zones = (daily, weekly), [UTC, UTC]
    sunday_0130 = utc(2026, 11, 29, 1, 30)
    due = _due(schedules, zones, utc(2026, 11, 28, 12), sunday_0130)
    assert [d.schedule.period for d in due] == ["ONE_DAY"]
    assert pol.choose(due, schedules, zones, utc(2026, 11, 1)) is None  # the weekly run at 23:00 is the day's
    # On Monday the daily run has its day to itself.
    due = _due(schedules, zones, utc(2026, 11, 30, 0), utc(2026, 11, 30, 1, 30))
    chosen = pol.choose(due, schedules, zones, utc(2026, 11, 1))
    assert chosen is not None
    assert chosen.schedule.period == "ONE_DAY"


def test_a_higher_run_before_the_assignment_does_not_cover_the_day() -> None:
    daily = sched("ONE_DAY", offsetType="STRUCTURED", hourOfDay=23)
    weekly = sched("ONE_WEEK", offsetType="STRUCTURED", dayOfWeek="SUNDAY", hourOfDay=1)
    schedules, zones = (daily, weekly), [UTC, UTC]
    assigned = utc(2026, 11, 29, 12)  # Sunday noon: that Sunday's weekly run (01:00) was before it
    due = _due(schedules, zones, assigned, utc(2026, 11, 29, 23, 30))
    chosen = pol.choose(due, schedules, zones, assigned)
    assert chosen is not None
    assert chosen.schedule.period == "ONE_DAY"
    # a week later the weekly run covers Sunday, and the daily one at 23:00 is skipped
    due = _due(schedules, zones, utc(2026, 12, 6, 12), utc(2026, 12, 6, 23, 30))
    assert [d.schedule.period for d in due] == ["ONE_DAY"]
    assert pol.choose(due, schedules, zones, assigned) is None


def test_catch_up_after_a_long_jump_makes_one_backup() -> None:
    schedules, zones = _gold()
    due = _due(schedules, zones, utc(2024, 3, 3, 12), utc(2026, 11, 28, 12))  # two and a half years later
    assert len(due) == 4
    chosen = pol.choose(due, schedules, zones, utc(2024, 1, 1))
    assert chosen is not None
    assert chosen.schedule.period == "ONE_YEAR"


def test_hourly_yields_only_to_a_longer_schedule_in_the_same_tick() -> None:
    hourly = sched("ONE_HOUR")
    daily = sched("ONE_DAY")
    schedules, zones = (hourly, daily), [UTC, UTC]
    since = utc(2026, 1, 1)
    midnight = _due(schedules, zones, utc(2026, 11, 28, 23, 30), utc(2026, 11, 29, 0, 10))
    chosen = pol.choose(midnight, schedules, zones, since)
    assert chosen is not None
    assert chosen.schedule.period == "ONE_DAY"
    later = _due(schedules, zones, utc(2026, 11, 29, 0, 10), utc(2026, 11, 29, 1, 10))
    chosen = pol.choose(later, schedules, zones, since)
    assert chosen is not None
    assert chosen.schedule.period == "ONE_HOUR"


def test_oracle_defined_policies_cannot_be_assigned_to_volume_groups() -> None:
    gold = next(p for p in pol.oracle_policies() if p.display_name == "gold")
    pol.check_assignable(gold, group=False)  # volumes and boot volumes: any policy
    with pytest.raises(InvalidArgument, match="Oracle-defined") as caught:
        pol.check_assignable(gold, group=True, field="backupPolicyId")
    assert caught.value.context["field"] == "backupPolicyId"
    mine = pol.Policy(
        "ocid1.volumebackuppolicy.oc1..mine", "mine", "ocid1.compartment.oc1..c", None, (), gold.time_created, {}, {}
    )
    pol.check_assignable(mine, group=True)
