"""Two `blockvault serve` processes sharing one data dir, one region each (docs/design/regions.md): one identity for
both (a compartment made through one is usable through the other at once), one admin clock, discovery that sends
each region's requests to its own process (our CLI's --region), and a clear 421 from the wrong process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import Sdk, raw

pytestmark = pytest.mark.e2e

IAD, PHX = "us-ashburn-1", "us-phoenix-1"


@pytest.fixture(scope="module")
def server(two_process_server: Any) -> Any:
    return two_process_server


def test_discovery_lists_each_region_at_its_own_process(server: Any) -> None:
    discovery = json.loads((server.data_dir / "blockvault.json").read_text())
    assert discovery["defaultRegion"] == IAD
    assert discovery["regions"][IAD]["endpoint"] == f"http://127.0.0.1:{server.ports[IAD]}/{IAD}"
    assert discovery["regions"][PHX]["endpoint"] == f"http://127.0.0.1:{server.ports[PHX]}/{PHX}"


def test_a_region_asked_of_the_wrong_process_is_421_naming_the_right_endpoint(server: Any) -> None:
    resp = raw(
        server,
        "GET",
        f"/{PHX}/20160918/volumes",
        base=f"http://127.0.0.1:{server.ports[IAD]}",
        params={"compartmentId": server.tenancy},
    )
    assert resp.status_code == 421
    assert resp.json()["code"] == "MisdirectedRequest"
    assert server.endpoint(PHX) in resp.json()["message"]


def test_a_compartment_made_through_one_process_is_usable_through_the_other_at_once(server: Any) -> None:
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    compartment = iad.new_compartment("two-proc")
    vault = phx.new_vault(compartment, "phx-vault")  # phx's authorizer must see the new compartment
    assert vault.compartment_id == compartment
    assert vault.id.startswith("ocid1.vault.oc1.phx.")
    volume = phx.create_volume(compartment, name="phx-vol", size_gb=50)
    assert volume.id.startswith("ocid1.volume.oc1.phx.")


def test_our_cli_reaches_each_region_at_its_own_process(server: Any) -> None:
    iad, phx = Sdk(server, IAD), Sdk(server, PHX)
    compartment = iad.new_compartment("two-proc-cli")
    volume = phx.create_volume(compartment, name="cli-vol", size_gb=50)
    out = server.bv("--region", PHX, "bv", "volume", "list", "--compartment-id", compartment).out
    assert volume.id in out
    assert volume.id not in server.bv("bv", "volume", "list", "--compartment-id", compartment).out


def test_the_admin_clock_is_one_clock_for_both_processes(server: Any) -> None:
    before = {r: raw(server, "GET", "/blockvault/admin/clock", region=r).json()["offsetSeconds"] for r in (IAD, PHX)}
    assert before[IAD] == before[PHX]
    resp = raw(server, "POST", "/blockvault/admin/clock/advance", region=PHX, json_body={"seconds": 3600})
    assert resp.status_code == 200, resp.text
    after = {r: raw(server, "GET", "/blockvault/admin/clock", region=r).json()["offsetSeconds"] for r in (IAD, PHX)}
    assert after == {IAD: before[IAD] + 3600, PHX: before[PHX] + 3600}
