"""Cross-region backup copy throughput, one process and two processes, beside a plain file copy. Not a test.

    .venv/bin/python benchmarks/copy_bench.py [--mib 256] [--dir DIR]

1. A plain file copy of the same size on the same disk: shutil.copyfile + fsync (the floor a copy cannot beat).
2. `blockvault serve` with both regions in ONE process: a FULL backup of a volume holding --mib MiB of random data in
   us-ashburn-1, copied to us-phoenix-1 (the copy job reads plaintext chunks through the in-process RegionClient,
   re-encrypts under a new DEK, stores, commits).
3. The same with each region in its OWN process on loopback: the chunk batches travel over the signed HTTP peer
   transport (peer/), 16 chunks (4 MiB) per request.
4. The peer codec alone on one such batch: binary framing (what the transport uses) beside base64-in-JSON.

Copy time is the destination work request's timeStarted -> timeFinished (server-side, no polling error).
Everything runs against real `blockvault serve` processes driven with the oci SDK's signer, in a temporary dir.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import oci
import requests

MIB = 1 << 20
IAD, PHX = "us-ashburn-1", "us-phoenix-1"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(data_dir: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKVAULT_")}
    log = open(data_dir.parent / f"serve-{port}.log", "ab")  # noqa: SIM115 - lives as long as the process
    cmd = [sys.executable, "-m", "blockvault", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    cmd += ["--nbd-port", "0", *extra]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"serve did not listen on {port}")


class Deployment:
    def __init__(self, root: Path, two: bool) -> None:
        self.data = root / ("two" if two else "one") / "data"
        self.data.mkdir(parents=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        if two:
            p1, p2 = _port(), _port()
            self.procs.append(_spawn(self.data, p1, ["--regions", IAD, "--peer", f"{PHX}=http://127.0.0.1:{p2}"]))
            self.procs.append(_spawn(self.data, p2, ["--regions", PHX, "--peer", f"{IAD}=http://127.0.0.1:{p1}"]))
            _wait(p1)
            _wait(p2)
        else:
            p1 = _port()
            self.procs.append(_spawn(self.data, p1, []))
            _wait(p1)
        self.discovery = json.loads((self.data / "blockvault.json").read_text())
        self.config = oci.config.from_file(self.discovery["ociConfigFile"])
        self.signer = oci.signer.Signer(
            tenancy=self.config["tenancy"],
            user=self.config["user"],
            fingerprint=self.config["fingerprint"],
            private_key_file_location=self.config["key_file"],
        )
        self.session = requests.Session()

    def url(self, region: str, path: str) -> str:
        return str(self.discovery["regions"][region]["endpoint"]) + path

    def call(self, method: str, region: str, path: str, **kw: Any) -> Any:
        headers = {"content-type": "application/json", **kw.pop("headers", {})}
        resp = self.session.request(
            method, self.url(region, path), auth=self.signer, headers=headers, timeout=600, **kw
        )
        if resp.status_code >= 300:
            raise SystemExit(f"{method} {path}: {resp.status_code} {resp.text}")
        return (
            resp.json()
            if resp.content and resp.headers.get("content-type", "").startswith("application/json")
            else None
        )

    def wait(self, region: str, path: str, field: str, want: str) -> dict[str, Any]:
        while True:
            body = self.call("GET", region, path)
            if body[field] == want:
                return dict(body)
            if body[field] in ("FAULTY", "FAILED"):
                raise SystemExit(f"{path}: {body}")
            time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)


def _seconds(job: dict[str, Any]) -> float:
    def t(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (t(job["timeFinished"]) - t(job["timeStarted"])).total_seconds()


def copy_run(root: Path, two: bool, mib: int) -> float:
    dep = Deployment(root, two)
    try:
        tenancy = dep.discovery["tenancyId"]
        ad = dep.discovery["regions"][IAD]["availabilityDomains"][0]
        size_gb = max(1, -(-mib * MIB // (1 << 30)))
        vol = dep.call(
            "POST",
            IAD,
            "/20160918/volumes",
            data=json.dumps({"compartmentId": tenancy, "availabilityDomain": ad, "sizeInGBs": max(size_gb, 50)}),
        )
        dep.wait(IAD, f"/20160918/volumes/{vol['id']}", "lifecycleState", "AVAILABLE")
        block = os.urandom(8 * MIB)
        for offset in range(0, mib * MIB, len(block)):
            dep.call(
                "PUT",
                IAD,
                f"/20160918/volumes/{vol['id']}/data",
                params={"offset": offset},
                data=block[: min(len(block), mib * MIB - offset)],
                headers={"content-type": "application/octet-stream"},
            )
        backup = dep.call(
            "POST", IAD, "/20160918/volumeBackups", data=json.dumps({"volumeId": vol["id"], "type": "FULL"})
        )
        dep.wait(IAD, f"/20160918/volumeBackups/{backup['id']}", "lifecycleState", "AVAILABLE")
        resp = dep.session.post(
            dep.url(IAD, f"/20160918/volumeBackups/{backup['id']}/actions/copy"),
            data=json.dumps({"destinationRegion": PHX}),
            headers={"content-type": "application/json"},
            auth=dep.signer,
            timeout=600,
        )
        if resp.status_code != 200:
            raise SystemExit(f"copy: {resp.status_code} {resp.text}")
        job_id = resp.headers["opc-work-request-id"]
        job = dep.wait(PHX, f"/20160918/workRequests/{job_id}", "status", "SUCCEEDED")
        return _seconds(job)
    finally:
        dep.stop()


def file_copy(root: Path, mib: int) -> float:
    src, dst = root / "plain.src", root / "plain.dst"
    with open(src, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MIB))
        fh.flush()
        os.fsync(fh.fileno())
    started = time.perf_counter()
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    src.unlink()
    dst.unlink()
    return elapsed


def codec_batch() -> tuple[float, float, int, int]:
    from blockvault.peer.codec import TypeRegistry, decode, encode

    batch = [os.urandom(256 * 1024) for _ in range(16)]
    types = TypeRegistry()
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        frame = encode({"r": batch}, types)
        decode(frame, types)
    binary = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        text = json.dumps({"r": [base64.b64encode(b).decode() for b in batch]}).encode()
        [base64.b64decode(s) for s in json.loads(text)["r"]]
    b64 = (time.perf_counter() - started) / rounds
    return binary, b64, len(frame), len(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bv-copy-bench.", dir=args.dir))
    mib = args.mib
    try:
        print(f"cross-region backup copy of {mib} MiB of random data ({os.cpu_count()} cores), data in {root}")
        plain = file_copy(root, mib)
        print(f"  plain file copy (shutil.copyfile + fsync):  {plain:7.2f} s  {mib * MIB / plain / 1e6:7.0f} MB/s")
        one = copy_run(root, False, mib)
        print(f"  backup copy, one process (in-process):      {one:7.2f} s  {mib * MIB / one / 1e6:7.0f} MB/s")
        two = copy_run(root, True, mib)
        print(f"  backup copy, two processes (HTTP, signed):  {two:7.2f} s  {mib * MIB / two / 1e6:7.0f} MB/s")
        binary, b64, nbin, ntext = codec_batch()
        print(
            f"  codec, one 4 MiB batch encode+decode: binary frame {binary * 1e3:6.1f} ms ({nbin} B), "
            f"base64 JSON {b64 * 1e3:6.1f} ms ({ntext} B)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
