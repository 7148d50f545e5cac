"""The pure parts of volume replication (blockstorage/replication.py): request validation, the unit diff a sync
ships, batching, snapshot names and the sync schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blockvault.blockstorage.replication import (
    batches,
    changed_units,
    next_sync_time,
    parse_replica_details,
    same_ad,
    source_snapshot,
    sync_snapshot,
)
from blockvault.errors import InvalidArgument, MissingParameter

AD = "bvlt:US-PHOENIX-AD-1"


def test_replica_details_accept_one_destination_and_drop_empty_fields() -> None:
    assert parse_replica_details([], "blockVolumeReplicas") == []
    got = parse_replica_details(
        [{"availabilityDomain": AD, "xrrKmsKeyId": "ocid1.key.oc1.phx.x.y", "displayName": None}], "f"
    )
    assert got == [{"availabilityDomain": AD, "xrrKmsKeyId": "ocid1.key.oc1.phx.x.y"}]
    assert parse_replica_details([{"availabilityDomain": AD, "displayName": ""}], "f") == [{"availabilityDomain": AD}]


@pytest.mark.parametrize(
    ("value", "error", "mention"),
    [
        ({"availabilityDomain": AD}, InvalidArgument, "must be a list"),
        ([{"availabilityDomain": AD}, {"availabilityDomain": AD}], InvalidArgument, "one destination"),
        (["x"], InvalidArgument, "object"),
        ([{}], MissingParameter, "bootVolumeReplicas[0].availabilityDomain"),
        ([{"availabilityDomain": 7}], InvalidArgument, "availabilityDomain"),
        ([{"availabilityDomain": AD, "xrrKmsKeyId": 5}], InvalidArgument, "xrrKmsKeyId"),
    ],
)
def test_replica_details_refuse_malformed_lists(value: object, error: type[Exception], mention: str) -> None:
    with pytest.raises(error) as info:
        parse_replica_details(value, "bootVolumeReplicas")
    assert mention in str(info.value)


def test_a_sync_ships_exactly_the_units_written_after_the_last_sync_point() -> None:
    units = [(0, 3), (1, 9), (7, 10), (8, 11), (100, 2)]
    assert changed_units(units, 0) == [0, 1, 7, 8, 100]  # the initial sync ships everything
    assert changed_units(units, 9) == [7, 8]  # seq == synced_seq was in the last sync point
    assert changed_units(units, 11) == []


def test_batches_cover_every_item_once_in_order() -> None:
    items = list(range(10))
    got = list(batches(items, 4))
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(batches([], 4)) == []


def test_snapshot_names_and_schedule() -> None:
    assert sync_snapshot(3) == "sync-3"
    rid = "ocid1.blockvolumereplica.oc1.phx.abc"
    assert source_snapshot(rid, 2) == f"replica-{rid}-2"
    assert source_snapshot(rid, 12).startswith(source_snapshot(rid, 0)[:-1])
    point = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_sync_time(point, 60) == point + timedelta(seconds=60)


def test_same_ad_ignores_case_and_prefix() -> None:
    assert same_ad("bvlt:us-phoenix-ad-1", AD)
    assert same_ad("US-PHOENIX-AD-1", AD)
    assert not same_ad("bvlt:US-PHOENIX-AD-2", AD)


def test_sync_interval_comes_from_the_environment_and_is_bounded(tmp_path: Path) -> None:
    from blockvault.config import Settings

    base = {"BLOCKVAULT_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).replication_interval == 60.0
    assert Settings.from_env({**base, "BLOCKVAULT_REPLICATION_INTERVAL": "2.5"}).replication_interval == 2.5
    for bad in ("0", "-1", "86401", "soon"):
        with pytest.raises(InvalidArgument, match="replication_interval"):
            Settings.from_env({**base, "BLOCKVAULT_REPLICATION_INTERVAL": bad})
