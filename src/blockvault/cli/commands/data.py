"""``blockvault volume|boot-volume write|read``: move bytes in and out of a volume (blockvault extension).

Wire (blockvault's data extension, not part of OCI):

    PUT <region>/20160918/volumes/{id}/data?offset=N        body: raw bytes (application/octet-stream)
        -> 200 {"bytesWritten": n}
    GET <region>/20160918/volumes/{id}/data?offset=N&length=M
        -> 200 raw bytes, exactly M of them
    (boot volumes: /20160918/bootVolumes/{id}/data)

Requests are signed like any other (a PUT signs content-length, content-type and x-content-sha256 over the body).
Transfers go in ``--chunk-mib`` pieces (4 MiB by default), one request at a time, in offset order. The volume
size comes from ``GET`` of the volume (``sizeInGBs`` * 2**30), so ranges past the end are refused before sending.
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from typing import IO, Any

from blockvault.cli.client import CliContext, ProtocolError, size_arg
from blockvault.cli.progress import Progress, should_show
from blockvault.errors import InvalidArgument

DEFAULT_CHUNK_MIB = 4
_GIB = 1 << 30
_MIB = 1 << 20

# noun -> (collection path, id field name in the summary)
_KINDS = {"volume": ("/volumes", "volumeId"), "boot-volume": ("/bootVolumes", "bootVolumeId")}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for noun in _KINDS:
        what = noun.replace("-", " ")
        group = sub.add_parser(noun, help=f"read and write the data of a {what}", allow_abbrev=False)
        verbs = group.add_subparsers(title=noun, dest=f"_{noun}", required=True, metavar="COMMAND")

        write = verbs.add_parser(
            "write", help=f"copy a file into a {what}", description=f"copy a file into a {what}", allow_abbrev=False
        )
        write.add_argument("volume_id", metavar="VOLUME_ID")
        write.add_argument("--from-file", required=True, help="the file to upload ('-' for stdin)")
        write.add_argument("--offset", type=size_arg, default=0, help="byte offset in the volume (e.g. 0, 4096, 1M)")
        _transfer_options(write)
        write.set_defaults(handler=cmd_write, data_kind=noun)

        read = verbs.add_parser(
            "read", help=f"copy a {what} into a file", description=f"copy a {what} into a file", allow_abbrev=False
        )
        read.add_argument("volume_id", metavar="VOLUME_ID")
        read.add_argument("--to-file", required=True, help="the file to write ('-' for stdout)")
        read.add_argument("--offset", type=size_arg, default=0, help="byte offset in the volume")
        read.add_argument("--length", type=size_arg, help="bytes to read (default: to the end of the volume)")
        _transfer_options(read)
        read.set_defaults(handler=cmd_read, data_kind=noun)


def _transfer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chunk-mib", type=int, default=DEFAULT_CHUNK_MIB, help="MiB per request (default 4)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")


def volume_size(resource: Any) -> int:
    """Bytes in a volume from its JSON: ``sizeInGBs`` GiB (OCI's "GB" are GiB), else ``sizeInMBs`` MiB."""
    if isinstance(resource, dict):
        if isinstance(resource.get("sizeInGBs"), int):
            return int(resource["sizeInGBs"]) * _GIB
        if isinstance(resource.get("sizeInMBs"), int):
            return int(resource["sizeInMBs"]) * _MIB
    raise ProtocolError(reason="the volume has no sizeInGBs")


def _chunk_bytes(args: argparse.Namespace) -> int:
    if args.chunk_mib < 1:
        raise InvalidArgument(field="--chunk-mib", reason="must be at least 1")
    return int(args.chunk_mib) * _MIB


def cmd_write(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    collection, id_field = _KINDS[args.data_kind]
    base = client.bv_url(f"{collection}/{args.volume_id}")
    size = volume_size(client.get(base).data)
    chunk = _chunk_bytes(args)
    offset = args.offset
    if offset > size:
        raise InvalidArgument(field="--offset", reason=f"{offset} is past the end of the volume ({size} bytes)")
    with ExitStack() as stack:
        src: IO[bytes]
        if args.from_file == "-":
            src = ctx.binary_stdin()
            total = size - offset
        else:
            try:
                src = stack.enter_context(open(args.from_file, "rb"))
            except OSError as exc:
                raise InvalidArgument(field="--from-file", reason=str(exc)) from exc
            total = _file_size(src)
            if offset + total > size:
                raise InvalidArgument(
                    field="--from-file",
                    reason=f"{args.from_file} has {total} bytes but the volume has only {size - offset} "
                    f"bytes from offset {offset}",
                )
        bar = stack.enter_context(
            Progress(total, ctx.out.stderr, enabled=should_show(ctx.out.stderr, args.progress), label="write")
        )
        written = 0
        while True:
            piece = src.read(chunk)
            if not piece:
                break
            pos = offset + written
            if pos + len(piece) > size:
                raise InvalidArgument(
                    field="--from-file", reason=f"the input runs past the end of the volume ({size} bytes)"
                )
            resp = client.request(
                "PUT",
                base + "/data",
                data=piece,
                params=[("offset", pos)],
                content_type="application/octet-stream",
            )
            done = resp.data.get("bytesWritten") if isinstance(resp.data, dict) else None
            if done != len(piece):
                raise ProtocolError(reason=f"server wrote {done!r} of {len(piece)} bytes at offset {pos}")
            written += len(piece)
            bar.advance(len(piece))
    ctx.out.emit({id_field: args.volume_id, "offset": offset, "bytesWritten": written})
    return 0


def cmd_read(args: argparse.Namespace, ctx: CliContext) -> int:
    client = ctx.client
    collection, id_field = _KINDS[args.data_kind]
    base = client.bv_url(f"{collection}/{args.volume_id}")
    size = volume_size(client.get(base).data)
    chunk = _chunk_bytes(args)
    offset = args.offset
    if offset > size:
        raise InvalidArgument(field="--offset", reason=f"{offset} is past the end of the volume ({size} bytes)")
    length = size - offset if args.length is None else args.length
    if offset + length > size:
        raise InvalidArgument(
            field="--length", reason=f"{offset}+{length} is past the end of the volume ({size} bytes)"
        )
    to_stdout = args.to_file == "-"
    with ExitStack() as stack:
        dst: IO[bytes]
        if to_stdout:
            dst = ctx.binary_stdout()
        else:
            try:
                dst = stack.enter_context(open(args.to_file, "wb"))
            except OSError as exc:
                raise InvalidArgument(field="--to-file", reason=str(exc)) from exc
        bar = stack.enter_context(
            Progress(length, ctx.out.stderr, enabled=should_show(ctx.out.stderr, args.progress), label="read")
        )
        done = 0
        while done < length:
            want = min(chunk, length - done)
            pos = offset + done
            resp = client.request(
                "GET",
                base + "/data",
                params=[("offset", pos), ("length", want)],
                accept="application/octet-stream",
                parse_json=False,
            )
            if len(resp.content) != want:
                raise ProtocolError(reason=f"short read at offset {pos}: asked {want} bytes, got {len(resp.content)}")
            dst.write(resp.content)
            done += want
            bar.advance(want)
        dst.flush()
    if not to_stdout:
        ctx.out.emit({id_field: args.volume_id, "offset": offset, "bytesRead": done, "toFile": args.to_file})
    return 0


def _file_size(f: IO[bytes]) -> int:
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError):
        st = None
    if st is not None and st.st_size > 0:
        return st.st_size
    # Block devices report st_size 0: measure by seeking.
    try:
        end = f.seek(0, os.SEEK_END)
        f.seek(0)
        return end
    except OSError:
        return 0
