"""DeleteCompartment with the regions in two `blockvault serve` processes (docs/design/regions.md): a compartment
that still holds a volume or a vault only in the OTHER process's region is not empty. The process asked checks its
own regions and asks every peer (`RegionClient.compartment_in_use` over the signed peer transport)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Sdk, expect_error

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"


def test_a_compartment_used_only_in_the_peer_process_is_not_deleted(two_process_server: Any) -> None:
    srv = two_process_server
    iad, phx = Sdk(srv, IAD), Sdk(srv, PHX)
    compartment = iad.new_compartment("in-phx")
    volume = phx.create_volume(compartment, name="only-in-phoenix")
    expect_error(lambda: iad.identity.delete_compartment(compartment), 409, "Conflict", "not empty")
    phx.delete_volume(volume.id)
    iad.identity.delete_compartment(compartment)  # now empty in both processes
    assert iad.identity.get_compartment(compartment).data.lifecycle_state in ("DELETING", "DELETED")


def test_a_vault_in_the_peer_process_keeps_its_compartment(two_process_server: Any) -> None:
    srv = two_process_server
    iad, phx = Sdk(srv, IAD), Sdk(srv, PHX)
    compartment = iad.new_compartment("vault-in-phx")
    phx.new_vault(compartment, "phx-only")
    expect_error(lambda: iad.identity.delete_compartment(compartment), 409, "Conflict", "not empty")
    assert iad.identity.get_compartment(compartment).data.lifecycle_state == "ACTIVE"
