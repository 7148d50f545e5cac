"""The vault transfer key a peer process publishes is trusted only with the service identity's signature for that
region (peer/interfaces.py AuthenticatedVaultPeer; docs/design/vault-replication.md, "Threat model"): a process
that is not of this deployment, or a real peer's key replayed as another region's, gets no key material wrapped
for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockvault.peer.client import PeerUnavailable
from blockvault.peer.identity import ServiceIdentity, attest, load_or_create
from blockvault.peer.interfaces import AttestedTransferKey, AuthenticatedVaultPeer, transfer_key_statement

PHX = "us-phoenix-1"
PEM = b"-----BEGIN PUBLIC KEY-----\nphoenix transfer key\n-----END PUBLIC KEY-----\n"


class FakeProxy:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def attested_transfer_public_key(self) -> object:
        return self.answer


@pytest.fixture
def ours(tmp_path: Path) -> ServiceIdentity:
    return load_or_create(tmp_path / "ours", "ocid1.tenancy.oc1..ours")


@pytest.fixture
def theirs(tmp_path: Path) -> ServiceIdentity:
    return load_or_create(tmp_path / "theirs", "ocid1.tenancy.oc1..theirs")


def signed(identity: ServiceIdentity, region: str, pem: bytes) -> AttestedTransferKey:
    return AttestedTransferKey(region, pem, attest(identity, transfer_key_statement(region, pem)))


def test_a_key_attested_by_this_deployment_for_this_region_is_used(ours: ServiceIdentity) -> None:
    peer = AuthenticatedVaultPeer(FakeProxy(signed(ours, PHX, PEM)), PHX, ours)
    assert peer.transfer_public_key() == PEM


@pytest.mark.parametrize(
    "forge",
    [
        lambda ours, theirs: signed(theirs, PHX, PEM),  # another deployment's service key
        lambda ours, theirs: signed(ours, "us-ashburn-1", PEM),  # a real attestation of another region
        lambda ours, theirs: AttestedTransferKey(PHX, PEM + b"x", signed(ours, PHX, PEM).signature),  # swapped key
        lambda ours, theirs: AttestedTransferKey(PHX, PEM, b""),  # unsigned
        lambda ours, theirs: PEM,  # a bare key, as `transfer_public_key` answers
    ],
    ids=["other-deployment", "other-region", "key-swapped", "unsigned", "bare-pem"],
)
def test_anything_else_is_refused(ours: ServiceIdentity, theirs: ServiceIdentity, forge: object) -> None:
    answer = forge(ours, theirs)  # type: ignore[operator]
    peer = AuthenticatedVaultPeer(FakeProxy(answer), PHX, ours)
    with pytest.raises(PeerUnavailable, match="not signed by this deployment"):
        peer.transfer_public_key()
