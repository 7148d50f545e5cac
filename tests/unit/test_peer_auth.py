"""The internal peer routes accept only calls signed by the deployment's service identity (docs/design/regions.md,
"Service identity"): unsigned, wrongly signed and user-signed calls are 401; the service key opens no public route;
only Protocol methods are callable; a region another process serves answers 421 naming its endpoint."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from blockvault.config import Settings
from blockvault.errors import NotFound
from blockvault.iam import signing
from blockvault.peer import identity as service_identity
from blockvault.peer.codec import RemoteError, decode, encode, rebuild
from blockvault.server import Server

PATH = "/us-ashburn-1/internal/peer/region/get_backup"
MISSING = "ocid1.volumebackup.oc1.iad.aaaaaaaamissing"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("peer-auth") / "data"
    srv = Server(
        Settings(
            data_dir=data_dir,
            port=18080,
            nbd_port=0,
            served_regions=("us-ashburn-1",),
            peers=(("us-phoenix-1", "http://127.0.0.1:18081"),),
        )
    )
    yield srv
    srv.stop()


class Client:
    """requests against the app served by a real uvicorn on a loopback port (the same stack `serve` runs)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, *, content: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(self.base + path, data=content, headers=headers, timeout=30)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(self.base + path, headers=headers or {}, timeout=30)


def serve_in_thread(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started
    return uv, thread, port


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[Client]:
    uv, thread, port = serve_in_thread(server.app)
    yield Client(f"http://127.0.0.1:{port}")
    uv.should_exit = True
    thread.join(timeout=30)


def _body(server: Server, *args: object) -> bytes:
    return encode({"h": None, "a": list(args), "k": {}}, server.peer_registry.types)


def _signed(
    client: Client, identity: service_identity.ServiceIdentity, body: bytes, path: str = PATH
) -> dict[str, str]:
    return service_identity.sign_headers(identity, client.base + path, body, datetime.now(UTC))


def test_a_service_signed_call_reaches_the_region_and_its_domain_error_comes_back(
    server: Server, client: Client
) -> None:
    body = _body(server, "volume", MISSING)
    resp = client.post(PATH, content=body, headers=_signed(client, server.service_identity, body))
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith(service_identity.CONTENT_TYPE)
    err = decode(resp.content, server.peer_registry.types)
    assert isinstance(err, RemoteError)
    assert isinstance(rebuild(err), NotFound)


def test_unsigned_is_401(server: Server, client: Client) -> None:
    body = _body(server, "volume", MISSING)
    resp = client.post(PATH, content=body, headers={"content-type": service_identity.CONTENT_TYPE})
    assert resp.status_code == 401
    assert resp.json()["code"] == "NotAuthenticated"


def test_a_right_key_id_with_a_wrong_key_is_401(server: Server, client: Client) -> None:
    forged = service_identity.ServiceIdentity(
        server.service_identity.key_id,
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        server.service_identity.public_key,
    )
    body = _body(server, "volume", MISSING)
    resp = client.post(PATH, content=body, headers=_signed(client, forged, body))
    assert resp.status_code == 401


def test_a_body_changed_after_signing_is_401(server: Server, client: Client) -> None:
    body = _body(server, "volume", MISSING)
    headers = _signed(client, server.service_identity, body)
    resp = client.post(PATH, content=_body(server, "volume", MISSING + "x"), headers=headers)
    assert resp.status_code == 401


def _admin_identity(server: Server) -> service_identity.ServiceIdentity:
    """The bootstrap admin's own API key (a valid USER key of this tenancy), as a signer."""
    pem = server.bootstrap.key_file.read_bytes().replace(b"OCI_API_KEY\n", b"")
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_id = f"{server.bootstrap.tenancy_id}/{server.bootstrap.admin_user_id}/{signing.fingerprint(public)}"
    return service_identity.ServiceIdentity(key_id, private, private.public_key())


def test_a_user_key_never_reaches_the_internal_routes(server: Server, client: Client) -> None:
    admin = _admin_identity(server)
    # the same key opens the public API ...
    headers = {"date": format_datetime(datetime.now(UTC), usegmt=True), "host": client.base.removeprefix("http://")}
    target = f"/us-ashburn-1/20160918/volumes?compartmentId={server.bootstrap.tenancy_id}"
    headers["authorization"] = signing.sign(
        "GET", target, headers, b"", key_id=admin.key_id, private_key=admin.private_key
    )
    assert client.get(target, headers=headers).status_code == 200
    # ... and is refused on the internal one
    body = _body(server, "volume", MISSING)
    resp = client.post(PATH, content=body, headers=_signed(client, admin, body))
    assert resp.status_code == 401
    assert resp.json()["code"] == "NotAuthenticated"


def test_the_service_key_opens_no_public_route(server: Server, client: Client) -> None:
    ident = server.service_identity
    headers = {"date": format_datetime(datetime.now(UTC), usegmt=True), "host": client.base.removeprefix("http://")}
    target = f"/us-ashburn-1/20160918/volumes?compartmentId={server.bootstrap.tenancy_id}"
    headers["authorization"] = signing.sign(
        "GET", target, headers, b"", key_id=ident.key_id, private_key=ident.private_key
    )
    assert client.get(target, headers=headers).status_code == 401


@pytest.mark.parametrize("method", ["_service", "__init__", "connect_regions", "nope"])
def test_only_protocol_methods_are_callable(server: Server, client: Client, method: str) -> None:
    path = f"/us-ashburn-1/internal/peer/region/{method}"
    body = _body(server)
    resp = client.post(path, content=body, headers=_signed(client, server.service_identity, body, path))
    assert resp.status_code == 404


def test_a_region_served_by_another_process_answers_421_with_its_endpoint(client: Client) -> None:
    resp = client.get("/us-phoenix-1/20160918/volumes")
    assert resp.status_code == 421
    assert resp.json()["code"] == "MisdirectedRequest"
    assert "http://127.0.0.1:18081/us-phoenix-1" in resp.json()["message"]


def test_the_service_identity_is_private_to_the_data_dir_and_stable(server: Server) -> None:
    key = server.settings.data_dir / "service" / service_identity.KEY_FILE
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    again = service_identity.load_or_create(key.parent, server.bootstrap.tenancy_id)
    assert again.key_id == server.service_identity.key_id
    key_id = json.loads((key.parent / service_identity.ID_FILE).read_text())["keyId"]
    assert key_id.startswith(server.bootstrap.tenancy_id + "/ocid1.user.oc1..")
    assert Path(server.settings.data_dir / "blockvault.json").exists() is False  # written by `serve`, not by Server()
