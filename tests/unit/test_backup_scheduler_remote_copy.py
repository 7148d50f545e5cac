"""A backup policy's copy goes to its destination region through that region's RegionClient only (blockstorage/
scheduler.py; docs/design/backup-policies.md, "Regions in separate processes"): here a stub standing for the
destination's HTTP proxy. A destination that is unreachable (`PeerUnavailable`) leaves the intent to the next tick
instead of failing it, and the copy is dated (R3.30) by the destination once its copy job is over."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from test_backup_scheduler_service import COMPARTMENT, DAILY, Stack, stack  # noqa: F401 - the fixture

from blockvault.blockstorage.model import Backup
from blockvault.blockstorage.scheduler import COPYING, CREATED, DONE
from blockvault.peer.client import PeerUnavailable

PHX = "us-phoenix-1"


@dataclass
class _Destination:
    """The destination region as the source's scheduler sees it: down for `down` calls, then up."""

    source: Stack
    down: int
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    copy_running: bool = True

    region = PHX
    region_key = "phx"

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.down > 0:
            self.down -= 1
            raise PeerUnavailable(region=PHX, url="http://127.0.0.1:1", reason="ConnectionError")

    def create_scheduled_copy(
        self, kind: str, source_region: str, source_backup_id: str, details: dict[str, Any]
    ) -> Backup:
        self._call("create_scheduled_copy", kind, source_region, source_backup_id, details)
        source = self.source.bs.get_backup(kind, source_backup_id)
        return replace(source, id="ocid1.volumebackup.oc1.phx.copy", kms_key_id=details["kmsKeyId"])

    def date_scheduled_copy(self, kind: str, copy_id: str, expires: datetime | None, retention_seconds: int) -> bool:
        self._call("date_scheduled_copy", kind, copy_id, expires, retention_seconds)
        return not self.copy_running


def test_a_policy_copy_waits_out_an_unreachable_destination_then_is_made_and_dated(stack: Stack) -> None:  # noqa: F811
    destination = _Destination(stack, down=2)
    stack.bs.connect_regions({PHX: destination})  # type: ignore[dict-item]
    svc = stack.service()
    volume = stack.volume()
    policy = svc.create_policy(
        {"compartmentId": COMPARTMENT, "displayName": "dr", "schedules": DAILY, "destinationRegion": PHX}
    )
    xrc = "ocid1.key.oc1.phx.aaaaxrc"
    assignment = svc.create_assignment(volume, policy.id, xrc)
    now = (assignment.time_created + timedelta(days=1)).replace(hour=0, minute=5, second=0, microsecond=0)
    assert svc.plan(now) == 1
    svc.advance(now, {})
    stack.run_jobs()  # the scheduled backup becomes AVAILABLE
    [source] = [b for b in stack.bs.list_backups("volume", None, volume, None, None) if b.source_type == "SCHEDULED"]
    for minute in (1, 2):  # the destination's process is down: the intent waits, it does not fail
        svc.advance(now + timedelta(minutes=minute), {})
        [intent] = svc.intents()
        assert (intent["state"], intent["error"]) == (CREATED, None)
    svc.advance(now + timedelta(minutes=3), {})
    [intent] = svc.intents()
    assert (intent["state"], intent["copy_id"]) == (COPYING, "ocid1.volumebackup.oc1.phx.copy")
    sent = [args for name, args in destination.calls if name == "create_scheduled_copy"]
    assert len(sent) == 3  # the same request each time: the destination adopts a copy an earlier one made
    assert all(args == sent[0] for args in sent)
    kind, source_region, backup_id, details = sent[0]
    assert (kind, source_region, backup_id) == ("volume", "us-ashburn-1", source.id)
    assert details == {"displayName": intent["display_name"], "kmsKeyId": xrc}  # R3.28: under xrcKmsKeyId
    svc.advance(now + timedelta(minutes=4), {})
    assert svc.intents()[0]["state"] == COPYING  # its copy job still runs in the destination
    destination.copy_running = False
    svc.advance(now + timedelta(minutes=5), {})
    assert svc.intents()[0]["state"] == DONE
    name, (kind, copy_id, expires, retention) = destination.calls[-1]
    assert name == "date_scheduled_copy"
    assert (kind, copy_id, expires, retention) == ("volume", intent["copy_id"], source.expiration_time, 2 * 86400)
