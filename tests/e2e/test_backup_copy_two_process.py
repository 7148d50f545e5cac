"""Cross-region backup copy with the regions in two `blockvault serve` processes (docs/design/regions.md).

The same tests as test_backup_copy.py, whose bodies are imported here, run against `two_process_server`: ashburn
and phoenix in separate processes sharing one data dir, every cross-region call (the copy's creation in the
destination, the source's export read chunk batch by chunk batch, the cross-region GET behind the CLI's waiter)
going over the signed HTTP peer transport.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_backup_copy import *  # noqa: F403 - the test bodies and their `world` fixture, re-collected here
from test_backup_copy import IAD, PHX, World

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(two_process_server: Any) -> Any:
    """This module's `server` is the two-process deployment (overrides the session's one-process server)."""
    return two_process_server


def test_each_region_has_its_own_process_and_endpoint(world: World) -> None:
    srv = world.server
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    assert srv.endpoint(IAD) != srv.endpoint(PHX)
    assert srv.endpoint(IAD).endswith(f":{srv.ports[IAD]}/{IAD}")
    assert srv.endpoint(PHX).endswith(f":{srv.ports[PHX]}/{PHX}")
