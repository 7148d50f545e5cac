"""Backup policies whose destinationRegion is served by another `blockvault serve` process (docs/design/
backup-policies.md, "Regions in separate processes"; docs/design/regions.md).

The cross-region flows of test_backup_policies.py and test_group_backup_policies.py, whose bodies are imported
here, run against their own two-process deployment (they move the shared admin clock by hours, which must not
disturb the session's deployments): the xrcKmsKeyId of the assignment is checked in the phoenix process for the
caller, and ashburn's scheduler makes its copies through phoenix's RegionClient over the signed peer transport
(create_scheduled_copy / create_scheduled_group_copy, then date_scheduled_copy for R3.30).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import e2e_conftest
from test_backup_policies import (  # noqa: F401 - the fixtures and test bodies, re-collected here
    test_policy_copies_scheduled_backups_to_its_destination_under_the_xrc_key,
    world,
)
from test_group_backup_policies import (  # noqa: F401
    sdk,
    test_a_group_policy_with_a_destination_copies_the_group_backup_there,
)

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Ashburn and phoenix in two processes of one data dir, for this module alone (its clock moves)."""
    server = e2e_conftest().start_two_process(tmp_path_factory.mktemp("policies2") / "data")
    yield server
    server.stop_all()


def test_the_two_regions_are_two_processes(srv: Any) -> None:
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    assert srv.endpoint(IAD) != srv.endpoint(PHX)
