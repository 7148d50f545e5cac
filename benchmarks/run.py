"""All of blockvault's benchmarks in one run, printed beside their anchors. Nothing here is a test.

    .venv/bin/python benchmarks/run.py [--big-gib 10] [--backup-mib 1024] [--store-mib 1024]

1. Key change (UpdateVolumeKmsKey) on a volume holding 10 MiB and one holding 10 GiB: the re-wrap touches only
   the wrapped DEK, so the two should cost the same (goal: ratio <= 1.2).
2. Volume write and read throughput through the encrypted store, beside `openssl speed -evp aes-256-gcm`.
3. Full backup of 1 GiB, then an incremental backup after 1 % of it changed (goal: time ratio <= 0.05).
4. Replication lag under a steady write load (benchmarks/replication_bench.py; anchor: RPO <= interval + tick +
   sync duration).
5. Cross-region backup copy in MB/s, regions in one process and in two processes over HTTP, beside a plain file
   copy (benchmarks/copy_bench.py).
Everything runs in-process against a real Server (SQLite, files, software keystore) in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from blockvault.blockstorage.model import AVAILABLE, GIB
from blockvault.config import Settings
from blockvault.server import Server

MIB = 1 << 20


def _server(root: Path) -> Server:
    server = Server(Settings(data_dir=root / "data", port=1))
    server.start_background()
    return server


def _volume(server: Server, key_id: str | None, size_gb: int = 50) -> str:
    region = server.regions["us-ashburn-1"]
    volume, _ = region.blockstorage.create_volume(
        "volume",
        {
            "compartmentId": server.bootstrap.tenancy_id,
            "availabilityDomain": region.region.availability_domains[0],
            "sizeInGBs": size_gb,
            **({"kmsKeyId": key_id} if key_id else {}),
        },
    )
    region.runner.wait_idle()
    return volume.id


def _fill(server: Server, volume_id: str, nbytes: int, chunk: int = 16 * MIB) -> float:
    svc = server.regions["us-ashburn-1"].blockstorage
    block = os.urandom(chunk)
    started = time.perf_counter()
    for offset in range(0, nbytes, chunk):
        svc.write("volume", volume_id, offset, block[: min(chunk, nbytes - offset)])
    return time.perf_counter() - started


def _keys(server: Server) -> tuple[str, str]:
    vault_svc = server.regions["us-ashburn-1"].vault
    tenancy = server.bootstrap.tenancy_id
    vault = vault_svc.create_vault(
        compartment_id=tenancy, display_name="bench", vault_type="DEFAULT", freeform_tags={}, defined_tags={}
    )
    keys = [
        vault_svc.create_key(
            vault.id,
            compartment_id=tenancy,
            display_name=f"k{i}",
            algorithm="AES",
            length=32,
            curve_id=None,
            protection_mode="SOFTWARE",
            freeform_tags={},
            defined_tags={},
        )
        for i in range(2)
    ]
    return keys[0].id, keys[1].id


def key_change(server: Server, big_gib: int, rounds: int = 31) -> None:
    """Interleaved rounds (small, big, small, ...) so that drift in fsync latency hits both sides alike."""
    svc = server.regions["us-ashburn-1"].blockstorage
    k1, k2 = _keys(server)
    volumes = {}
    for label, nbytes in (("10 MiB", 10 * MIB), (f"{big_gib} GiB", big_gib * GIB)):
        volume_id = _volume(server, k1, size_gb=max(50, big_gib + 1))
        fill_s = _fill(server, volume_id, nbytes)
        volumes[label] = volume_id
        print(f"  filled a volume with {label:>7} at {nbytes / fill_s / 1e6:6.0f} MB/s")
    times: dict[str, list[float]] = {label: [] for label in volumes}
    for i in range(rounds):
        for label, volume_id in volumes.items():
            started = time.perf_counter()
            svc.update_volume_key("volume", volume_id, k2 if i % 2 == 0 else k1)
            times[label].append(time.perf_counter() - started)
    medians = {label: statistics.median(values) for label, values in times.items()}
    for label, value in medians.items():
        print(f"  key change, volume holding {label:>7}: median {value * 1000:7.2f} ms over {rounds}")
    small, big = medians["10 MiB"], medians[f"{big_gib} GiB"]
    print(f"  ratio {big_gib} GiB / 10 MiB: {big / small:.2f}  (goal <= 1.2)")


def openssl_gcm() -> str:
    try:
        out = subprocess.run(
            ["openssl", "speed", "-evp", "aes-256-gcm", "-seconds", "2", "-bytes", "65536"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"openssl speed unavailable: {exc}"
    line = [x for x in out.splitlines() if x.lower().startswith("aes-256-gcm")]
    if not line:
        return "openssl speed printed no aes-256-gcm line"
    value = line[-1].split()[-1]
    kbps = float(value.rstrip("k"))
    return f"{kbps * 1000 / 1e6:.0f} MB/s (openssl speed -evp aes-256-gcm, 64 KiB blocks, one core)"


def store_throughput(store_mib: int) -> None:
    here = Path(__file__).parent
    proc = subprocess.run(
        [sys.executable, str(here / "store_bench.py"), "--size-mib", str(store_mib)],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        print("  " + line)
    if proc.returncode:
        print("  store_bench failed:", proc.stderr[-2000:])
    print("  anchor: " + openssl_gcm())


def replication_lag() -> None:
    """benchmarks/replication_bench.py in its own process (its own server with a 5 s sync interval)."""
    here = Path(__file__).parent
    proc = subprocess.run(
        [sys.executable, str(here / "replication_bench.py"), "--seconds", "60", "--interval", "5"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        print("  " + line)
    if proc.returncode:
        print("  replication_bench failed:", proc.stderr[-2000:])


def copy_throughput() -> None:
    """benchmarks/copy_bench.py in its own process (it runs its own `blockvault serve` processes)."""
    here = Path(__file__).parent
    proc = subprocess.run(
        [sys.executable, str(here / "copy_bench.py"), "--mib", "256"], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        print("  " + line)
    if proc.returncode:
        print("  copy_bench failed:", proc.stderr[-2000:])


def backups(server: Server, mib: int) -> None:
    region = server.regions["us-ashburn-1"]
    svc = region.blockstorage
    volume_id = _volume(server, None)
    _fill(server, volume_id, mib * MIB)

    def backup(kind: str) -> tuple[float, int]:
        started = time.perf_counter()
        b, _ = svc.create_backup("volume", {"volumeId": volume_id, "type": kind})
        region.runner.wait_idle(timeout=3600)
        elapsed = time.perf_counter() - started
        done = svc.get_backup("volume", b.id)
        assert done.state == AVAILABLE, done
        return elapsed, done.unique_size_bytes

    full_s, full_bytes = backup("FULL")
    units = (mib * MIB) // 65536
    changed = max(1, units // 100)
    # 1 % changed in one region (how file systems and databases mostly write) ...
    start = units // 3
    svc.write("volume", volume_id, start * 65536, os.urandom(changed * 65536))
    clustered_s, clustered_bytes = backup("INCREMENTAL")
    # ... and 1 % changed as scattered 64 KiB units (the worst case for chunked incrementals).
    rng = random.Random(7)
    for index in rng.sample(range(units), changed):
        svc.write("volume", volume_id, index * 65536, os.urandom(65536))
    scattered_s, scattered_bytes = backup("INCREMENTAL")
    print(
        f"  full backup of {mib} MiB: {full_s:6.2f} s, {mib * MIB / full_s / 1e6:6.0f} MB/s, "
        f"stored {full_bytes / MIB:.0f} MiB"
    )
    print(
        f"  incremental after 1 % changed in one region: {clustered_s:6.3f} s, "
        f"stored {clustered_bytes / MIB:.1f} MiB, ratio {clustered_s / full_s:.3f}  (goal <= 0.05)"
    )
    print(
        f"  incremental after 1 % changed as {changed} scattered 64 KiB units: {scattered_s:6.3f} s, "
        f"stored {scattered_bytes / MIB:.1f} MiB, ratio {scattered_s / full_s:.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-gib", type=int, default=10)
    parser.add_argument("--backup-mib", type=int, default=1024)
    parser.add_argument("--store-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bv-bench.", dir=args.dir))
    server = _server(root)
    try:
        print(f"blockvault benchmarks ({os.cpu_count()} cores), data in {root}")
        print("\n1. Key change is O(1) in volume size")
        key_change(server, args.big_gib)
        print("\n2. Store throughput (1 MiB requests, AES-256-GCM per 64 KiB unit)")
        store_throughput(args.store_mib)
        print("\n3. Backups (chunked, zstd when it pays, AES-256-GCM)")
        backups(server, args.backup_mib)
        print("\n4. Replication lag (RPO reached) under a steady write load")
        replication_lag()
        print("\n5. Cross-region backup copy throughput")
        copy_throughput()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
