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


# --------------------------------------------------------------------------------------------------------------
# Regions as separate processes (docs/design/regions.md): two `blockvault serve` processes on ONE data dir, each
# serving one region, each naming the other as its peer. Cross-region flows run over the signed HTTP peer
# transport. The extra processes are started at once on the empty data dir (the bootstrap lock is part of the test).

TWO_PROCESS_REGIONS = ("us-ashburn-1", "us-phoenix-1")


@dataclass
class TwoProcessServer(Server):
    """A `Server` (process/port: us-ashburn-1's process) plus the process of each region, by region name.
    Endpoints come from blockvault.json, which lists each region at its own process."""

    processes: dict[str, subprocess.Popen[bytes]] | None = None
    ports: dict[str, int] | None = None
    nbd_ports: dict[str, int] | None = None

    def spawn(self, region: str) -> subprocess.Popen[bytes]:
        """Start (or restart, after a kill) the process serving `region`; returns once it listens."""
        assert self.ports is not None
        assert self.nbd_ports is not None
        assert self.processes is not None
        peers = [f"{r}=http://127.0.0.1:{p}" for r, p in self.ports.items() if r != region]
        process = _spawn_serve(
            self.data_dir,
            self.ports[region],
            self.nbd_ports[region],
            ["--regions", region, *(arg for peer in peers for arg in ("--peer", peer))],
        )
        self.processes[region] = process
        if region == TWO_PROCESS_REGIONS[0]:
            self.process = process
        _wait_listening(process, self.ports[region], self.data_dir)
        return process

    def kill(self, region: str) -> None:
        """kill -9 the process serving `region`."""
        assert self.processes is not None
        process = self.processes[region]
        process.kill()
        process.wait(timeout=30)

    def stop_all(self) -> None:
        assert self.processes is not None
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(timeout=30)


def _spawn_serve(data_dir: Path, port: int, nbd_port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    log = open(data_dir.parent / f"serve-{port}.log", "ab")  # noqa: SIM115 - lives as long as the process
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKVAULT_")}
    command = [sys.executable, "-m", "blockvault", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    command += ["--allow-clock-control", "--nbd-port", str(nbd_port), *extra]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_listening(process: subprocess.Popen[bytes], port: int, data_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"blockvault serve exited with {process.returncode}; see {data_dir.parent}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"blockvault serve did not listen on {port} within 60 s")


def start_two_process(data_dir: Path) -> TwoProcessServer:
    """Both processes started at once on `data_dir` (empty or not); returns when both listen."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {r: _free_port() for r in TWO_PROCESS_REGIONS}
    nbd_ports = {r: _free_port() for r in TWO_PROCESS_REGIONS}
    first = TWO_PROCESS_REGIONS[0]
    server = TwoProcessServer(
        data_dir, ports[first], None, {}, nbd_ports[first], processes={}, ports=ports, nbd_ports=nbd_ports
    )  # type: ignore[arg-type]
    for region in TWO_PROCESS_REGIONS:  # all spawned before any is waited for: a concurrent bootstrap
        peers = [f"{r}=http://127.0.0.1:{p}" for r, p in ports.items() if r != region]
        args = ["--regions", region, *(a for peer in peers for a in ("--peer", peer))]
        assert server.processes is not None
        server.processes[region] = _spawn_serve(data_dir, ports[region], nbd_ports[region], args)
    assert server.processes is not None
    server.process = server.processes[first]
    for region in TWO_PROCESS_REGIONS:
        _wait_listening(server.processes[region], ports[region], data_dir)
    server.discovery = json.loads((data_dir / "blockvault.json").read_text())
    return server


@pytest.fixture(scope="session")
def two_process_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoProcessServer]:
    """us-ashburn-1 and us-phoenix-1 in two `blockvault serve` processes sharing one data dir (session-wide)."""
    data_dir = tmp_path_factory.mktemp("bv2") / "data"
    srv = start_two_process(data_dir)
    yield srv
    srv.stop_all()
