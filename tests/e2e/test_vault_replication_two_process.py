"""Vault replication with the regions in two `blockvault serve` processes (docs/design/vault-replication.md,
docs/design/regions.md).

The main flows of test_vault_replication.py, whose bodies are imported here, run against a two-process deployment
of our own (it moves the clock 31 days ahead): us-ashburn-1 and us-phoenix-1 each in their own process sharing one
data dir, every VaultPeer call (the attested transfer key, ensure_replica_vault, sync_key with wrapped material,
delete_replica_vault) going over the signed HTTP peer transport. Replicated with the real oci CLI; crypto round
trips across; the replica key protects a phoenix volume and follows the primary key; deleting the source vault
deletes the replica and makes what it protected FAULTY.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import oci
import pytest
from helpers import Sdk, e2e_conftest
from test_vault_replication import (  # noqa: F401 - the fixture and test bodies, re-collected here in this order
    IAD,
    PHX,
    Env,
    M,
    _decrypt,
    _encrypt,
    _private_vault,
    _replica_key,
    replica,
    test_blockvault_cli_shows_and_reads_replicas,
    test_ciphertexts_cross_between_primary_and_replica,
    test_delete_replica_stops_replication_and_destroys_the_copy,
    test_management_on_the_replica_is_refused,
    test_primary_changes_are_followed_at_once,
    test_replica_key_protects_a_phoenix_volume_and_follows_the_primary_key,
    test_replica_vault_and_key_have_own_phx_ocids_and_replica_fields,
)
from test_vault_replication import (  # noqa: F401 - last: it moves the clock 31 days ahead
    test_deleting_the_source_vault_deletes_the_replica_and_its_material as test_zz_source_vault_deletion,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """This module's `env` is a two-process deployment of its own (it moves the shared clock)."""
    conf = e2e_conftest()
    server = conf.start_two_process(tmp_path_factory.mktemp("vault-repl-2p") / "data")
    try:
        iad, phx = Sdk(server, IAD), Sdk(server, PHX)
        compartment = iad.new_compartment("vault-repl-2p")
        vault = _private_vault(iad, compartment, "source")
        key = iad.new_key(vault, compartment, "k1")
        yield Env(server, iad, phx, compartment, vault, key)
    finally:
        server.stop_all()


def test_the_replica_vault_is_served_by_the_phoenix_process(env: Env, replica: Any) -> None:  # noqa: F811
    srv = env.server
    assert srv.processes[IAD].pid != srv.processes[PHX].pid
    assert srv.endpoint(PHX).endswith(f":{srv.ports[PHX]}/{PHX}")
    assert replica.management_endpoint.startswith(srv.endpoint(PHX))
    assert replica.crypto_endpoint.startswith(srv.endpoint(PHX))


def test_with_the_destination_process_down_a_replicated_change_is_503_and_changes_nothing(
    env: Env,
    replica: Any,  # noqa: F811 - the imported fixture
) -> None:
    """RPO 0 across processes: the replica is written first, so with phoenix's process killed a key creation in the
    replicated vault fails (503 ServiceUnavailable naming the region) and ashburn has no such key; once phoenix is
    back (its transfer key and replica state are durable) the same creation replicates."""
    srv = env.server
    mgmt = env.iad.mgmt(env.vault)
    details = M.CreateKeyDetails(
        compartment_id=env.compartment, display_name="while-phx-down", key_shape=M.KeyShape(algorithm="AES", length=32)
    )
    srv.kill(PHX)
    try:
        with pytest.raises(oci.exceptions.ServiceError) as caught:
            mgmt.create_key(details, retry_strategy=oci.retry.NoneRetryStrategy())
        assert (caught.value.status, caught.value.code) == (503, "ServiceUnavailable")
        assert PHX in caught.value.message
        assert "while-phx-down" not in {k.display_name for k in mgmt.list_keys(env.compartment).data}
    finally:
        srv.spawn(PHX)
    made = mgmt.create_key(details).data
    rkey = _replica_key(env, replica, "while-phx-down")
    assert rkey.lifecycle_state == "ENABLED"
    ciphertext = _encrypt(env.iad.crypto(env.vault), made.id, b"after the restart")
    assert _decrypt(env.phx.crypto(replica), rkey.id, ciphertext) == b"after the restart"
