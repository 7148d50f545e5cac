"""Flow 1 with the real oci CLI: vaults, keys, key versions and crypto, each on the endpoint the CLI needs (the
region endpoint for vaults, the vault's managementEndpoint for keys, its cryptoEndpoint for crypto).

Rules exercised: R2.1-R2.4, R2.10, R6.1-R6.3, R6.7, R6.13-R6.17, R6.21-R6.28, D1, D13 (oci-behaviour.md),
oci-wire.md §0, §5.1-5.4, §7.2.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from helpers import Sdk, days_ahead

pytestmark = pytest.mark.e2e

AES32 = '{"algorithm":"AES","length":32}'


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Endpoints:
    management_endpoint: str
    crypto_endpoint: str


@dataclass
class Env:
    server: Any
    compartment: str
    vault: dict[str, Any]

    @property
    def mgmt(self) -> str:
        return str(self.vault["management-endpoint"])

    @property
    def crypto(self) -> str:
        return str(self.vault["crypto-endpoint"])

    def km(self, *args: str, check: bool = True) -> Any:
        """`oci kms management key|key-version ...` on the vault's management endpoint."""
        return self.server.oci("kms", "management", *args, endpoint=self.mgmt, check=check)

    def kc(self, *args: str, check: bool = True) -> Any:
        """`oci kms crypto ...` on the vault's crypto endpoint."""
        return self.server.oci("kms", "crypto", *args, endpoint=self.crypto, check=check)

    def new_key(self, name: str, shape: str = AES32) -> dict[str, Any]:
        out = self.km(
            "key",
            "create",
            "--compartment-id",
            self.compartment,
            "--display-name",
            name,
            "--key-shape",
            shape,
            "--wait-for-state",
            "ENABLED",
            "--wait-interval-seconds",
            "1",
        )
        return dict(out.json["data"])

    def key(self, key_id: str) -> dict[str, Any]:
        return dict(self.km("key", "get", "--key-id", key_id).json["data"])

    def sdk_state(self, key_id: str) -> str:
        """The key's state through the SDK (cheaper than another CLI run, for checks between CLI steps)."""
        sdk = Sdk(self.server)
        return str(sdk.mgmt(_Endpoints(self.mgmt, self.crypto)).get_key(key_id).data.lifecycle_state)


@pytest.fixture(scope="module")
def env(server: Any) -> Env:
    compartment = Sdk(server).new_compartment("vault-cli")
    out = server.oci(
        "kms",
        "management",
        "vault",
        "create",
        "--compartment-id",
        compartment,
        "--display-name",
        "v1",
        "--vault-type",
        "DEFAULT",
        "--wait-for-state",
        "ACTIVE",
        "--wait-interval-seconds",
        "1",
    )
    return Env(server, compartment, out.json["data"])


def _error(result: Any, status: int, code: str, *mentions: str) -> dict[str, Any]:
    assert result.rc != 0, f"expected a failure, got {result.out}"
    err = result.error
    assert (err.get("status"), err.get("code")) == (status, code), err
    for text in mentions:
        assert text in err.get("message", ""), (text, err)
    return err


def test_vault_create_get_list_update(server: Any, env: Env) -> None:
    vault = env.vault
    assert vault["id"].startswith("ocid1.vault.oc1.iad.")
    assert vault["lifecycle-state"] == "ACTIVE"
    assert vault["display-name"] == "v1"
    assert vault["vault-type"] == "DEFAULT"
    assert vault["compartment-id"] == env.compartment
    # Absolute, reachable, per-vault URLs (R6.3, oci-wire §5.1).
    assert env.mgmt.startswith(server.endpoint() + "/")
    assert env.crypto.startswith(server.endpoint() + "/")
    assert env.mgmt != env.crypto

    got = server.oci("kms", "management", "vault", "get", "--vault-id", vault["id"]).json
    assert got["data"]["id"] == vault["id"]
    assert got["data"]["management-endpoint"] == env.mgmt
    assert got["etag"]

    listed = server.oci("kms", "management", "vault", "list", "--compartment-id", env.compartment, "--all").json
    assert [v["id"] for v in listed["data"]] == [vault["id"]]
    assert listed["data"][0]["lifecycle-state"] == "ACTIVE"

    updated = server.oci(
        "kms", "management", "vault", "update", "--vault-id", vault["id"], "--display-name", "v1-renamed", "--force"
    ).json["data"]
    assert updated["display-name"] == "v1-renamed"
    assert updated["vault-type"] == "DEFAULT"  # R6.1: the type never changes
    got = server.oci("kms", "management", "vault", "get", "--vault-id", vault["id"]).json["data"]
    assert got["display-name"] == "v1-renamed"
    assert got["lifecycle-state"] == "ACTIVE"

    # The vault API also answers on its regional endpoint without --endpoint being the vault's.
    missing = server.oci("kms", "management", "vault", "get", "--vault-id", vault["id"][:-6] + "aaaaaa", check=False)
    _error(missing, 404, "NotAuthorizedOrNotFound")


def test_key_create_get_list_update(env: Env) -> None:
    key = env.new_key("k1")
    assert key["id"].startswith("ocid1.key.oc1.iad.")
    assert key["lifecycle-state"] == "ENABLED"
    assert key["key-shape"]["algorithm"] == "AES"
    assert key["key-shape"]["length"] == 32
    assert key["vault-id"] == env.vault["id"]
    assert key["compartment-id"] == env.compartment
    assert key["current-key-version"]

    got = env.km("key", "get", "--key-id", key["id"]).json
    assert got["data"]["id"] == key["id"]
    assert got["data"]["current-key-version"] == key["current-key-version"]
    assert got["etag"]

    listed = env.km("key", "list", "--compartment-id", env.compartment, "--all").json["data"]
    assert key["id"] in [k["id"] for k in listed]
    summary = next(k for k in listed if k["id"] == key["id"])
    assert summary["algorithm"] == "AES"
    assert summary["vault-id"] == env.vault["id"]

    updated = env.km("key", "update", "--key-id", key["id"], "--display-name", "k1-renamed", "--force").json["data"]
    assert updated["display-name"] == "k1-renamed"
    assert env.key(key["id"])["display-name"] == "k1-renamed"


def test_disable_enable(env: Env) -> None:
    key = env.new_key("toggle")
    disabled = env.km("key", "disable", "--key-id", key["id"]).json["data"]
    assert disabled["lifecycle-state"] == "DISABLING"  # R6.22: the action's response shows the transition
    assert env.key(key["id"])["lifecycle-state"] == "DISABLED"
    # Disabling twice is a permanent conflict, not a retried IncorrectState.
    _error(env.km("key", "disable", "--key-id", key["id"], check=False), 409, "Conflict")

    enabled = env.km("key", "enable", "--key-id", key["id"]).json["data"]
    assert enabled["lifecycle-state"] == "ENABLING"
    assert env.key(key["id"])["lifecycle-state"] == "ENABLED"

    # --wait-for-state on the action follows it to the final state.
    waited = env.km(
        "key", "disable", "--key-id", key["id"], "--wait-for-state", "DISABLED", "--wait-interval-seconds", "1"
    ).json["data"]
    assert waited["lifecycle-state"] == "DISABLED"
    env.km("key", "enable", "--key-id", key["id"])
    assert env.key(key["id"])["lifecycle-state"] == "ENABLED"


def test_schedule_and_cancel_deletion(server: Any, env: Env) -> None:
    key = env.new_key("to-delete")
    for days in (6.9, 30.5):  # R2.10: 7 to 30 days from the request
        refused = env.km(
            "key",
            "schedule-deletion",
            "--key-id",
            key["id"],
            "--time-of-deletion",
            _when(days_ahead(server, days)),
            check=False,
        )
        _error(refused, 400, "InvalidParameter")
        assert env.sdk_state(key["id"]) == "ENABLED"

    when = days_ahead(server, 10).replace(microsecond=0)
    scheduled = env.km("key", "schedule-deletion", "--key-id", key["id"], "--time-of-deletion", _when(when)).json[
        "data"
    ]
    assert scheduled["lifecycle-state"] == "SCHEDULING_DELETION"
    got = env.key(key["id"])
    assert got["lifecycle-state"] == "PENDING_DELETION"
    assert abs(_time(got["time-of-deletion"]) - when) < timedelta(seconds=1)
    # R6.23: a key pending deletion cannot be updated.
    _error(
        env.km("key", "update", "--key-id", key["id"], "--display-name", "x", "--force", check=False), 409, "Conflict"
    )

    cancelled = env.km("key", "cancel-deletion", "--key-id", key["id"]).json["data"]
    assert cancelled["lifecycle-state"] == "CANCELLING_DELETION"
    got = env.key(key["id"])
    assert got["lifecycle-state"] == "ENABLED"  # R2.4: the prior state
    assert got.get("time-of-deletion") is None
    # Cancelling again: nothing to cancel.
    _error(env.km("key", "cancel-deletion", "--key-id", key["id"], check=False), 409, "Conflict")

    # From DISABLED, cancelling returns to DISABLED; the default deletion time is 30 days ahead.
    env.km("key", "disable", "--key-id", key["id"])
    before = days_ahead(server, 30)
    env.km("key", "schedule-deletion", "--key-id", key["id"])
    got = env.key(key["id"])
    assert got["lifecycle-state"] == "PENDING_DELETION"
    assert abs(_time(got["time-of-deletion"]) - before) < timedelta(minutes=5)
    env.km("key", "cancel-deletion", "--key-id", key["id"])
    assert env.sdk_state(key["id"]) == "DISABLED"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_key_versions_and_crypto_round_trip(env: Env) -> None:
    key = env.new_key("crypto")
    kid = key["id"]
    v1 = key["current-key-version"]
    secret = b"blockvault says hello \x00\xff" * 3

    enc = env.kc("encrypt", "--key-id", kid, "--plaintext", _b64(secret)).json["data"]
    assert enc["key-id"] == kid
    assert enc["key-version-id"] == v1
    assert enc["ciphertext"] != _b64(secret)
    dec = env.kc("decrypt", "--key-id", kid, "--ciphertext", enc["ciphertext"]).json["data"]
    assert base64.b64decode(dec["plaintext"]) == secret
    assert dec["plaintext-checksum"]

    # Associated data binds the ciphertext (R6.26): same AD decrypts, other or missing AD does not.
    ad = '{"vol":"v1","purpose":"test"}'
    enc_ad = env.kc("encrypt", "--key-id", kid, "--plaintext", _b64(secret), "--associated-data", ad).json["data"]
    dec_ad = env.kc("decrypt", "--key-id", kid, "--ciphertext", enc_ad["ciphertext"], "--associated-data", ad).json[
        "data"
    ]
    assert base64.b64decode(dec_ad["plaintext"]) == secret
    wrong = env.kc(
        "decrypt",
        "--key-id",
        kid,
        "--ciphertext",
        enc_ad["ciphertext"],
        "--associated-data",
        '{"vol":"v2","purpose":"test"}',
        check=False,
    )
    _error(wrong, 400, "InvalidParameter")
    _error(
        env.kc("decrypt", "--key-id", kid, "--ciphertext", enc_ad["ciphertext"], check=False), 400, "InvalidParameter"
    )
    _error(
        env.kc("decrypt", "--key-id", kid, "--ciphertext", enc["ciphertext"], "--associated-data", ad, check=False),
        400,
        "InvalidParameter",
    )
    # A ciphertext is bound to its key too.
    other = env.new_key("crypto-other")
    _error(
        env.kc("decrypt", "--key-id", other["id"], "--ciphertext", enc["ciphertext"], check=False),
        400,
        "InvalidParameter",
    )

    # Rotation (R6.13-R6.17): a new current version encrypts; the old one still decrypts.
    v2 = env.km("key-version", "create", "--key-id", kid).json["data"]
    assert v2["key-id"] == kid
    assert v2["id"] != v1
    assert v2["vault-id"] == env.vault["id"]
    assert env.key(kid)["current-key-version"] == v2["id"]
    versions = env.km("key-version", "list", "--key-id", kid, "--all").json["data"]
    assert sorted(v["id"] for v in versions) == sorted([v1, v2["id"]])
    got_v2 = env.km("key-version", "get", "--key-id", kid, "--key-version-id", v2["id"]).json["data"]
    assert got_v2["id"] == v2["id"]

    enc2 = env.kc("encrypt", "--key-id", kid, "--plaintext", _b64(secret)).json["data"]
    assert enc2["key-version-id"] == v2["id"]
    for ciphertext, version in ((enc["ciphertext"], v1), (enc2["ciphertext"], v2["id"])):
        out = env.kc("decrypt", "--key-id", kid, "--ciphertext", ciphertext).json["data"]
        assert base64.b64decode(out["plaintext"]) == secret
        assert out["key-version-id"] == version
    dec_ad = env.kc("decrypt", "--key-id", kid, "--ciphertext", enc_ad["ciphertext"], "--associated-data", ad).json[
        "data"
    ]
    assert base64.b64decode(dec_ad["plaintext"]) == secret


def test_generate_data_encryption_key(env: Env) -> None:
    key = env.new_key("dek")
    kid = key["id"]
    with_plain = env.kc(
        "generate-data-encryption-key", "--key-id", kid, "--include-plaintext-key", "true", "--key-shape", AES32
    ).json["data"]
    dek = base64.b64decode(with_plain["plaintext"])
    assert len(dek) == 32
    assert with_plain["plaintext-checksum"]
    unwrapped = env.kc("decrypt", "--key-id", kid, "--ciphertext", with_plain["ciphertext"]).json["data"]
    assert base64.b64decode(unwrapped["plaintext"]) == dek

    without = env.kc(
        "generate-data-encryption-key", "--key-id", kid, "--include-plaintext-key", "false", "--key-shape", AES32
    ).json["data"]
    assert without.get("plaintext") is None
    assert without.get("plaintext-checksum") is None
    hidden = env.kc("decrypt", "--key-id", kid, "--ciphertext", without["ciphertext"]).json["data"]
    hidden_dek = base64.b64decode(hidden["plaintext"])
    assert len(hidden_dek) == 32
    assert hidden_dek != dek

    # With associated data (as Block Volume would bind a DEK to its volume).
    ad = '{"vol":"v1"}'
    bound = env.kc(
        "generate-data-encryption-key",
        "--key-id",
        kid,
        "--include-plaintext-key",
        "true",
        "--key-shape",
        AES32,
        "--associated-data",
        ad,
    ).json["data"]
    out = env.kc("decrypt", "--key-id", kid, "--ciphertext", bound["ciphertext"], "--associated-data", ad).json["data"]
    assert out["plaintext"] == bound["plaintext"]
    _error(
        env.kc("decrypt", "--key-id", kid, "--ciphertext", bound["ciphertext"], check=False), 400, "InvalidParameter"
    )


def test_disabled_key_refuses_crypto(env: Env) -> None:
    key = env.new_key("refuses")
    kid = key["id"]
    enc = env.kc("encrypt", "--key-id", kid, "--plaintext", _b64(b"data")).json["data"]
    env.km("key", "disable", "--key-id", kid)
    for args in (
        ("encrypt", "--key-id", kid, "--plaintext", _b64(b"data")),
        ("decrypt", "--key-id", kid, "--ciphertext", enc["ciphertext"]),
        ("generate-data-encryption-key", "--key-id", kid, "--include-plaintext-key", "true", "--key-shape", AES32),
    ):
        _error(env.kc(*args, check=False), 409, "Conflict", kid, "DISABLED")  # D1 (R2.1)
    # Rotation needs an ENABLED key (R6.14).
    _error(env.km("key-version", "create", "--key-id", kid, check=False), 409, "Conflict")

    env.km("key", "enable", "--key-id", kid)
    out = env.kc("decrypt", "--key-id", kid, "--ciphertext", enc["ciphertext"]).json["data"]
    assert base64.b64decode(out["plaintext"]) == b"data"


def test_rsa_key_is_created_but_refuses_volume_use(server: Any, env: Env) -> None:
    rsa = env.new_key("rsa", '{"algorithm":"RSA","length":256}')
    assert rsa["lifecycle-state"] == "ENABLED"
    assert rsa["key-shape"]["algorithm"] == "RSA"
    assert rsa["key-shape"]["length"] == 256
    sdk = Sdk(server)
    before = sdk.volume_ids(env.compartment)
    refused = server.oci(
        "bv",
        "volume",
        "create",
        "--compartment-id",
        env.compartment,
        "--availability-domain",
        server.ad(1),
        "--size-in-gbs",
        "50",
        "--kms-key-id",
        rsa["id"],
        check=False,
    )
    _error(refused, 400, "InvalidParameter", rsa["id"])  # D13 / R1.11
    assert sdk.volume_ids(env.compartment) == before
    # Nor can an RSA key generate data keys (R6.8).
    dek = env.kc(
        "generate-data-encryption-key",
        "--key-id",
        rsa["id"],
        "--include-plaintext-key",
        "true",
        "--key-shape",
        AES32,
        check=False,
    )
    assert dek.rc != 0
    assert dek.error["status"] == 400


def test_key_of_another_vault_is_refused(server: Any, env: Env) -> None:
    """oci-wire §5.1: a crypto or management endpoint serves its own vault's keys only."""
    sdk = Sdk(server)
    other_vault = sdk.new_vault(env.compartment, "v2")
    foreign = sdk.new_key(other_vault, env.compartment, "foreign").id
    enc = env.kc("encrypt", "--key-id", foreign, "--plaintext", _b64(b"data"), check=False)
    assert enc.rc != 0
    assert (enc.error["status"], enc.error["code"]) in ((404, "NotAuthorizedOrNotFound"), (400, "InvalidParameter"))
    got = env.km("key", "get", "--key-id", foreign, check=False)
    _error(got, 404, "NotAuthorizedOrNotFound")
    listed = env.km("key", "list", "--compartment-id", env.compartment, "--all").json  # None: empty list
    assert foreign not in [k["id"] for k in (listed or {}).get("data", [])]
    # On its own vault's endpoints it works.
    own = server.oci(
        "kms",
        "crypto",
        "encrypt",
        "--key-id",
        foreign,
        "--plaintext",
        _b64(b"data"),
        endpoint=other_vault.crypto_endpoint,
    ).json["data"]
    assert own["key-id"] == foreign
