"""Volume group replication with the regions in two `blockvault serve` processes (docs/design/replication.md,
"Volume group replicas"; docs/design/regions.md).

The main flows of test_volume_group_replication.py, whose bodies are imported here, run against
`two_process_server`: the group replica and its members are created in the phoenix process
(RegionClient.create_group_replica / add_group_replica_members over the peer transport), phoenix's group sync asks
the ashburn process for ONE held point in time of every member (begin_group_replica_sync) and reads their units
over HTTP, and the group replica is read and activated on phoenix's endpoint. The admin clock is one clock for both
processes, so advancing it through ashburn makes phoenix's scheduler sync.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_volume_group_replication import (  # noqa: F401 - the fixture and test bodies, re-collected here
    IAD,
    PHX,
    World,
    test_empty_list_turns_group_replication_off_and_members_keep_replicating,
    test_group_replica_syncs_all_members_at_one_point_and_activates_byte_for_byte,
    test_members_written_together_are_activated_as_one_point_in_time,
    test_our_cli_replicates_a_group_lists_its_replica_and_activates_it,
    world,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(two_process_server: Any) -> Any:
    """This module's `server` is the two-process deployment (overrides the session's one-process server)."""
    return two_process_server


def test_the_group_replica_lives_in_the_phoenix_process(world: World) -> None:  # noqa: F811
    srv = world.server
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    replicas = world.phx.bs.list_volume_group_replicas(
        compartment_id=world.compartment, availability_domain=world.phx.ad(1)
    ).data
    assert replicas, "the flows above made group replicas in phoenix"
    assert all(r.id.startswith("ocid1.volumegroupreplica.oc1.phx.") for r in replicas)
