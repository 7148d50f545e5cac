"""Settings, parsed once at the edge (serve / CLI) into frozen values and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
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

    @property
    def base_url(self) -> str:
        return f"http://{self.public_host or self.host}:{self.port}"

    def region_url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

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
        return cls(
            data_dir=data_dir.expanduser().resolve(),
            host=host,
            port=port,
            allow_clock_control=bool(clock),
            root_key_b64=env.get("BLOCKVAULT_ROOT_KEY") or None,
            public_host=env.get("BLOCKVAULT_PUBLIC_HOST") or None,
            nbd_host=nbd_host,
            nbd_port=nbd_port,
        )
