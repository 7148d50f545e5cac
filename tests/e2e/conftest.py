"""A live `blockvault serve` (subprocess, temp data dir, free port, clock control on) for the acceptance suite,
plus drivers for the real `oci` CLI, the real `oci` Python SDK and our `blockvault` CLI.

The oci CLI lives in its own virtualenv (it pins its own dependencies); scripts/test installs it and exports
OCI_CLI_BIN. CI never skips these tests: a missing CLI is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def oci_cli_bin() -> str:
    found = os.environ.get("OCI_CLI_BIN") or str(REPO / ".venv-oci-cli" / "bin" / "oci")
    if not Path(found).exists():
        found = shutil.which("oci") or found
    if not Path(found).exists():
        pytest.fail(f"the real oci CLI is not installed at {found}: run scripts/test, which installs it")
    return found


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out) if self.out.strip() else None

    @property
    def error(self) -> dict[str, Any]:
        """The JSON error block the oci CLI (and ours) print on stderr."""
        text = self.err
        start = text.find("{")
        if start < 0:
            raise AssertionError(f"no JSON error in stderr: {text!r}")
        depth = 0
        for i, ch in enumerate(text[start:], start):
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 0:
                return dict(json.loads(text[start : i + 1]))
        raise AssertionError(f"unterminated JSON error in stderr: {text!r}")


@dataclass
class Server:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    discovery: dict[str, Any]
    nbd_port: int = 0  # every test server gets its own free NBD port (serve --nbd-port)

    @property
    def config_file(self) -> str:
        return str(self.discovery["ociConfigFile"])

    @property
    def tenancy(self) -> str:
        return str(self.discovery["tenancyId"])

    def endpoint(self, region: str = "us-ashburn-1") -> str:
        return str(self.discovery["regions"][region]["endpoint"])

    def ad(self, n: int = 1, region: str = "us-ashburn-1") -> str:
        return str(self.discovery["regions"][region]["availabilityDomains"][n - 1])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKVAULT_", "OCI_CLI_"))}
        env.update(
            SUPPRESS_LABEL_WARNING="True",
            OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING="True",
            BLOCKVAULT_DATA_DIR=str(self.data_dir),
        )
        return env

    def oci(self, *args: str, endpoint: str | None = None, check: bool = True, timeout: float = 300) -> CliResult:
        """The real oci CLI, with --no-retry unless the caller passes retry flags."""
        cmd = [oci_cli_bin(), "--config-file", self.config_file, "--endpoint", endpoint or self.endpoint()]
        extra = [] if any(a.startswith("--max-retries") or a == "--retry" for a in args) else ["--no-retry"]
        proc = subprocess.run(
            [*cmd, *args, *extra], capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"oci {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
        return result

    def bv(self, *args: str, check: bool = True, timeout: float = 300) -> CliResult:
        """Our blockvault CLI, finding the server through the data dir."""
        proc = subprocess.run(
            [sys.executable, "-m", "blockvault", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"blockvault {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
            )
        return result

    def sdk_config(self) -> dict[str, Any]:
        import oci

        return dict(oci.config.from_file(self.config_file))


def start_server(data_dir: Path, port: int | None = None, nbd_port: int | None = None) -> Server:
    port = port or _free_port()
    nbd_port = nbd_port or _free_port()
    log = open(data_dir.parent / f"serve-{port}.log", "ab")  # noqa: SIM115 - lives as long as the process
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKVAULT_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "blockvault",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--allow-clock-control",
            "--nbd-port",
            str(nbd_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"blockvault serve exited with {process.returncode}; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError("blockvault serve did not listen within 60 s")
    discovery = json.loads((data_dir / "blockvault.json").read_text())
    return Server(data_dir, port, process, discovery, nbd_port)


def stop_server(server: Server, *, kill: bool = False) -> None:
    if server.process.poll() is None:
        if kill:
            server.process.kill()
        else:
            server.process.terminate()
        server.process.wait(timeout=30)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("bv") / "data"
    srv = start_server(data_dir)
    yield srv
    stop_server(srv)
