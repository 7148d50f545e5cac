"""The `blockvault` CLI without a real server: key style, exit codes, argument forms, request bodies, and the wire.

The wire tests run `main()` against a tiny recording HTTP server on 127.0.0.1 (stdlib, a thread, port 0), with a
fresh RSA key and OCI config in tmp_path, and check request lines, bodies and that every signature verifies
(rebuilt here from oci-wire.md §2 and checked with `cryptography`, independently of the server's verifier).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import inspect
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from blockvault import errors
from blockvault.cli import exitcodes
from blockvault.cli.app import build_parser, command_word, main
from blockvault.cli.client import (
    ApiError,
    ConfigError,
    ConnectionFailed,
    ProtocolError,
    ServerNotFound,
    UsageError,
    WaitTimeout,
    datetime_arg,
    size_arg,
    split_endpoint,
)
from blockvault.cli.commands import bv, kms
from blockvault.cli.output import kebab_key, to_cli
from blockvault.cli.progress import Progress

TENANCY = "ocid1.tenancy.oc1..aaaaaaaatenancy"
USER = "ocid1.user.oc1..aaaaaaaauser"

# --------------------------------------------------------------------------------------------------- key style


@pytest.mark.parametrize(
    ("wire", "cli"),
    [
        ("sizeInGBs", "size-in-gbs"),
        ("sizeInMBs", "size-in-mbs"),
        ("vpusPerGB", "vpus-per-gb"),
        ("autoTunedVpusPerGB", "auto-tuned-vpus-per-gb"),
        ("kmsKeyId", "kms-key-id"),
        ("isHydrated", "is-hydrated"),
        ("lifecycleState", "lifecycle-state"),
        ("uniqueSizeInMbs", "unique-size-in-mbs"),
        ("uniqueSizeInGBs", "unique-size-in-gbs"),
        ("wrappingkeyId", "wrappingkey-id"),
        ("xrrKmsKeyId", "xrr-kms-key-id"),
        ("totalDataTransferredInGBs", "total-data-transferred-in-gbs"),
        ("id", "id"),
    ],
)
def test_kebab_key_matches_the_real_cli(wire: str, cli: str) -> None:
    assert kebab_key(wire) == cli


def test_kebab_key_agrees_with_every_sdk_model_attribute() -> None:
    """The real CLI prints SDK attribute names with '_' -> '-'; derive the same from the wire names."""
    import oci.core.models
    import oci.identity.models
    import oci.key_management.models

    spellings: dict[str, set[str]] = {}
    for module in (oci.core.models, oci.key_management.models, oci.identity.models):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            try:
                model = cls()
            except TypeError:
                continue
            for attribute, wire in getattr(model, "attribute_map", {}).items():
                spellings.setdefault(wire, set()).add(attribute.replace("_", "-"))
    # The SDK itself is inconsistent for a few compute-shape fields (e.g. minInGBs is min-in-gbs in one model and
    # min-in-g-bs in another; allowedValues is once renamed): nothing can match both, and none is ours.
    unambiguous = {wire: names.pop() for wire, names in spellings.items() if len(names) == 1}
    assert len(unambiguous) > 1000
    wrong = {wire: (kebab_key(wire), cli) for wire, cli in unambiguous.items() if kebab_key(wire) != cli}
    assert wrong == {}


def test_to_cli_converts_nested_keys_but_not_user_maps() -> None:
    volume = {
        "id": "ocid1.volume.oc1.iad.a",
        "sizeInGBs": 50,
        "vpusPerGB": 10,
        "isHydrated": True,
        "sourceDetails": {"type": "volumeBackup", "id": "b"},
        "blockVolumeReplicas": [{"blockVolumeReplicaId": "r", "availabilityDomain": "AD-2", "kmsKeyId": None}],
        "freeformTags": {"costCenter": "42", "Team_Name": "x"},
        "definedTags": {"Ops": {"ownerEmail": "a@b"}},
        "systemTags": {},
    }
    assert to_cli(volume) == {
        "id": "ocid1.volume.oc1.iad.a",
        "size-in-gbs": 50,
        "vpus-per-gb": 10,
        "is-hydrated": True,
        "source-details": {"type": "volumeBackup", "id": "b"},
        "block-volume-replicas": [{"block-volume-replica-id": "r", "availability-domain": "AD-2", "kms-key-id": None}],
        "freeform-tags": {"costCenter": "42", "Team_Name": "x"},
        "defined-tags": {"Ops": {"ownerEmail": "a@b"}},
        "system-tags": {},
    }
    assert to_cli([{"lifecycleState": "AVAILABLE"}]) == [{"lifecycle-state": "AVAILABLE"}]
    assert to_cli({"associatedData": {"volumeId": "v"}}) == {"associated-data": {"volumeId": "v"}}


# --------------------------------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "InvalidParameter", 10),
        (400, "MissingParameter", 10),
        (400, "CannotParseRequest", 10),
        (400, "LimitExceeded", 10),
        (400, "RelatedResourceNotAuthorizedOrNotFound", 11),
        (404, "NotAuthorizedOrNotFound", 11),
        (404, None, 11),
        (409, "Conflict", 12),
        (409, "IncorrectState", 12),
        (409, "InvalidatedRetryToken", 12),
        (412, "NoEtagMatch", 12),
        (401, "NotAuthenticated", 13),
        (500, "InternalServerError", 14),
        (503, "ServiceUnavailable", 14),
        (429, "TooManyRequests", 14),
        (500, "IntegrityError", 90),
        (409, "IntegrityError", 90),
        (405, "MethodNotAllowed", 1),
        (None, None, 14),
    ],
)
def test_exit_code_for_api_errors(status: int | None, code: str | None, expected: int) -> None:
    assert exitcodes.for_api_error(status, code) == expected
    if status is not None:
        assert exitcodes.for_error(ApiError(status, code, "m")) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (errors.InvalidArgument(field="f", reason="r"), 10),
        (errors.NotFound(kind="k", ident="i"), 11),
        (errors.Conflict(kind="k", ident="i", reason="r"), 12),
        (errors.IncorrectState(kind="k", ident="i", state="s", allowed="a"), 12),
        (errors.PreconditionFailed(kind="k", ident="i"), 12),
        (errors.NotAuthenticated(reason="r"), 13),
        (errors.Unavailable(dependency="d"), 14),
        (errors.IntegrityError(what="w"), 90),
        (errors.DecryptionFailed(), 90),
        (ConnectionFailed(url="http://x"), 14),
        (ServerNotFound(file="blockvault.json", data_dir="/x"), 14),
        (UsageError(reason="r"), 2),
        (ConfigError(reason="r"), 2),
        (WaitTimeout(None), 2),
        (ProtocolError(reason="r"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_code_for_client_side_errors(exc: BaseException, expected: int) -> None:
    assert exitcodes.for_error(exc) == expected


# --------------------------------------------------------------------------------------------------- argument forms


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(list(argv)).parse_args(list(argv))


def test_doc_page_bv_create_is_volume_create() -> None:
    args = parse(
        "bv", "create", "--display-name", "v1", "--compartment-id", "ocid1.compartment.oc1..c",
        "--availability-domain", "AD-1", "--kms-key-id", "ocid1.key.oc1.iad.k", "--volume-backup-id=ocid1.vb",
    )  # fmt: skip
    assert args.handler is bv.cmd_volume_create
    assert (args.display_name, args.compartment_id, args.availability_domain) == (
        "v1",
        "ocid1.compartment.oc1..c",
        "AD-1",
    )
    assert (args.kms_key_id, args.volume_backup_id) == ("ocid1.key.oc1.iad.k", "ocid1.vb")
    for flag, dest in (
        ("--source-volume-id", "source_volume_id"),
        ("--source-volume-replica-id", "source_volume_replica_id"),
    ):
        args = parse("bv", "create", "--display-name", "n", f"{flag}=ocid1.x")
        assert getattr(args, dest) == "ocid1.x"


@pytest.mark.parametrize("value", ["--kms-key-id=", "--kms-key-id=''", '--kms-key-id=""'])
def test_backup_update_doc_forms_give_an_empty_key(value: str) -> None:
    args = parse("bv", "backup", "update", "--backup-id=ocid1.vb", value)
    assert args.handler is bv.cmd_backup_update
    assert args.volume_backup_id == "ocid1.vb"
    assert args.kms_key_id == ""
    assert bv.update_backup_body(args) == {"kmsKeyId": ""}


def test_backup_id_is_an_alias_of_volume_backup_id() -> None:
    assert parse("bv", "backup", "update", "--volume-backup-id", "b", "--kms-key-id", "k").volume_backup_id == "b"
    assert parse("bv", "backup", "get", "--backup-id", "b").volume_backup_id == "b"
    args = parse("bv", "backup", "update", "--kms-key-id", "", "--volume-backup-id", "b")
    assert args.kms_key_id == ""


def test_volume_kms_key_update_doc_form() -> None:
    args = parse("bv", "volume-kms-key", "update", "--volume-id=ocid1.volume.v", "--kms-key-id=ocid1.key.k")
    assert args.handler is bv.cmd_kms_key_update
    assert args.volume_id == "ocid1.volume.v"
    assert bv.update_kms_key_body(args) == {"kmsKeyId": "ocid1.key.k"}


def test_global_options_go_before_or_after_the_command() -> None:
    before = parse("--region", "us-phoenix-1", "--endpoint", "http://e", "bv", "volume", "get", "--volume-id", "v")
    after = parse("bv", "volume", "get", "--volume-id", "v", "--region", "us-phoenix-1", "--endpoint", "http://e")
    middle = parse("bv", "--region", "us-phoenix-1", "volume", "get", "--endpoint", "http://e", "--volume-id", "v")
    for args in (before, after, middle):
        assert (args.region, args.endpoint, args.volume_id) == ("us-phoenix-1", "http://e", "v")
    assert not hasattr(parse("bv", "volume", "get", "--volume-id", "v"), "region")


def test_no_abbreviations_and_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bv", "volume", "get", "--volume"]) == 2
    assert main(["bv", "volume", "create", "--vpus-per-gb", "ten"]) == 2
    assert main(["kms", "management", "key", "create", "--display-name", "k", "--key-shape", "{bad"]) == 2
    assert main(["bv", "volume", "list", "--lifecycle-state", "BOGUS"]) == 2
    capsys.readouterr()


def test_wait_for_state_is_repeatable_and_case_insensitive() -> None:
    args = parse("bv", "volume", "delete", "--volume-id", "v", "--force", "--wait-for-state", "terminated",
                 "--wait-for-state", "FAULTY")  # fmt: skip
    assert args.wait_for_state == ["TERMINATED", "FAULTY"]


def test_command_word_skips_global_options() -> None:
    assert command_word(["--data-dir", "/x", "--region", "r", "serve", "--port", "1"]) == "serve"
    assert command_word(["--no-retry", "bv", "volume"]) == "bv"
    assert command_word(["--data-dir=/x", "endpoints"]) == "endpoints"
    assert command_word([]) is None


def test_value_parsers() -> None:
    assert datetime_arg("2030-01-01T00:00:00Z") == "2030-01-01T00:00:00Z"
    assert datetime_arg("2030-01-01T02:00:00+02:00") == "2030-01-01T00:00:00Z"
    assert datetime_arg("2030-01-01") == "2030-01-01T00:00:00Z"
    assert datetime_arg("2030-01-01T00:00:00.5Z") == "2030-01-01T00:00:00.500000Z"
    assert [size_arg(v) for v in ("4096", "4K", "1M", "1MiB", "2G", "0x10")] == [
        4096,
        4096,
        1 << 20,
        1 << 20,
        2 << 30,
        16,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        size_arg("-1")
    assert split_endpoint("http://h:1/us-ashburn-1/") == ("http://h:1/us-ashburn-1", "http://h:1/us-ashburn-1/20160918")
    assert split_endpoint("http://h:1/20160918") == ("http://h:1", "http://h:1/20160918")


# --------------------------------------------------------------------------------------------------- request bodies
# Expected bodies are the ones captured from the real CLI (oci-wire.md §7.2), in the same key order.


def test_create_volume_body_restore_matches_real_cli() -> None:
    args = parse(
        "bv", "volume", "create", "--display-name", "v1", "--compartment-id", "ocid1.compartment.oc1..aaaa",
        "--availability-domain", "AD-1", "--kms-key-id", "ocid1.key.oc1.iad.bbbb",
        "--volume-backup-id", "ocid1.volumebackup.oc1.iad.cccc",
    )  # fmt: skip
    kind, source_id, path = bv.volume_source(args) or ("", "", "")
    assert path == "/volumeBackups/ocid1.volumebackup.oc1.iad.cccc"
    body = bv.create_volume_body(
        args,
        compartment_id=args.compartment_id,
        availability_domain=args.availability_domain,
        source_details={"type": kind, "id": source_id},
    )
    expected = (
        '{"compartmentId": "ocid1.compartment.oc1..aaaa", "availabilityDomain": "AD-1", "displayName": "v1", '
        '"kmsKeyId": "ocid1.key.oc1.iad.bbbb", "sourceDetails": {"type": "volumeBackup", '
        '"id": "ocid1.volumebackup.oc1.iad.cccc"}}'
    )
    assert json.dumps(body) == expected


def test_create_volume_body_empty_volume_matches_real_cli() -> None:
    replicas = '[{"availabilityDomain":"AD-2","xrrKmsKeyId":"ocid1.key.oc1.phx.rrrr"}]'
    args = parse(
        "bv", "volume", "create", "--compartment-id", "c", "--availability-domain", "AD-1", "--size-in-gbs", "100",
        "--vpus-per-gb", "20", "--block-volume-replicas", replicas, "--backup-policy-id", "p",
    )  # fmt: skip
    assert bv.volume_source(args) is None
    body = bv.create_volume_body(args, compartment_id="c", availability_domain="AD-1", source_details=None)
    assert list(body.items()) == [
        ("compartmentId", "c"),
        ("availabilityDomain", "AD-1"),
        ("backupPolicyId", "p"),
        ("vpusPerGB", 20),
        ("sizeInGBs", 100),
        ("blockVolumeReplicas", [{"availabilityDomain": "AD-2", "xrrKmsKeyId": "ocid1.key.oc1.phx.rrrr"}]),
    ]


def test_two_sources_are_a_usage_error() -> None:
    args = parse("bv", "volume", "create", "--volume-backup-id", "b", "--source-volume-id", "v")
    with pytest.raises(UsageError):
        bv.volume_source(args)


def test_backup_update_and_kms_key_bodies_match_real_cli() -> None:
    args = parse("bv", "backup", "update", "--volume-backup-id", "ocid1.volumebackup.oc1.iad.cccc",
                 "--kms-key-id", "ocid1.key.oc1.iad.ffff")  # fmt: skip
    assert json.dumps(bv.update_backup_body(args)) == '{"kmsKeyId": "ocid1.key.oc1.iad.ffff"}'
    args = parse("bv", "backup", "update", "--volume-backup-id", "b", "--display-name", "n")
    assert bv.update_backup_body(args) == {"displayName": "n"}  # kmsKeyId absent, not null


def test_crypto_bodies_match_real_cli() -> None:
    args = parse("kms", "crypto", "generate-data-encryption-key", "--key-id", "ocid1.key.oc1.iad.ffff",
                 "--include-plaintext-key", "true", "--key-shape", '{"algorithm":"AES","length":32}',
                 "--associated-data", '{"vol":"v1"}')  # fmt: skip
    assert json.dumps(kms.generate_key_body(args)) == (
        '{"includePlaintextKey": true, "keyId": "ocid1.key.oc1.iad.ffff", '
        '"keyShape": {"algorithm": "AES", "length": 32}, "associatedData": {"vol": "v1"}}'
    )
    args = parse("kms", "crypto", "encrypt", "--key-id", "k", "--plaintext", "aGVsbG8=")
    assert json.dumps(kms.encrypt_body(args)) == '{"keyId": "k", "plaintext": "aGVsbG8="}'
    args = parse("kms", "crypto", "decrypt", "--key-id", "k", "--ciphertext", "Q1Q6aGVsbG8=")
    assert json.dumps(kms.decrypt_body(args)) == '{"ciphertext": "Q1Q6aGVsbG8=", "keyId": "k"}'


def test_progress_bar_renders_rate_and_fraction() -> None:
    t = [0.0]
    out = io.StringIO()
    bar = Progress(4 << 20, out, enabled=True, now=lambda: t[0])
    t[0] = 1.0
    bar.advance(2 << 20)
    assert "50.0%" in bar.render(1.0)
    assert "2.0/4.0 MiB" in bar.render(1.0)
    assert "2.1 MB/s" in bar.render(1.0)
    bar.close()
    assert out.getvalue().startswith("\r[")
    assert out.getvalue().endswith("\n")
    quiet = io.StringIO()
    with Progress(10, quiet, enabled=False) as silent:
        silent.advance(10)
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------------------------------- the wire


@dataclass
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FakeServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    route: Callable[[Recorded], Reply] = lambda r: (404, {}, b'{"code":"NotFound","message":"no route"}')


def ok(data: Any, **headers: str) -> Reply:
    return 200, {"content-type": "application/json", "opc-request-id": "SRV1", **headers}, json.dumps(data).encode()


def fail(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"code": code, "message": message}).encode()
    return status, {"content-type": "application/json", "opc-request-id": "SRVERR"}, body


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state: dict[str, FakeServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake = state["server"]
            fake.requests.append(rec)
            status, headers, payload = fake.route(rec)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["server"] = FakeServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Env:
    data_dir: Path
    key: rsa.RSAPrivateKey
    endpoint: str

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), env={"BLOCKVAULT_DATA_DIR": str(self.data_dir)}, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def env(tmp_path: Path, server: FakeServer, rsa_key: rsa.RSAPrivateKey) -> Env:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = rsa_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.md5(der, usedforsecurity=False).digest())
    oci_dir = tmp_path / "oci"
    oci_dir.mkdir()
    (oci_dir / "key.pem").write_bytes(pem)
    (oci_dir / "config").write_text(
        f"[DEFAULT]\nuser={USER}\nfingerprint={fingerprint}\ntenancy={TENANCY}\nregion=us-ashburn-1\n"
        f"key_file={oci_dir / 'key.pem'}\n"
    )
    endpoint = f"{server.url}/us-ashburn-1"
    ads = ["bvlt:US-ASHBURN-AD-1", "bvlt:US-ASHBURN-AD-2", "bvlt:US-ASHBURN-AD-3"]
    discovery = {
        "defaultRegion": "us-ashburn-1",
        "regions": {
            "us-ashburn-1": {"endpoint": endpoint, "key": "iad", "availabilityDomains": ads},
            "us-phoenix-1": {"endpoint": f"{server.url}/us-phoenix-1", "key": "phx",
                             "availabilityDomains": ["bvlt:US-PHOENIX-AD-1"]},
        },
        "ociConfigFile": str(oci_dir / "config"),
        "profile": "DEFAULT",
        "tenancyId": TENANCY,
    }  # fmt: skip
    (tmp_path / "blockvault.json").write_text(json.dumps(discovery))
    return Env(tmp_path, rsa_key, endpoint)


_SIG_PARAM = re.compile(r'(\w+)="([^"]*)"')


def assert_signed(req: Recorded, key: rsa.RSAPrivateKey) -> None:
    """Rebuild the signing string (oci-wire.md §2) and verify it with the public key."""
    scheme, _, rest = req.headers["authorization"].partition(" ")
    assert scheme == "Signature"
    params = dict(_SIG_PARAM.findall(rest))
    assert params["algorithm"] == "rsa-sha256"
    assert params["version"] == "1"
    tenancy, user, _fp = params["keyId"].split("/")
    assert (tenancy, user) == (TENANCY, USER)
    names = params["headers"].split()
    if req.method in ("POST", "PUT"):
        assert names == ["date", "(request-target)", "host", "content-length", "content-type", "x-content-sha256"]
        assert req.headers["x-content-sha256"] == base64.b64encode(hashlib.sha256(req.body).digest()).decode()
        assert int(req.headers["content-length"]) == len(req.body)
    else:
        assert names == ["date", "(request-target)", "host"]
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append(f"(request-target): {req.method.lower()} {req.target}")
        else:
            lines.append(f"{name}: {req.headers[name]}")
    key.public_key().verify(
        base64.b64decode(params["signature"]), "\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256()
    )


VOLUME = {
    "id": "ocid1.volume.oc1.iad.new",
    "compartmentId": TENANCY,
    "availabilityDomain": "bvlt:US-ASHBURN-AD-1",
    "displayName": "v1",
    "lifecycleState": "PROVISIONING",
    "sizeInGBs": 1,
    "sizeInMBs": 1024,
    "vpusPerGB": 10,
    "kmsKeyId": "ocid1.key.oc1.iad.bbbb",
    "isHydrated": False,
    "freeformTags": {"myTag": "x"},
}


def test_doc_bv_create_from_backup_sends_what_the_real_cli_sends(env: Env, server: FakeServer) -> None:
    def route(req: Recorded) -> Reply:
        if req.method == "GET" and req.path.endswith("/volumeBackups/ocid1.volumebackup.oc1.iad.cccc"):
            return ok({"id": "ocid1.volumebackup.oc1.iad.cccc", "compartmentId": "ocid1.compartment.oc1..other"})
        if req.method == "POST" and req.path.endswith("/volumes"):
            return ok(VOLUME, etag="E1")
        return fail(404, "NotAuthorizedOrNotFound", "nope")

    server.route = route
    code, out, err = env.run(
        "bv", "create", "--display-name", "v1", "--compartment-id", "ocid1.compartment.oc1..aaaa",
        "--availability-domain", "AD-1", "--kms-key-id", "ocid1.key.oc1.iad.bbbb",
        "--volume-backup-id=ocid1.volumebackup.oc1.iad.cccc",
    )  # fmt: skip
    assert code == 0, err
    get, post = server.requests
    assert (get.method, get.target) == ("GET", "/us-ashburn-1/20160918/volumeBackups/ocid1.volumebackup.oc1.iad.cccc")
    assert (post.method, post.target) == ("POST", "/us-ashburn-1/20160918/volumes")
    assert post.json() == {
        "compartmentId": "ocid1.compartment.oc1..aaaa",
        "availabilityDomain": "AD-1",
        "displayName": "v1",
        "kmsKeyId": "ocid1.key.oc1.iad.bbbb",
        "sourceDetails": {"type": "volumeBackup", "id": "ocid1.volumebackup.oc1.iad.cccc"},
    }
    assert post.headers["content-type"] == "application/json"
    assert len(post.headers["opc-retry-token"]) == 30
    assert re.fullmatch(r"[0-9A-F]{32}", post.headers["opc-request-id"])
    for req in server.requests:
        assert_signed(req, env.key)
    printed = json.loads(out)
    assert printed["etag"] == "E1"
    assert printed["data"]["size-in-gbs"] == 1
    assert printed["data"]["kms-key-id"] == "ocid1.key.oc1.iad.bbbb"
    assert printed["data"]["freeform-tags"] == {"myTag": "x"}


def test_create_defaults_compartment_and_ad_from_discovery(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok(VOLUME)
    code, _, err = env.run("bv", "volume", "create", "--size-in-gbs", "50")
    assert code == 0, err
    (post,) = server.requests
    assert post.json() == {"compartmentId": TENANCY, "availabilityDomain": "bvlt:US-ASHBURN-AD-1", "sizeInGBs": 50}


def test_create_from_replica_takes_the_replicas_ad_and_prints_the_server_error(env: Env, server: FakeServer) -> None:
    def route(req: Recorded) -> Reply:
        if req.method == "GET":
            return ok({"id": "r", "compartmentId": TENANCY, "availabilityDomain": "bvlt:US-ASHBURN-AD-2"})
        return fail(400, "InvalidParameter", "block volume replicas come in a later release")

    server.route = route
    code, out, err = env.run("bv", "create", "--display-name", "n", "--availability-domain", "AD-1",
                             "--source-volume-replica-id=ocid1.blockvolumereplica.oc1.iad.eeee")  # fmt: skip
    assert code == 10
    assert out == ""
    get, post = server.requests
    assert get.target.endswith("/blockVolumeReplicas/ocid1.blockvolumereplica.oc1.iad.eeee")
    assert post.json()["availabilityDomain"] == "bvlt:US-ASHBURN-AD-2"
    assert post.json()["sourceDetails"] == {"type": "blockVolumeReplica", "id": "ocid1.blockvolumereplica.oc1.iad.eeee"}
    error = json.loads(err)
    assert error["status"] == 400
    assert error["code"] == "InvalidParameter"
    assert error["message"] == "block volume replicas come in a later release"
    assert error["opc-request-id"] == "SRVERR"


def test_backup_update_empty_key_goes_out_verbatim(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok({"id": "b", "kmsKeyId": None, "lifecycleState": "AVAILABLE"}, etag="E2")
    code, out, err = env.run("bv", "backup", "update", "--backup-id=ocid1.volumebackup.oc1.iad.cccc", "--kms-key-id=")
    assert code == 0, err
    (put,) = server.requests
    assert (put.method, put.target) == ("PUT", "/us-ashburn-1/20160918/volumeBackups/ocid1.volumebackup.oc1.iad.cccc")
    assert put.body == b'{"kmsKeyId": ""}'
    assert "opc-retry-token" not in put.headers
    assert_signed(put, env.key)
    assert json.loads(out) == {"data": {"id": "b", "kms-key-id": None, "lifecycle-state": "AVAILABLE"}, "etag": "E2"}


def test_volume_kms_key_update_and_delete(env: Env, server: FakeServer) -> None:
    server.route = lambda req: (
        ok({"kmsKeyId": "ocid1.key.oc1.iad.ffff"}, etag="E3") if req.method == "PUT" else (204, {}, b"")
    )
    code, out, err = env.run("bv", "volume-kms-key", "update", "--volume-id=ocid1.volume.oc1.iad.dddd",
                             "--kms-key-id=ocid1.key.oc1.iad.ffff")  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"data": {"kms-key-id": "ocid1.key.oc1.iad.ffff"}, "etag": "E3"}
    code, out, err = env.run("bv", "volume-kms-key", "delete", "--volume-id", "ocid1.volume.oc1.iad.dddd", "--force")
    assert (code, out) == (0, "")
    put, delete = server.requests
    assert put.target == "/us-ashburn-1/20160918/volumes/ocid1.volume.oc1.iad.dddd/kmsKey"
    assert put.body == b'{"kmsKeyId": "ocid1.key.oc1.iad.ffff"}'
    assert (delete.method, delete.target) == ("DELETE", put.target)
    for req in server.requests:
        assert_signed(req, env.key)


def test_region_option_picks_the_other_endpoint(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok(VOLUME)
    assert env.run("--region", "us-phoenix-1", "bv", "volume", "get", "--volume-id", "v")[0] == 0
    assert env.run("bv", "volume", "get", "--volume-id", "v", "--endpoint", server.url + "/x/")[0] == 0
    assert [r.target for r in server.requests] == ["/us-phoenix-1/20160918/volumes/v", "/x/20160918/volumes/v"]
    code, _, err = env.run("--region", "mars-1", "bv", "volume", "get", "--volume-id", "v")
    assert code == 2
    assert "mars-1" in err


def test_wait_for_state_polls_and_delete_treats_404_as_done(env: Env, server: FakeServer) -> None:
    def route(req: Recorded) -> Reply:
        if req.method == "POST":
            return ok(VOLUME, etag="E1")
        if req.method == "DELETE":
            return 204, {}, b""
        if any(r.method == "DELETE" for r in server.requests):
            return fail(404, "NotAuthorizedOrNotFound", "gone")
        return ok({**VOLUME, "lifecycleState": "AVAILABLE"}, etag="E9")

    server.route = route
    code, out, err = env.run("bv", "volume", "create", "--size-in-gbs", "1", "--wait-for-state", "available")
    assert code == 0, err
    assert "Waiting until the resource has entered state: ('AVAILABLE',)" in err
    printed = json.loads(out)
    assert printed["data"]["lifecycle-state"] == "AVAILABLE"
    assert printed["etag"] == "E9"
    code, out, err = env.run("bv", "volume", "delete", "--volume-id", VOLUME["id"], "--wait-for-state", "TERMINATED")
    assert (code, out) == (0, "")
    assert [r.method for r in server.requests] == ["POST", "GET", "DELETE", "GET"]


def test_wait_timeout_exits_2_with_the_last_state(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok(VOLUME)
    code, out, err = env.run("bv", "volume", "update", "--volume-id", "v", "--display-name", "x",
                             "--wait-for-state", "AVAILABLE", "--max-wait-seconds", "0")  # fmt: skip
    assert code == 2
    assert json.loads(out)["data"]["lifecycle-state"] == "PROVISIONING"
    assert "Failed to wait" in err


def test_list_all_follows_opc_next_page(env: Env, server: FakeServer) -> None:
    def route(req: Recorded) -> Reply:
        if "page=P2" in req.target:
            return ok([{"id": "b", "lifecycleState": "AVAILABLE"}])
        return ok([{"id": "a", "lifecycleState": "AVAILABLE"}], **{"opc-next-page": "P2"})

    server.route = route
    code, out, _ = env.run("bv", "volume", "list", "--availability-domain", "AD 1/é", "--all",
                           "--lifecycle-state", "available", "--sort-by", "TIMECREATED")  # fmt: skip
    assert code == 0
    assert json.loads(out) == {
        "data": [{"id": "a", "lifecycle-state": "AVAILABLE"}, {"id": "b", "lifecycle-state": "AVAILABLE"}]
    }
    first, second = server.requests
    assert first.target == (
        f"/us-ashburn-1/20160918/volumes?availabilityDomain=AD+1%2F%C3%A9&compartmentId={TENANCY}"
        "&sortBy=TIMECREATED&lifecycleState=AVAILABLE"
    )
    assert second.target == (
        f"/us-ashburn-1/20160918/volumes?availabilityDomain=AD+1%2F%C3%A9&compartmentId={TENANCY}"
        "&page=P2&sortBy=TIMECREATED&lifecycleState=AVAILABLE"
    )
    for req in server.requests:
        assert_signed(req, env.key)
    # Without --all: one page, the token is shown.
    code, out, err = env.run("bv", "volume", "list")
    assert json.loads(out)["opc-next-page"] == "P2"
    assert "--all" in err


def test_volume_write_then_read_in_chunks(env: Env, server: FakeServer, tmp_path: Path) -> None:
    disk = bytearray(8 << 20)  # the volume says 1 GiB; the test touches only its first 8 MiB

    def route(req: Recorded) -> Reply:
        path, _, query = req.target.partition("?")
        args = dict(p.split("=") for p in query.split("&")) if query else {}
        if path.endswith("/data") and req.method == "PUT":
            offset = int(args["offset"])
            disk[offset : offset + len(req.body)] = req.body
            return ok({"bytesWritten": len(req.body)})
        if path.endswith("/data") and req.method == "GET":
            offset, length = int(args["offset"]), int(args["length"])
            return 200, {"content-type": "application/octet-stream"}, bytes(disk[offset : offset + length])
        return ok(VOLUME)

    server.route = route
    payload = bytes(range(256)) * (10 * 1024 + 4)  # 2.5 MiB + 1 KiB
    src = tmp_path / "disk.img"
    src.write_bytes(payload)
    code, out, err = env.run("volume", "write", VOLUME["id"], "--from-file", str(src), "--offset", "4096",
                             "--chunk-mib", "1", "--progress")  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"data": {"volume-id": VOLUME["id"], "offset": 4096, "bytes-written": len(payload)}}
    assert "MB/s" in err
    assert "100.0%" in err
    puts = [r for r in server.requests if r.method == "PUT"]
    assert [r.target.rsplit("=", 1)[1] for r in puts] == ["4096", str(4096 + (1 << 20)), str(4096 + (2 << 20))]
    assert all(r.headers["content-type"] == "application/octet-stream" for r in puts)
    assert b"".join(r.body for r in puts) == payload
    for req in server.requests:
        assert_signed(req, env.key)

    dst = tmp_path / "out.img"
    code, out, err = env.run("volume", "read", VOLUME["id"], "--to-file", str(dst), "--offset", "4K",
                             "--length", str(len(payload)), "--chunk-mib", "1")  # fmt: skip
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert dst.read_bytes() == payload
    gets = [r.target for r in server.requests if r.method == "GET" and "/data" in r.target]
    assert gets[0] == f"/us-ashburn-1/20160918/volumes/{VOLUME['id']}/data?offset=4096&length={1 << 20}"
    assert len(gets) == 3


def test_write_past_the_end_is_refused_before_sending(env: Env, server: FakeServer, tmp_path: Path) -> None:
    server.route = lambda req: ok({**VOLUME, "sizeInGBs": 1})
    src = tmp_path / "small.img"
    src.write_bytes(b"x" * 8192)
    code, _, err = env.run("boot-volume", "write", "ocid1.bootvolume.b", "--from-file", str(src), "--offset", "1G")
    assert code == 10
    assert "--from-file" in err
    assert [r.target for r in server.requests] == ["/us-ashburn-1/20160918/bootVolumes/ocid1.bootvolume.b"]


def test_kms_key_commands_find_the_vault_from_the_key(env: Env, server: FakeServer) -> None:
    base = server.url

    def vault(n: int) -> dict[str, Any]:
        return {
            "id": f"ocid1.vault.v{n}",
            "lifecycleState": "ACTIVE",
            "compartmentId": TENANCY,
            "managementEndpoint": f"{base}/kms/v{n}/management",
            "cryptoEndpoint": f"{base}/kms/v{n}/crypto",
        }

    def route(req: Recorded) -> Reply:
        if req.path == "/us-ashburn-1/20180608/vaults":
            return ok([vault(1), vault(2)])
        if req.path == "/kms/v2/management/20180608/keys/ocid1.key.k":
            return ok({"id": "ocid1.key.k", "lifecycleState": "ENABLED", "currentKeyVersion": "kv"}, etag="EK")
        if req.path == "/kms/v2/crypto/20180608/encrypt":
            return ok({"ciphertext": "Q1Q=", "keyId": "ocid1.key.k", "keyVersionId": "kv"})
        return fail(404, "NotAuthorizedOrNotFound", "no such key")

    server.route = route
    code, out, err = env.run("kms", "management", "key", "get", "--key-id", "ocid1.key.k")
    assert code == 0, err
    assert json.loads(out) == {
        "data": {"id": "ocid1.key.k", "lifecycle-state": "ENABLED", "current-key-version": "kv"},
        "etag": "EK",
    }
    assert [r.path for r in server.requests] == [
        "/us-ashburn-1/20180608/vaults",
        "/kms/v1/management/20180608/keys/ocid1.key.k",
        "/kms/v2/management/20180608/keys/ocid1.key.k",
    ]
    assert server.requests[0].target == f"/us-ashburn-1/20180608/vaults?compartmentId={TENANCY}"
    server.requests.clear()
    code, out, err = env.run("kms", "crypto", "encrypt", "--key-id", "ocid1.key.k", "--plaintext", "aGVsbG8=")
    assert code == 0, err
    post = server.requests[-1]
    assert post.target == "/kms/v2/crypto/20180608/encrypt"
    assert post.json() == {"keyId": "ocid1.key.k", "plaintext": "aGVsbG8="}
    assert json.loads(out)["data"]["key-version-id"] == "kv"
    # --endpoint, like the real CLI: no lookup at all.
    server.requests.clear()
    code, _, _ = env.run("kms", "management", "key", "enable", "--key-id", "ocid1.key.k",
                         "--endpoint", f"{base}/kms/v2/management")  # fmt: skip
    (enable,) = server.requests
    assert (enable.method, enable.target, enable.body) == (
        "POST",
        "/kms/v2/management/20180608/keys/ocid1.key.k/actions/enable",
        b"",
    )
    assert enable.headers["x-content-sha256"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    for req in server.requests:
        assert_signed(req, env.key)


def test_kms_key_create_uses_vault_id_and_matches_real_cli(env: Env, server: FakeServer) -> None:
    mgmt = f"{server.url}/kms/v1/management"

    def route(req: Recorded) -> Reply:
        if req.path == "/us-ashburn-1/20180608/vaults/ocid1.vault.v1":
            return ok({"id": "ocid1.vault.v1", "managementEndpoint": mgmt, "lifecycleState": "ACTIVE"})
        return ok({"id": "ocid1.key.new", "lifecycleState": "CREATING"})

    server.route = route
    code, _, err = env.run("kms", "management", "key", "create", "--compartment-id", "ocid1.compartment.oc1..aaaa",
                           "--display-name", "k1", "--key-shape", '{"algorithm":"AES","length":32}',
                           "--protection-mode", "SOFTWARE", "--vault-id", "ocid1.vault.v1")  # fmt: skip
    assert code == 0, err
    post = server.requests[-1]
    assert post.target == "/kms/v1/management/20180608/keys"
    assert post.body == (
        b'{"compartmentId": "ocid1.compartment.oc1..aaaa", "displayName": "k1", '
        b'"keyShape": {"algorithm": "AES", "length": 32}, "protectionMode": "SOFTWARE"}'
    )


def test_vault_create_defaults(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok({"id": "ocid1.vault.v", "lifecycleState": "CREATING"})
    assert env.run("kms", "management", "vault", "create", "--display-name", "v")[0] == 0
    (post,) = server.requests
    assert post.target == "/us-ashburn-1/20180608/vaults"
    assert post.json() == {"compartmentId": TENANCY, "displayName": "v", "vaultType": "DEFAULT"}


def test_clock_advance_and_get(env: Env, server: FakeServer) -> None:
    server.route = lambda req: ok({"now": "2030-01-02T02:00:00.000Z", "offsetSeconds": 93600})
    code, out, err = env.run("clock", "advance", "--days", "1", "--hours", "2")
    assert code == 0, err
    assert json.loads(out) == {"now": "2030-01-02T02:00:00.000Z", "offsetSeconds": 93600}
    assert env.run("clock", "get")[0] == 0
    post, get = server.requests
    assert (post.method, post.target, post.json()) == ("POST", "/us-ashburn-1/blockvault/admin/clock/advance",
                                                       {"seconds": 93600})  # fmt: skip
    assert (get.method, get.target) == ("GET", "/us-ashburn-1/blockvault/admin/clock")
    assert env.run("clock", "advance")[0] == 2


def test_endpoints_lists_regions(env: Env) -> None:
    code, out, _ = env.run("endpoints")
    assert code == 0
    view = json.loads(out)["data"]
    assert view["default-region"] == "us-ashburn-1"
    assert view["tenancy-id"] == TENANCY
    assert [(r["region"], r["endpoint"], r["is-default"]) for r in view["regions"]] == [
        ("us-ashburn-1", env.endpoint, True),
        ("us-phoenix-1", env.endpoint.replace("ashburn", "phoenix"), False),
    ]


def test_errors_map_to_exit_codes_end_to_end(env: Env, server: FakeServer) -> None:
    for status, code_name, exit_code in ((404, "NotAuthorizedOrNotFound", 11), (409, "Conflict", 12),
                                         (412, "NoEtagMatch", 12), (401, "NotAuthenticated", 13),
                                         (500, "IntegrityError", 90)):  # fmt: skip
        server.route = lambda req, s=status, c=code_name: fail(s, c, "m")
        code, _, err = env.run("--no-retry", "bv", "volume", "get", "--volume-id", "v")
        assert code == exit_code, (status, code_name)
        assert json.loads(err)["code"] == code_name


def test_transient_errors_are_retried_with_the_same_retry_token(env: Env, server: FakeServer) -> None:
    replies = [fail(503, "ServiceUnavailable", "busy"), ok(VOLUME)]
    server.route = lambda req: replies.pop(0)
    code, _, err = env.run("bv", "volume", "create", "--size-in-gbs", "1")  # one 1 s back-off
    assert code == 0, err
    first, second = server.requests
    assert first.headers["opc-retry-token"] == second.headers["opc-retry-token"]
    assert first.headers["opc-request-id"] != second.headers["opc-request-id"]


def test_unreachable_server_exits_14(env: Env) -> None:
    code, _, err = env.run("--endpoint", "http://127.0.0.1:9", "bv", "volume", "get", "--volume-id", "v")
    assert code == 14
    assert "cannot reach blockvault at http://127.0.0.1:9: is `blockvault serve` running?" in err


def test_missing_discovery_file_exits_14(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(["bv", "volume", "get", "--volume-id", "v"], env={"BLOCKVAULT_DATA_DIR": str(tmp_path)},
                stdout=io.StringIO(), stderr=err)  # fmt: skip
    assert code == 14
    assert "blockvault serve" in err.getvalue()


def test_signature_verifies_with_the_servers_verifier(env: Env, server: FakeServer) -> None:
    """Cross-check with blockvault's own verifier (iam/signing.py), which the real server uses."""
    signing = pytest.importorskip("blockvault.iam.signing")
    from datetime import UTC, datetime

    server.route = lambda req: ok({"kmsKeyId": "k"})
    env.run("bv", "volume-kms-key", "update", "--volume-id", "v", "--kms-key-id", "k")
    env.run("bv", "volume", "get", "--volume-id", "v")
    for req in server.requests:
        signed = signing.SignedRequest(req.method, req.target, req.headers, req.body)
        verified = signing.verify(signed, lookup=lambda key_id: env.key.public_key(), now=datetime.now(UTC))
        assert verified.key_id.user_id == USER
