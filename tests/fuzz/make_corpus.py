"""Regenerate the NBD seed corpus (tests/fuzz/corpus/{handshake,transmission}/): valid streams and mutated ones.

    .venv/bin/python tests/fuzz/make_corpus.py

Deterministic (fixed seed), so a re-run rewrites the same files. tests/unit/test_nbd_fuzz_corpus.py replays every
file through the sans-I/O codec; fuzz/run_atheris.py (optional) can start from the same files. Every file stays
under MAX_SEED bytes so one replay is bounded. Files found by a fuzzer that crashed the codec belong here too
(name them crash-<what>.bin) once fixed.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from blockvault.nbd import protocol as p

ROOT = Path(__file__).parent / "corpus"
MAX_SEED = 64 * 1024
FLAGS = struct.pack(">I", p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)
NAME = "disk"  # the replay test's lookup knows this export


def handshake_seeds() -> dict[str, bytes]:
    go = p.encode_option(p.OPT_GO, p.encode_info_request(NAME, [p.INFO_NAME, p.INFO_BLOCK_SIZE]))
    meta = p.encode_option(p.OPT_SET_META_CONTEXT, p.encode_meta_request(NAME, ["base:allocation"]))
    return {
        "go.bin": FLAGS + go,
        "structured-meta-go.bin": FLAGS + p.encode_option(p.OPT_STRUCTURED_REPLY) + meta + go,
        "list-info-go.bin": FLAGS
        + p.encode_option(p.OPT_LIST)
        + p.encode_option(p.OPT_INFO, p.encode_info_request(NAME))
        + p.encode_option(p.OPT_LIST_META_CONTEXT, p.encode_meta_request(NAME, []))
        + go,
        "export-name.bin": FLAGS + p.encode_option(p.OPT_EXPORT_NAME, NAME.encode()),
        "export-name-zeroes.bin": struct.pack(">I", p.FLAG_FIXED_NEWSTYLE)
        + p.encode_option(p.OPT_EXPORT_NAME, NAME.encode()),
        "starttls-then-go.bin": FLAGS + p.encode_option(p.OPT_STARTTLS) + go,
        "unknown-export-then-go.bin": FLAGS + p.encode_option(p.OPT_GO, p.encode_info_request("guess")) + go,
        "abort.bin": FLAGS + p.encode_option(p.OPT_ABORT),
        "unknown-option.bin": FLAGS + p.encode_option(0x7777, b"\x00" * 16) + go,
        "go-with-requests.bin": FLAGS + go + p.encode_request(p.CMD_READ, 1, 0, 512),
        # Malformed on purpose.
        "bad-client-flags.bin": struct.pack(">I", 0xFFFFFFFF) + go,
        "bad-option-magic.bin": FLAGS + b"IHAVEOPX" + go[8:],
        "oversized-option.bin": FLAGS + struct.pack(">QII", p.IHAVEOPT, p.OPT_GO, p.MAX_OPTION_LENGTH + 1),
        "truncated-go.bin": FLAGS + go[:-3],
        "go-count-mismatch.bin": FLAGS + p.encode_option(p.OPT_GO, p.encode_info_request(NAME) + b"\x00"),
        "huge-string-length.bin": FLAGS + p.encode_option(p.OPT_GO, struct.pack(">I", 0xFFFFFFF0) + b"disk\x00\x00"),
        "meta-bad-utf8.bin": FLAGS
        + p.encode_option(p.OPT_STRUCTURED_REPLY)
        + p.encode_option(p.OPT_SET_META_CONTEXT, struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">I", 0)),
        "starttls-with-data.bin": FLAGS + p.encode_option(p.OPT_STARTTLS, b"x") + go,
        "export-name-bad-utf8.bin": FLAGS + p.encode_option(p.OPT_EXPORT_NAME, b"\xc3\x28"),
    }


def transmission_seeds() -> dict[str, bytes]:
    req = p.encode_request
    return {
        "read-write-flush.bin": req(p.CMD_WRITE, 1, 4096, 5, data=b"hello", flags=p.CMD_FLAG_FUA)
        + req(p.CMD_READ, 2, 4094, 9)
        + req(p.CMD_FLUSH, 3, 0, 0),
        "every-command.bin": b"".join(
            req(cmd, i, 65536 * i, 4096, data=b"\x00" * 4096 if cmd == p.CMD_WRITE else b"")
            for i, cmd in enumerate(p.COMMAND_NAMES)
        ),
        "flags.bin": req(p.CMD_WRITE_ZEROES, 1, 0, 65536, flags=p.CMD_FLAG_FAST_ZERO | p.CMD_FLAG_NO_HOLE)
        + req(p.CMD_BLOCK_STATUS, 2, 0, 1 << 20, flags=p.CMD_FLAG_REQ_ONE)
        + req(p.CMD_READ, 3, 0, 4096, flags=p.CMD_FLAG_DF),
        "out-of-range.bin": req(p.CMD_READ, 1, 2**64 - 512, 1024) + req(p.CMD_WRITE, 2, 1 << 40, 1, data=b"x"),
        "zero-length.bin": req(p.CMD_READ, 1, 0, 0) + req(p.CMD_TRIM, 2, 0, 0),
        "huge-read.bin": req(p.CMD_READ, 1, 0, 0xFFFFFFFF),
        "unknown-command.bin": req(42, 1, 0, 512) + req(p.CMD_FLUSH, 2, 1, 1),
        "bad-flags.bin": req(p.CMD_READ, 1, 0, 512, flags=0xFFFF),
        "disc.bin": req(p.CMD_DISC, 1, 0, 0),
        # Malformed on purpose.
        "bad-magic.bin": b"\x25\x60\x95\x14" + req(p.CMD_READ, 1, 0, 512)[4:],
        "oversized-write.bin": struct.pack(">IHHQQI", p.REQUEST_MAGIC, 0, p.CMD_WRITE, 1, 0, p.MAX_PAYLOAD + 1),
        "truncated-write.bin": req(p.CMD_WRITE, 1, 0, 4096, data=b"\x01" * 100),
        "trailing-garbage.bin": req(p.CMD_FLUSH, 1, 0, 0) + b"\x00\x01\x02",
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        what = rng.randrange(4)
        pos = rng.randrange(len(out) + 1)
        if what == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif what == 1:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif what == 2 and out:
            del out[pos : pos + rng.randint(1, 8)]
        else:
            interesting = rng.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00"])
            out[pos : pos + len(interesting)] = interesting
    return bytes(out)


def write(kind: str, seeds: dict[str, bytes], rng: random.Random, per_seed: int = 2) -> None:
    directory = ROOT / kind
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(seeds.items()):
        assert len(data) <= MAX_SEED, name
        (directory / name).write_bytes(data)
        for i in range(per_seed):
            (directory / f"mut-{name[:-4]}-{i}.bin").write_bytes(mutate(data, rng)[:MAX_SEED])


def main() -> None:
    rng = random.Random(0x4E4244)  # "NBD"
    write("handshake", handshake_seeds(), rng)
    write("transmission", transmission_seeds(), rng)


if __name__ == "__main__":
    main()
