"""Settings, parsed once at the edge (serve / CLI) into frozen values and passed down."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from blockvault.errors import InvalidArgument

DEFAULT_PORT = 8080
DEFAULT_NBD_PORT = 10809  # IANA "nbd"
AD_PREFIX = "bvlt"


@dataclass(frozen=True)
class RegionSettings:
    name: str
    key: str
    ad_count: int = 3

    @property
    def availability_domains(self) -> tuple[str, ...]:
        stem = self.name.rsplit("-", 1)[0].upper()  # us-ashburn-1 -> US-ASHBURN (R8.6)
        return tuple(f"{AD_PREFIX}:{stem}-AD-{n}" for n in range(1, self.ad_count + 1))


DEFAULT_REGIONS = (RegionSettings("us-ashburn-1", "iad"), RegionSettings("us-phoenix-1", "phx"))


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "blockvault"


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise InvalidArgument(field=name, reason=f"{value!r} is not a boolean")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_host: str | None = None  # the host name put in endpoint URLs; defaults to host
    regions: tuple[RegionSettings, ...] = DEFAULT_REGIONS
    allow_clock_control: bool = False
    root_key_b64: str | None = field(default=None, repr=False)
    log_level: str = "info"
    nbd_host: str = "127.0.0.1"  # NBD listen address; plaintext exports are served only to loopback peers
    nbd_port: int = DEFAULT_NBD_PORT  # 0: no NBD server
    replication_interval: float = 60.0  # seconds between replica syncs (docs/design/replication.md, RPO)
    # Regions as separate processes (docs/design/regions.md): the regions THIS process serves (empty: all of
    # `regions`) and, for the others, the base URL of the process serving each (region name, http://host:port).
    served_regions: tuple[str, ...] = ()
    peers: tuple[tuple[str, str], ...] = ()

    @property
    def base_url(self) -> str:
        return f"http://{self.public_host or self.host}:{self.port}"

    def region_url(self, name: str) -> str:
        for peer, url in self.peers:
            if peer == name:
                return f"{url.rstrip('/')}/{name}"
        return f"{self.base_url}/{name}"

    @property
    def served(self) -> tuple[RegionSettings, ...]:
        """The regions this process runs (metadata, store, Vault, jobs); the others are peers or absent."""
        if not self.served_regions:
            return self.regions
        return tuple(rs for rs in self.regions if rs.name in self.served_regions)

    @property
    def reachable(self) -> tuple[RegionSettings, ...]:
        """Served regions and peer regions, in topology order: what discovery lists."""
        peers = {name for name, _ in self.peers}
        served = {rs.name for rs in self.served}
        return tuple(rs for rs in self.regions if rs.name in served or rs.name in peers)

    @property
    def keystore_dir(self) -> Path:
        return self.data_dir / "keystore"  # apart from metadata and volume data

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
        data_dir = Path(str(overrides.pop("data_dir", None) or env.get("BLOCKVAULT_DATA_DIR") or default_data_dir(env)))
        port_text = overrides.pop("port", None) or env.get("BLOCKVAULT_PORT") or DEFAULT_PORT
        try:
            port = int(str(port_text))
        except ValueError as exc:
            raise InvalidArgument(field="port", reason=f"{port_text!r} is not a port number") from exc
        clock = overrides.pop("allow_clock_control", None)
        if clock is None:
            clock = parse_bool("BLOCKVAULT_ALLOW_CLOCK_CONTROL", env.get("BLOCKVAULT_ALLOW_CLOCK_CONTROL", ""))
        host = str(overrides.pop("host", None) or env.get("BLOCKVAULT_HOST") or "127.0.0.1")
        nbd_port_text = overrides.pop("nbd_port", None)
        if nbd_port_text is None:
            nbd_port_text = env.get("BLOCKVAULT_NBD_PORT") or DEFAULT_NBD_PORT
        try:
            nbd_port = int(str(nbd_port_text))
        except ValueError as exc:
            raise InvalidArgument(field="nbd_port", reason=f"{nbd_port_text!r} is not a port number") from exc
        if not 0 <= nbd_port <= 65535:
            raise InvalidArgument(field="nbd_port", reason=f"{nbd_port} is not a port number")
        nbd_host = str(overrides.pop("nbd_host", None) or env.get("BLOCKVAULT_NBD_HOST") or "127.0.0.1")
        interval_text = overrides.pop("replication_interval", None) or env.get("BLOCKVAULT_REPLICATION_INTERVAL") or 60
        try:
            replication_interval = float(str(interval_text))
        except ValueError as exc:
            raise InvalidArgument(field="replication_interval", reason=f"{interval_text!r} is not a number") from exc
        if not 0 < replication_interval <= 86400:
            raise InvalidArgument(field="replication_interval", reason="must be more than 0 and at most 86400 s")
        served_regions, peers = parse_topology(
            _names(overrides.pop("served_regions", None) or env.get("BLOCKVAULT_REGIONS") or ()),
            _names(overrides.pop("peers", None) or env.get("BLOCKVAULT_PEERS") or ()),
            DEFAULT_REGIONS,
        )
        return cls(
            data_dir=data_dir.expanduser().resolve(),
            host=host,
            port=port,
            allow_clock_control=bool(clock),
            root_key_b64=env.get("BLOCKVAULT_ROOT_KEY") or None,
            public_host=env.get("BLOCKVAULT_PUBLIC_HOST") or None,
            nbd_host=nbd_host,
            nbd_port=nbd_port,
            replication_interval=replication_interval,
            served_regions=served_regions,
            peers=peers,
        )


def _names(value: object) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise InvalidArgument(field="regions", reason=f"{value!r} is not a list of names")


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, with an optional IPv6 zone, or "localhost") is this machine: the only place
    plaintext may travel (NBD plain exports, plain-http peers)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def parse_topology(
    served: str | Iterable[str], peers: str | Iterable[str], regions: tuple[RegionSettings, ...]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """`--regions a,b` and `--peer name=http://host:port` (repeated, or comma-separated in BLOCKVAULT_PEERS) into
    settings; every name must be a configured region, a region is served here or by a peer, never both."""
    known = {rs.name for rs in regions}
    items = served.split(",") if isinstance(served, str) else list(served)
    names = tuple(dict.fromkeys(str(n).strip() for n in items if str(n).strip()))
    for name in names:
        if name not in known:
            raise InvalidArgument(field="regions", reason=f"{name!r} is not one of {', '.join(sorted(known))}")
    entries = peers.split(",") if isinstance(peers, str) else list(peers)
    out: list[tuple[str, str]] = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        name, sep, url = text.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not sep or not url.startswith(("http://", "https://")):
            raise InvalidArgument(field="peer", reason=f"{text!r} is not <region>=http://host:port")
        if url.startswith("http://") and not is_loopback(urllib.parse.urlsplit(url).hostname or ""):
            # Peer calls carry volume data in plaintext: plain HTTP only inside one host (regions.md "Security").
            raise InvalidArgument(
                field="peer",
                reason=f"{text!r}: a peer on another host needs an https:// URL (plain http is loopback only)",
            )
        if name not in known:
            raise InvalidArgument(field="peer", reason=f"{name!r} is not one of {', '.join(sorted(known))}")
        if name in names or any(name == n for n, _ in out):
            raise InvalidArgument(field="peer", reason=f"{name} is served here or named twice")
        out.append((name, url))
    if out and not names:
        names = tuple(rs.name for rs in regions if rs.name not in {n for n, _ in out})
    if not names and out:
        raise InvalidArgument(field="regions", reason="this process would serve no region")
    return names, tuple(out)
