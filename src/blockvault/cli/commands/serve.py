"""`blockvault serve`: run the REST API and the job runners for every region on one port."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import Any

from blockvault.config import Settings


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run blockvault (REST API, Vault, job runners) on embedded defaults")
    # SUPPRESS: a value given before the word `serve` (blockvault --data-dir X serve) must survive.
    serve.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="where everything lives (env BLOCKVAULT_DATA_DIR; default ~/.local/share/blockvault)",
    )
    serve.add_argument(
        "--port", type=int, default=argparse.SUPPRESS, help="HTTP port (env BLOCKVAULT_PORT; default 8080)"
    )
    serve.add_argument(
        "--host", default=argparse.SUPPRESS, help="listen address (env BLOCKVAULT_HOST; default 127.0.0.1)"
    )
    serve.add_argument(
        "--nbd-port",
        type=int,
        default=argparse.SUPPRESS,
        help="NBD port (env BLOCKVAULT_NBD_PORT; default 10809; 0 turns NBD off)",
    )
    serve.add_argument(
        "--nbd-host",
        default=argparse.SUPPRESS,
        help="NBD listen address (env BLOCKVAULT_NBD_HOST; default 127.0.0.1; plaintext is served to loopback only)",
    )
    serve.add_argument(
        "--allow-clock-control",
        action="store_true",
        default=argparse.SUPPRESS,
        help="let the admin advance the Vault clock (rehearsals, tests; env BLOCKVAULT_ALLOW_CLOCK_CONTROL)",
    )
    serve.add_argument(
        "--regions",
        dest="served_regions",
        metavar="REGION[,REGION]",
        default=argparse.SUPPRESS,
        help="comma-separated regions this process serves (env BLOCKVAULT_REGIONS; default: every region not "
        "named by --peer); several processes may share one --data-dir, each serving its own regions",
    )
    serve.add_argument(
        "--peer",
        dest="peers",
        action="append",
        default=argparse.SUPPRESS,
        metavar="REGION=URL",
        help="a region served by another process of this data dir, and that process's base URL, e.g. "
        "us-phoenix-1=http://127.0.0.1:8081 (repeatable; env BLOCKVAULT_PEERS, comma-separated)",
    )
    serve.set_defaults(handler=cmd_serve)


def banner(server: Any) -> str:
    settings = server.settings
    lines = ["blockvault is running.", "", "Endpoints (one per region):"]
    peers = {name for name, _ in settings.peers}
    for rs in settings.reachable:
        where = "  (served by a peer process)" if rs.name in peers else ""
        lines.append(f"  {rs.name:<14} {settings.region_url(rs.name)}{where}")
    cfg = server.bootstrap.config_file
    first = settings.served[0].name
    url = settings.region_url(first)
    lines += [
        "",
        f"oci config file: {cfg}",
        f"  (profile DEFAULT, the bootstrap admin; API key {server.bootstrap.key_file})",
        f"tenancy (root compartment): {server.bootstrap.tenancy_id}",
        f"availability domains in {first}: {', '.join(settings.served[0].availability_domains)}",
        "",
        "Try:",
        f"  oci --config-file {cfg} --endpoint {url} kms management vault create"
        f" --compartment-id {server.bootstrap.tenancy_id} --display-name v1 --vault-type DEFAULT"
        " --wait-for-state ACTIVE",
        f"  oci --config-file {cfg} --endpoint {url} bv volume create"
        f" --compartment-id {server.bootstrap.tenancy_id}"
        f" --availability-domain {settings.served[0].availability_domains[0]} --size-in-gbs 50"
        " --wait-for-state AVAILABLE",
        "  blockvault bv volume list        # our CLI finds this server and its credentials by itself",
        "  blockvault volume write <volume-id> --from-file disk.img",
    ]
    if settings.nbd_port:
        lines += [
            f"  blockvault volume attach <volume-id>   # NBD on {settings.nbd_host}:{settings.nbd_port}",
            "  qemu-img info nbd://127.0.0.1:<port>/<exportName>",
        ]
    lines.append("")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace, ctx: Any = None) -> int:
    import uvicorn

    from blockvault.server import Server

    overrides: dict[str, object] = {}
    for name in ("data_dir", "port", "host", "allow_clock_control", "nbd_port", "nbd_host", "served_regions", "peers"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    settings = Settings.from_env(os.environ, **overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(settings)
    server.write_discovery()
    server.start_background()
    sys.stdout.write(banner(server))
    sys.stdout.flush()
    # Everything built so far lives as long as the server: move it out of the cyclic collector's sight. Otherwise
    # the first full collection after start walks it all with the GIL held (measured: 70-80 ms inside a client's
    # first 1 GiB write, every NBD thread stalled), and every later one walks it again.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(server.app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    finally:
        server.stop()
    return 0
