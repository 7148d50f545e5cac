"""Backup throughput: FULL, then INCREMENTAL after 1% of units change, to a LocalObjectStore; plus single stages.

    .venv/bin/python benchmarks/backup_bench.py                  # 1 GiB volume
    .venv/bin/python benchmarks/backup_bench.py --size-mib 256   # quicker

The synthetic volume is fully allocated; even chunks hold text-like data (zstd level 1 shrinks it to ~40%), odd chunks
random data (stored raw after the 64 KiB sample). Unit contents come from a 32 MiB pool so the source costs nothing to
read; no chunk repeats a unit, so zstd sees no artificial redundancy. The 1% change is measured twice: clustered (one
contiguous run, typical of a database file or log) and scattered (uniformly random units, the worst case for 1 MiB
chunks: ~15% of chunks touched). Goal: incremental/full time <= 0.05. No numbers here are asserted by the tests.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

from blockvault.backup.engine import BackupResult, restore_backup, write_backup
from blockvault.backup.format import CHUNK_SIZE, UNIT_SIZE, BackupKind, Manifest
from blockvault.backup.objectstore.base import ObjectStore
from blockvault.backup.objectstore.local import LocalObjectStore
from blockvault.backup.objectstore.memory import MemoryObjectStore
from blockvault.crypto import Aead

VOLUME = "ocid1.volume.oc1.iad.benchvolume"
POOL_UNITS = 512  # 32 MiB of distinct unit contents: half text, half random
_STRIDE = 7919  # prime, coprime with the pool size: the 16 units of a chunk map to 16 distinct pool entries


def _text_corpus(rng: random.Random, size: int) -> bytes:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + f" {rng.randint(0, 99999)}\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


@dataclass
class SyntheticVolume:
    """A UnitSource over a pool of unit contents; `seqs` is mutable so a later snapshot can bump some units."""

    volume_id: str
    size: int
    seq: int
    seqs: list[int]
    text_pool: list[bytes]
    random_pool: list[bytes]

    def units(self) -> list[tuple[int, int]]:
        return list(enumerate(self.seqs))

    def read_unit(self, index: int) -> bytes:
        pool = self.text_pool if (index // (CHUNK_SIZE // UNIT_SIZE)) % 2 == 0 else self.random_pool
        return pool[(index * _STRIDE) % len(pool)]


def make_volume(size_mib: int, seed: int = 1) -> SyntheticVolume:
    rng = random.Random(seed)
    corpus = _text_corpus(rng, 4 << 20)
    text_pool = []
    for _ in range(POOL_UNITS // 2):
        start = rng.randrange(len(corpus) - UNIT_SIZE)
        text_pool.append(corpus[start : start + UNIT_SIZE])
    random_pool = [rng.randbytes(UNIT_SIZE) for _ in range(POOL_UNITS // 2)]
    unit_count = size_mib * (1 << 20) // UNIT_SIZE
    return SyntheticVolume(VOLUME, unit_count * UNIT_SIZE, 1, [1] * unit_count, text_pool, random_pool)


def changed_snapshot(base: SyntheticVolume, percent: float, pattern: str, seed: int = 2) -> SyntheticVolume:
    count = max(1, round(len(base.seqs) * percent / 100))
    changed: Sequence[int]
    if pattern == "clustered":
        start = random.Random(seed).randrange(len(base.seqs) - count + 1)
        changed = range(start, start + count)
    else:
        changed = random.Random(seed).sample(range(len(base.seqs)), count)
    seq = base.seq + 1
    seqs = list(base.seqs)
    for unit in changed:
        seqs[unit] = seq
    return SyntheticVolume(base.volume_id, base.size, seq, seqs, base.text_pool, base.random_pool)


@dataclass
class Timing:
    wall: float
    cpu: float  # all threads of this process: cpu / wall near the core count means CPU-bound


def _timed(fn: Callable[[], BackupResult]) -> tuple[BackupResult, Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def stage_throughput(volume: SyntheticVolume, rounds: int = 64) -> dict[str, float]:
    """Single-thread MB/s of each stage on 1 MiB chunks (what the engine's 2 workers run in parallel)."""
    units_per_chunk = CHUNK_SIZE // UNIT_SIZE
    text = b"".join(volume.read_unit(u) for u in range(units_per_chunk))
    noise = b"".join(volume.read_unit(u) for u in range(units_per_chunk, 2 * units_per_chunk))
    cctx = zstandard.ZstdCompressor(level=1)
    dctx = zstandard.ZstdDecompressor()
    packed = cctx.compress(text)
    aead = Aead(os.urandom(32))
    nonce = os.urandom(12)
    stages: list[tuple[str, int, Callable[[], object]]] = [
        ("zstd-1 compress, text", CHUNK_SIZE, lambda: cctx.compress(text)),
        ("zstd-1 compress, random", CHUNK_SIZE, lambda: cctx.compress(noise)),
        ("zstd-1 64 KiB sample, random", UNIT_SIZE, lambda: cctx.compress(noise[:UNIT_SIZE])),
        ("AES-256-GCM seal", CHUNK_SIZE, lambda: aead.seal(nonce, noise, b"aad")),
        ("zstd-1 decompress, text", CHUNK_SIZE, lambda: dctx.decompress(packed)),
    ]
    out: dict[str, float] = {}
    for label, nbytes, fn in stages:
        fn()
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        out[label] = _mbps(rounds * nbytes, time.perf_counter() - start)
    ratio = len(packed) / len(text)
    out["(text compresses to, %)"] = 100 * ratio
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--changed-percent", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary object store (default: TMPDIR)")
    args = parser.parse_args(argv)

    volume = make_volume(args.size_mib)
    size = volume.size
    print(f"volume: {size >> 20} MiB, {len(volume.seqs)} units, chunk {CHUNK_SIZE >> 20} MiB, workers {args.workers}")
    print(f"cpu count: {os.cpu_count()}, python {sys.version.split()[0]}, zstandard {zstandard.__version__}")

    def backup(
        store: ObjectStore, source: SyntheticVolume, backup_id: str, dek: bytes, parent: Manifest | None
    ) -> Callable[[], BackupResult]:
        kind: BackupKind = "FULL" if parent is None else "INCREMENTAL"
        return lambda: write_backup(
            store,
            source,
            backup_id=backup_id,
            volume_id=VOLUME,
            dek=dek,
            kind=kind,
            parent=parent,
            workers=args.workers,
        )

    def line(label: str, timing: Timing, rest: str) -> None:
        rate, cores = _mbps(size, timing.wall), timing.cpu / timing.wall
        print(f"{label:30s} {timing.wall:6.2f} s {rate:8.1f} MB/s  cpu {cores:3.1f}x  {rest}".rstrip())

    _, mem_t = _timed(backup(MemoryObjectStore(), volume, "full", os.urandom(32), None))
    line("FULL, memory store (no disk)", mem_t, "")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="blockvault-bench-") as tmp:
        store = LocalObjectStore(Path(tmp))
        full_dek = os.urandom(32)
        full, full_t = _timed(backup(store, volume, "full", full_dek, None))
        line(
            "FULL, local store",
            full_t,
            f"stored {full.bytes_stored / size:.1%} of the volume, {full.chunks_written} chunks",
        )
        for pattern in ("clustered", "scattered"):
            snap = changed_snapshot(volume, args.changed_percent, pattern)
            inc, inc_t = _timed(backup(store, snap, f"inc-{pattern}", os.urandom(32), full.manifest))
            ratio = inc_t.wall / full_t.wall
            line(
                f"INCREMENTAL, {args.changed_percent:g}% {pattern}",
                inc_t,
                f"{inc.chunks_written} chunks written, {inc.chunks_inherited} inherited; "
                f"inc/full = {ratio:.3f} ({'meets' if ratio <= 0.05 else 'misses'} goal <= 0.05)",
            )

        sink = bytearray(size)

        def write_chunk(offset: int, data: bytes) -> None:
            sink[offset : offset + len(data)] = data

        wall, cpu = time.perf_counter(), time.process_time()
        restore_backup(store, full.manifest, {"full": full_dek}, write_chunk, workers=args.workers)
        line("RESTORE FULL, local store", Timing(time.perf_counter() - wall, time.process_time() - cpu), "")
        _check(full.manifest, volume, sink)

    print("single-thread stages on 1 MiB chunks:")
    for label, value in stage_throughput(volume).items():
        print(f"  {label:32s} {value:10.1f}{'' if label.startswith('(') else ' MB/s'}")
    return 0


def _check(manifest: Manifest, volume: SyntheticVolume, image: bytearray) -> None:
    """Spot-check the restored image (the full comparison is the unit tests' job)."""
    for unit in (0, 17, len(volume.seqs) - 1):
        start = unit * UNIT_SIZE
        if image[start : start + UNIT_SIZE] != volume.read_unit(unit):
            raise SystemExit(f"restore mismatch at unit {unit} of {manifest.backup_id}")


if __name__ == "__main__":
    raise SystemExit(main())
