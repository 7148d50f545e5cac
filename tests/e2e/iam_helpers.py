"""IAM drivers for the acceptance suite: users made with the real `oci` CLI, each with its own key and config file,
and the real CLI / SDK run as that user."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import oci
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import Sdk, e2e_conftest

if TYPE_CHECKING:
    from conftest import CliResult, Server


@dataclass
class User:
    name: str
    id: str
    fingerprint: str
    config_file: Path
    key_file: Path
    public_file: Path


def _keypair(directory: Path) -> tuple[Path, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = directory / "key.pem"
    public_file = directory / "key_public.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(key_file, 0o600)
    public_file.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_file, public_file


def write_config(path: Path, *, user: str, fingerprint: str, tenancy: str, key_file: Path) -> None:
    path.write_text(
        f"[DEFAULT]\nuser={user}\nfingerprint={fingerprint}\ntenancy={tenancy}\nregion=us-ashburn-1\n"
        f"key_file={key_file}\n"
    )
    os.chmod(path, 0o600)


def new_user(server: Server, base: Path, name: str) -> User:
    """`oci iam user create` + `oci iam user api-key upload` as the admin, then a config file of the user's own."""
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    directory = base / name
    directory.mkdir(parents=True)
    key_file, public_file = _keypair(directory)
    user = server.oci("iam", "user", "create", "--name", name, "--description", f"e2e {name}").json["data"]
    key = server.oci("iam", "user", "api-key", "upload", "--user-id", user["id"], "--key-file", str(public_file))
    fingerprint = key.json["data"]["fingerprint"]
    config = directory / "config"
    write_config(config, user=user["id"], fingerprint=fingerprint, tenancy=server.tenancy, key_file=key_file)
    return User(name, user["id"], fingerprint, config, key_file, public_file)


def oci_as(server: Server, user: User, *args: str, check: bool = True, endpoint: str | None = None) -> CliResult:
    """The real oci CLI with the user's own config file and key."""
    conftest = e2e_conftest()
    cmd = [conftest.oci_cli_bin(), "--config-file", str(user.config_file), "--endpoint", endpoint or server.endpoint()]
    proc = subprocess.run(
        [*cmd, *args, "--no-retry"], capture_output=True, text=True, env=server.env(), timeout=300, check=False
    )
    result = conftest.CliResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"oci {' '.join(args)} as {user.name} failed ({proc.returncode}):\n{proc.stderr}")
    return result


@dataclass
class UserSdk(Sdk):
    """The real SDK's clients (and the suite's Sdk conveniences) signed with one user's own key."""

    user: User | None = None

    def __post_init__(self) -> None:
        assert self.user is not None
        self.config = dict(oci.config.from_file(str(self.user.config_file)))
        endpoint = self.server.endpoint(self.region)
        self.bs = oci.core.BlockstorageClient(self.config, service_endpoint=endpoint)
        self.kv = oci.key_management.KmsVaultClient(self.config, service_endpoint=endpoint)
        self.identity = oci.identity.IdentityClient(self.config, service_endpoint=endpoint)


def user_signer(user: User) -> oci.signer.Signer:
    cfg = oci.config.from_file(str(user.config_file))
    return oci.signer.Signer(
        tenancy=cfg["tenancy"],
        user=cfg["user"],
        fingerprint=cfg["fingerprint"],
        private_key_file_location=cfg["key_file"],
    )


def service_error(fn: Any) -> oci.exceptions.ServiceError:
    try:
        fn()
    except oci.exceptions.ServiceError as exc:
        return exc
    raise AssertionError("expected a ServiceError")


def cli_error(result: CliResult) -> dict[str, Any]:
    assert result.rc != 0, result.out
    return dict(result.error)


def policy(server: Server, compartment: str, name: str, *statements: str) -> str:
    """`oci iam policy create --statements` as the admin; returns the policy id."""
    out = server.oci(
        "iam",
        "policy",
        "create",
        "--compartment-id",
        compartment,
        "--name",
        f"{name}-{uuid.uuid4().hex[:6]}",
        "--description",
        name,
        "--statements",
        json.dumps(list(statements)),
    )
    return str(out.json["data"]["id"])
