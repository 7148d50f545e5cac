"""Sequential throughput of VolumeStore: write (1 MiB writes, one flush at the end) and read (1 MiB reads).

    .venv/bin/python benchmarks/store_bench.py [--size-mib 1024] [--io-kib 1024] [--dir PATH] [--no-baseline]

Figures are MB/s (10^6 bytes per second) of plaintext. The write figure includes the final flush (fdatasync of the
data file + one SQLite commit), so it is bounded by the disk. The read runs on a freshly reopened store; the data is
usually still in the page cache, so it measures the store's CPU path (preadv + AES-GCM + assembly). The anchors
printed beside them are the same machine without the store: plain pwrite + fdatasync of the same bytes to the same
filesystem, plain pread of them, and AES-256-GCM on 64 KiB in one thread. Nothing asserts on these numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from blockvault.crypto import Aead
from blockvault.store import UNIT_SIZE, VolumeStore, destroy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="bytes written and read, in MiB (default 1024)")
    parser.add_argument("--io-kib", type=int, default=1024, help="size of each write/read call, in KiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=None, help="parent directory for the volume (default: a tempdir)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw-disk and raw-AES anchors")
    args = parser.parse_args()

    total = args.size_mib * 1024 * 1024
    io = args.io_kib * 1024
    if total % io:
        parser.error("--size-mib must be a multiple of --io-kib")
    block = os.urandom(io)
    dek = os.urandom(32)
    parent = Path(tempfile.mkdtemp(prefix="store_bench.", dir=args.dir))
    directory = parent / "vol"
    try:
        store = VolumeStore.create(directory, volume_id="bench", size_bytes=total, dek=dek)
        started = time.perf_counter()
        for offset in range(0, total, io):
            store.write(offset, block)
        wrote = time.perf_counter()
        store.flush()
        flushed = time.perf_counter()
        store.close()

        store = VolumeStore.open(directory, volume_id="bench", dek=dek)
        started_read = time.perf_counter()
        for offset in range(0, total, io):
            data = store.read(offset, io)
            if len(data) != io:
                raise SystemExit("short read")
        read_done = time.perf_counter()
        if store.read(total - io, io) != block:
            raise SystemExit("read back different data")
        store.close()

        def rate(seconds: float) -> str:
            return f"{total / seconds / 1e6:8.1f} MB/s"

        print(f"volume store, {args.size_mib} MiB in {args.io_kib} KiB calls, in {directory}")
        print(f"  write (page cache)  {rate(wrote - started)}   {wrote - started:6.2f} s")
        print(
            f"  write + flush       {rate(flushed - started)}   {flushed - started:6.2f} s"
            f"   (flush {flushed - wrote:.2f} s)"
        )
        print(f"  read                {rate(read_done - started_read)}   {read_done - started_read:6.2f} s")
        if not args.no_baseline:
            destroy(directory)
            _baselines(parent, total, block, rate)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _baselines(parent: Path, total: int, block: bytes, rate: Callable[[float], str]) -> None:
    raw = parent / "raw"
    fd = os.open(raw, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        started = time.perf_counter()
        for offset in range(0, total, len(block)):
            os.pwrite(fd, block, offset)
        os.fdatasync(fd)
        wrote = time.perf_counter()
        for offset in range(0, total, len(block)):
            os.pread(fd, len(block), offset)
        read = time.perf_counter()
    finally:
        os.close(fd)
        raw.unlink()
    aead = Aead(os.urandom(32))
    unit = block[:UNIT_SIZE].ljust(UNIT_SIZE, b"\0")
    nonce = os.urandom(12)
    count = max(1, min(total // UNIT_SIZE, 4096))
    started_aes = time.perf_counter()
    for _ in range(count):
        aead.seal(nonce, unit, b"aad")
    aes = time.perf_counter() - started_aes
    print("anchors (same machine, no store)")
    print(f"  pwrite + fdatasync  {rate(wrote - started)}")
    print(f"  pread               {rate(read - wrote)}")
    print(f"  AES-GCM 64 KiB      {count * UNIT_SIZE / aes / 1e6:8.1f} MB/s (one thread)")


if __name__ == "__main__":
    main()
