"""Identity CRUD with the real `oci iam ...` CLI, and the authentication attacks of the IAM issue: each refused
(401/400/404 as OCI does) and nothing changes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import oci
import pytest
import requests
from helpers import raw
from iam_helpers import cli_error, new_user, oci_as, user_signer

pytestmark = pytest.mark.e2e


def test_compartments_users_groups_memberships_policies_crud(server: Any, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    top = server.oci(
        "iam", "compartment", "create", "--compartment-id", server.tenancy, "--name", f"top-{tag}", "--description", "t"
    ).json["data"]
    child = server.oci(
        "iam", "compartment", "create", "--compartment-id", top["id"], "--name", "child", "--description", "c"
    ).json["data"]
    assert child["compartment-id"] == top["id"]
    got = server.oci("iam", "compartment", "get", "--compartment-id", child["id"]).json["data"]
    assert got["name"] == "child"
    listed = server.oci(
        "iam", "compartment", "list", "--compartment-id", server.tenancy, "--compartment-id-in-subtree", "true", "--all"
    ).json["data"]
    assert {top["id"], child["id"]} <= {c["id"] for c in listed}
    upd = server.oci(
        "iam", "compartment", "update", "--compartment-id", child["id"], "--description", "d2", "--force"
    ).json["data"]
    assert upd["description"] == "d2"
    dup = cli_error(
        server.oci(
            "iam",
            "compartment",
            "create",
            "--compartment-id",
            top["id"],
            "--name",
            "child",
            "--description",
            "again",
            check=False,
        )
    )
    assert dup["status"] == 409

    user = new_user(server, tmp_path, "crud")
    assert oci_as(server, user, "iam", "user", "get", "--user-id", user.id).json["data"]["id"] == user.id
    server.oci("iam", "user", "update", "--user-id", user.id, "--description", "new", "--force")
    assert server.oci("iam", "user", "get", "--user-id", user.id).json["data"]["description"] == "new"
    users = server.oci("iam", "user", "list", "--all").json["data"]
    assert user.id in {u["id"] for u in users}

    group = server.oci("iam", "group", "create", "--name", f"g-{tag}", "--description", "g").json["data"]
    server.oci("iam", "group", "add-user", "--group-id", group["id"], "--user-id", user.id)
    members = server.oci("iam", "group", "list-users", "--group-id", group["id"]).json["data"]
    assert [m["id"] for m in members] == [user.id]
    assert server.oci("iam", "group", "get", "--group-id", group["id"]).json["data"]["name"] == f"g-{tag}"
    busy = cli_error(server.oci("iam", "group", "delete", "--group-id", group["id"], "--force", check=False))
    assert busy["status"] == 409

    stmts = [f"Allow group g-{tag} to read volume-family in compartment top-{tag}:child"]
    pol = server.oci(
        "iam",
        "policy",
        "create",
        "--compartment-id",
        server.tenancy,
        "--name",
        f"p-{tag}",
        "--description",
        "p",
        "--statements",
        json.dumps(stmts),
    ).json["data"]
    assert pol["statements"] == stmts
    assert server.oci("iam", "policy", "get", "--policy-id", pol["id"]).json["data"]["name"] == f"p-{tag}"
    pols = server.oci("iam", "policy", "list", "--compartment-id", server.tenancy, "--all").json["data"]
    assert pol["id"] in {p["id"] for p in pols}
    stmts2 = [f"Allow group g-{tag} to inspect volumes in compartment top-{tag}"]
    server.oci(
        "iam",
        "policy",
        "update",
        "--policy-id",
        pol["id"],
        "--statements",
        json.dumps(stmts2),
        "--version-date",
        "",
        "--force",
    )
    assert server.oci("iam", "policy", "get", "--policy-id", pol["id"]).json["data"]["statements"] == stmts2
    server.oci("iam", "policy", "delete", "--policy-id", pol["id"], "--force")
    assert cli_error(server.oci("iam", "policy", "get", "--policy-id", pol["id"], check=False))["status"] == 404

    server.oci("iam", "group", "remove-user", "--group-id", group["id"], "--user-id", user.id, "--force")
    server.oci("iam", "group", "delete", "--group-id", group["id"], "--force")
    server.oci("iam", "compartment", "delete", "--compartment-id", child["id"], "--force")
    gone = server.oci("iam", "compartment", "get", "--compartment-id", child["id"]).json["data"]
    assert gone["lifecycle-state"] == "DELETED"
    server.oci("iam", "user", "delete", "--user-id", user.id, "--force")
    assert cli_error(server.oci("iam", "user", "get", "--user-id", user.id, check=False))["status"] == 404


def test_bootstrap_admin_is_an_ordinary_administrators_member(server: Any) -> None:
    groups = server.oci("iam", "group", "list", "--name", "Administrators").json["data"]
    assert len(groups) == 1
    pols = server.oci("iam", "policy", "list", "--compartment-id", server.tenancy, "--all").json["data"]
    assert any("manage all-resources" in s.lower() for p in pols for s in p["statements"])


def _count_users(server: Any) -> int:
    return len(server.oci("iam", "user", "list", "--all").json["data"])


def test_authentication_attacks_are_refused_and_change_nothing(server: Any, tmp_path: Path) -> None:
    user = new_user(server, tmp_path, "victim")
    body = {"compartmentId": server.tenancy, "name": f"x-{uuid.uuid4().hex[:6]}", "description": "x"}
    before = _count_users(server)
    url = server.endpoint() + "/20160918/users"
    # unsigned
    assert requests.post(url, json=body, timeout=30).status_code == 401
    # body differs from x-content-sha256 (signed body, then sent another)
    signed = requests.Request("POST", url, json=body, auth=user_signer(user)).prepare()
    signed.body = json.dumps({**body, "name": "tampered"}).encode()
    signed.headers["content-length"] = str(len(signed.body))
    assert requests.Session().send(signed, timeout=30).status_code == 401
    # date more than 5 minutes off
    old = format_datetime(datetime.now(UTC) - timedelta(minutes=6), usegmt=True)
    resp = raw(server, "POST", "/20160918/users", json_body=body, headers={"date": old})
    assert resp.status_code == 401
    # a user of another tenancy (a key id naming a tenancy that is not ours)
    other = oci.signer.Signer(
        tenancy="ocid1.tenancy.oc1..aaaaaaaaothertenancy",
        user=user.id,
        fingerprint=user.fingerprint,
        private_key_file_location=str(user.key_file),
    )
    assert requests.get(url, params={"compartmentId": server.tenancy}, auth=other, timeout=30).status_code == 401
    # deleted API key, then deleted user
    assert oci_as(server, user, "iam", "user", "get", "--user-id", user.id).rc == 0
    server.oci("iam", "user", "api-key", "delete", "--user-id", user.id, "--fingerprint", user.fingerprint, "--force")
    err = cli_error(oci_as(server, user, "iam", "user", "get", "--user-id", user.id, check=False))
    assert (err["status"], err["code"]) == (401, "NotAuthenticated")
    server.oci("iam", "user", "api-key", "upload", "--user-id", user.id, "--key-file", str(user.public_file))
    assert oci_as(server, user, "iam", "user", "get", "--user-id", user.id).rc == 0
    server.oci("iam", "user", "delete", "--user-id", user.id, "--force")
    err = cli_error(oci_as(server, user, "iam", "user", "get", "--user-id", user.id, check=False))
    assert (err["status"], err["code"]) == (401, "NotAuthenticated")
    assert _count_users(server) == before - 1


def test_a_user_without_policies_sees_nothing_and_changes_nothing(server: Any, tmp_path: Path) -> None:
    user = new_user(server, tmp_path, "nobody")
    err = cli_error(
        oci_as(
            server,
            user,
            "iam",
            "compartment",
            "create",
            "--compartment-id",
            server.tenancy,
            "--name",
            "nope",
            "--description",
            "n",
            check=False,
        )
    )
    assert (err["status"], err["code"]) == (404, "NotAuthorizedOrNotFound")
    assert oci_as(server, user, "bv", "volume", "list", "--compartment-id", server.tenancy).out.strip() in (
        "",
        "[]",
    ) or oci_as(server, user, "bv", "volume", "list", "--compartment-id", server.tenancy).json.get("data") in (None, [])
    err = cli_error(oci_as(server, user, "iam", "user", "create", "--name", "evil", "--description", "e", check=False))
    assert err["status"] == 404
    # but may manage their own API keys (OCI lets every user do that)
    keys = oci_as(server, user, "iam", "user", "api-key", "list", "--user-id", user.id).json["data"]
    assert len(keys) == 1
