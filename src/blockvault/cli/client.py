"""The CLI's transport: where the server is, who we are, and signed JSON calls to the OCI-style REST API.

Discovery (the contract with ``blockvault serve``)::

    <data_dir>/blockvault.json   written by serve
        defaultRegion, regions{name: {endpoint, key, availabilityDomains}}, ociConfigFile, profile, tenancyId

    data_dir      --data-dir > $BLOCKVAULT_DATA_DIR > ~/.local/share/blockvault
    region        --region > $BLOCKVAULT_REGION > defaultRegion
    endpoint      --endpoint (used verbatim; blockvault.json may then be absent) > regions[region].endpoint
    credentials   --config-file/--profile > ociConfigFile/profile from blockvault.json > $OCI_CLI_CONFIG_FILE/
                  $OCI_CLI_PROFILE > ~/.oci/config [DEFAULT]

Requests are signed by the official SDK's ``oci.signer.Signer`` (a ``requests`` auth), so the wire is byte for byte
what the ``oci`` CLI sends (oci-wire.md §2); bodies are plain JSON dicts, so we depend on no SDK model class and can
call blockvault's own extension endpoints (volume data, admin clock) the same way.

Errors leave this module as :class:`ApiError` (the server answered with an error), :class:`ConnectionFailed` (no
answer), :class:`UsageError` / :class:`ConfigError` (the command line or local files are wrong) or
:class:`WaitTimeout`. Only ``cli/app.py`` turns them into exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import requests

from blockvault.cli.output import Output
from blockvault.errors import BlockvaultError, Unavailable

BV_VERSION = "/20160918"
KMS_VERSION = "/20180608"
DISCOVERY_FILE = "blockvault.json"
DEFAULT_DATA_DIR = "~/.local/share/blockvault"
DEFAULT_OCI_CONFIG = "~/.oci/config"
USER_AGENT = "blockvault-cli/0.1.0"

# oci-wire.md §3.4: what the real CLI retries. 501 is deliberately absent (not implemented is permanent).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_409_CODES = frozenset({"IncorrectState", "LockConflict"})
DEFAULT_MAX_ATTEMPTS = 5
_RETRY_CAP_SECONDS = 30.0
_RETRY_TOTAL_SECONDS = 600.0

# Waiters (oci.wait_until): sleeps 1, 2, 4, ... capped by --wait-interval-seconds, up to --max-wait-seconds.
DEFAULT_MAX_WAIT_SECONDS = 1200
DEFAULT_WAIT_INTERVAL_SECONDS = 30

_RETRY_TOKEN_ALPHABET = string.ascii_letters + string.digits


# --------------------------------------------------------------------------------------------------- errors


class ApiError(BlockvaultError):
    """The server answered with an error: ``{"code": ..., "message": ...}`` and an HTTP status."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.method = method
        self.url = url

    @property
    def text(self) -> str:
        return str(self.args[0]) if self.args else ""

    def to_doc(self) -> dict[str, Any]:
        """The stderr block, shaped like the real CLI's ServiceError output."""
        doc: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "message": self.text,
            "opc-request-id": self.request_id,
        }
        if self.method and self.url:
            doc["request_endpoint"] = f"{self.method} {self.url}"
        return doc


class ConnectionFailed(Unavailable):
    """No HTTP answer at all (refused, reset, timed out, DNS)."""

    message = "cannot reach blockvault at {url}: is `blockvault serve` running?"


class ServerNotFound(Unavailable):
    """No blockvault.json where the server would have written it, and no --endpoint."""

    message = "no {file} in {data_dir}: is `blockvault serve` running? (or pass --data-dir, or --endpoint)"


class UsageError(BlockvaultError):
    """The command line is contradictory or incomplete in a way argparse cannot express."""

    message = "{reason}"


class ConfigError(BlockvaultError):
    """Local configuration (blockvault.json, OCI config file, private key) is missing or unusable."""

    message = "{reason}"


class WaitTimeout(BlockvaultError):
    """``--wait-for-state`` gave up; ``last`` is the last resource seen (printed, like the real CLI does)."""

    message = (
        "Failed to wait until the resource entered the specified state. "
        "Please retrieve the resource to find its current state"
    )

    def __init__(self, last: ApiResponse | None) -> None:
        super().__init__()
        self.last = last


# --------------------------------------------------------------------------------------------------- discovery


@dataclass(frozen=True, kw_only=True)
class RegionInfo:
    name: str
    endpoint: str
    key: str = ""
    availability_domains: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """The parsed ``blockvault.json``."""

    path: Path
    default_region: str
    regions: Mapping[str, RegionInfo]
    oci_config_file: str | None = None
    profile: str | None = None
    tenancy_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> Discovery | None:
        """Read ``<data_dir>/blockvault.json``; None when it does not exist."""
        path = data_dir / DISCOVERY_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(reason=f"cannot read {path}: {exc}") from exc
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(reason=f"{path} is not valid JSON: {exc}") from exc
        return cls.from_json(raw, path=path)

    @classmethod
    def from_json(cls, raw: Any, *, path: Path) -> Discovery:
        if not isinstance(raw, dict) or not isinstance(raw.get("regions"), dict) or not raw["regions"]:
            raise ConfigError(reason=f"{path} has no regions")
        regions: dict[str, RegionInfo] = {}
        for name, info in raw["regions"].items():
            if not isinstance(info, dict) or not isinstance(info.get("endpoint"), str):
                raise ConfigError(reason=f"{path}: region {name} has no endpoint")
            regions[name] = RegionInfo(
                name=name,
                endpoint=info["endpoint"],
                key=str(info.get("key") or ""),
                availability_domains=tuple(info.get("availabilityDomains") or ()),
            )
        default = raw.get("defaultRegion") or next(iter(regions))
        return cls(
            path=path,
            default_region=default,
            regions=regions,
            oci_config_file=raw.get("ociConfigFile"),
            profile=raw.get("profile"),
            tenancy_id=raw.get("tenancyId"),
            raw=raw,
        )


@dataclass(frozen=True, kw_only=True)
class GlobalOptions:
    """The global flags, resolved once at the edge (STYLE §2.4)."""

    data_dir: Path
    region: str | None = None
    endpoint: str | None = None
    config_file: str | None = None
    profile: str | None = None
    env_config_file: str | None = None
    env_profile: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    cert_bundle: str | None = None
    output: str = "json"

    @classmethod
    def resolve(
        cls,
        *,
        data_dir: str | None,
        region: str | None,
        endpoint: str | None,
        config_file: str | None,
        profile: str | None,
        env: Mapping[str, str],
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        cert_bundle: str | None = None,
        output: str = "json",
    ) -> GlobalOptions:
        raw_dir = data_dir or env.get("BLOCKVAULT_DATA_DIR") or DEFAULT_DATA_DIR
        return cls(
            data_dir=Path(raw_dir).expanduser(),
            region=region or env.get("BLOCKVAULT_REGION") or None,
            endpoint=endpoint or None,
            config_file=config_file,
            profile=profile,
            env_config_file=env.get("OCI_CLI_CONFIG_FILE") or None,
            env_profile=env.get("OCI_CLI_PROFILE") or None,
            max_attempts=max(1, max_attempts),
            cert_bundle=cert_bundle,
            output=output,
        )


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """(root, blockstorage base) for an endpoint; like the SDK, append ``/20160918`` only if it is not there yet."""
    base = endpoint.rstrip("/")
    if base.endswith(BV_VERSION):
        return base[: -len(BV_VERSION)], base
    return base, base + BV_VERSION


# --------------------------------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class ApiResponse:
    status: int
    data: Any
    headers: Mapping[str, str]
    content: bytes = b""

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def request_id(self) -> str | None:
        return self.headers.get("opc-request-id")

    @property
    def next_page(self) -> str | None:
        # oci-wire.md §0.4: only a present header means another page; an empty value is treated as absent so a
        # misbehaving server cannot make --all loop forever.
        value = self.headers.get("opc-next-page")
        return value or None

    @property
    def work_request_id(self) -> str | None:
        return self.headers.get("opc-work-request-id")


_UNSET: Any = object()
QueryParams = Sequence[tuple[str, Any]]


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_params(params: QueryParams | None) -> list[tuple[str, str]]:
    """Drop None values, render booleans as true/false, repeat list values (oci-wire.md §3.2)."""
    out: list[tuple[str, str]] = []
    for name, value in params or ():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend((name, _query_value(v)) for v in value)
        else:
            out.append((name, _query_value(value)))
    return out


def new_retry_token() -> str:
    return "".join(secrets.choice(_RETRY_TOKEN_ALPHABET) for _ in range(30))


class Client:
    """Signed calls against one region endpoint (and, for KMS, a vault's own endpoints).

    Not thread-safe: one ``requests.Session``, used sequentially.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        session: requests.Session,
        tenancy_id: str,
        region: RegionInfo | None = None,
        discovery: Discovery | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: tuple[float, float] = (10.0, 120.0),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.bv_base = split_endpoint(endpoint)
        self.session = session
        self.tenancy_id = tenancy_id
        self.region = region
        self.discovery = discovery
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic
        self._ads: tuple[str, ...] | None = region.availability_domains if region else None

    # ---- URLs

    def bv_url(self, path: str) -> str:
        """Block storage and identity (both /20160918)."""
        return self.bv_base + path

    def kms_url(self, path: str, endpoint: str | None = None) -> str:
        """KMS: the regional vault API, or a vault's management/crypto endpoint when given."""
        base = (endpoint or self.root).rstrip("/")
        return base + KMS_VERSION + path

    def admin_url(self, path: str) -> str:
        return self.root + "/blockvault/admin" + path

    # ---- calls

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = _UNSET,
        data: bytes | None = None,
        params: QueryParams | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        if_match: str | None = None,
        retry_token: bool = False,
        parse_json: bool = True,
    ) -> ApiResponse:
        """One logical call: sign, send, retry transient failures, raise :class:`ApiError` on an error answer.

        ``body`` is JSON-serialized (pass a dict; leave unset to send no body); ``data`` sends raw bytes.
        """
        payload: bytes | None
        if body is not _UNSET:
            payload = json.dumps(body).encode("utf-8")
        else:
            payload = data
        headers = {"accept": accept, "content-type": content_type, "user-agent": USER_AGENT}
        if if_match is not None:
            headers["if-match"] = if_match
        if retry_token and self.max_attempts > 1:
            headers["opc-retry-token"] = new_retry_token()
        query = encode_params(params)
        started = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            headers["opc-request-id"] = uuid.uuid4().hex.upper()
            try:
                resp = self.session.request(
                    method, url, params=query or None, data=payload, headers=dict(headers), timeout=self.timeout
                )
            except requests.exceptions.RequestException as exc:
                raise ConnectionFailed(url=self.root) from exc
            if resp.status_code < 400:
                return self._response(resp, parse_json)
            error = _api_error(resp, method, url)
            transient = error.status in RETRY_STATUSES or (error.status == 409 and error.code in RETRY_409_CODES)
            if not transient or attempt >= self.max_attempts:
                raise error
            delay = min(_RETRY_CAP_SECONDS, 2.0 ** (attempt - 1))
            if self._monotonic() - started + delay > _RETRY_TOTAL_SECONDS:
                raise error
            self._sleep(delay)

    @staticmethod
    def _response(resp: requests.Response, parse_json: bool) -> ApiResponse:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        content = resp.content or b""
        data: Any = None
        if parse_json and content:
            try:
                data = json.loads(content)
            except ValueError:
                data = None
        return ApiResponse(resp.status_code, data, headers, content)

    def get(self, url: str, params: QueryParams | None = None) -> ApiResponse:
        return self.request("GET", url, params=params)

    def list(
        self,
        url: str,
        params: QueryParams,
        *,
        fetch_all: bool = False,
        limit: int | None = None,
        page: str | None = None,
        page_size: int | None = None,
    ) -> tuple[list[Any], str | None]:
        """A list call with the real CLI's paging rules; returns (items, next page token or None).

        ``--all`` follows ``opc-next-page`` to the end (``--page-size`` sets ``limit`` per call); ``--limit`` alone
        collects up to that many items, possibly over several calls; neither: one call.
        """
        items: list[Any] = []
        token = page
        while True:
            want: int | None
            if fetch_all:
                want = page_size
            elif limit is not None:
                want = min(page_size or limit, limit - len(items))
            else:
                want = None
            resp = self.get(url, _with_paging(params, want, token))
            batch = resp.data if isinstance(resp.data, list) else []
            items.extend(batch)
            token = resp.next_page
            if token is None:
                return items, None
            if fetch_all:
                continue
            if limit is not None and len(items) < limit and batch:
                continue
            if limit is not None:
                del items[limit:]
            return items, token

    def wait_for_state(
        self,
        url: str,
        states: Sequence[str],
        *,
        max_wait_seconds: int | None = None,
        wait_interval_seconds: int | None = None,
        succeed_on_not_found: bool = False,
    ) -> ApiResponse | None:
        """Poll ``GET url`` until ``lifecycleState`` is one of ``states`` (None: gone, when that counts as done)."""
        wanted = {s.upper() for s in states}
        max_wait = DEFAULT_MAX_WAIT_SECONDS if max_wait_seconds is None else max_wait_seconds
        interval = DEFAULT_WAIT_INTERVAL_SECONDS if wait_interval_seconds is None else wait_interval_seconds
        started = self._monotonic()
        last: ApiResponse | None = None
        attempt = 0
        while True:
            try:
                last = self.get(url)
            except ApiError as exc:
                if exc.status == 404 and succeed_on_not_found:
                    return None
                raise
            state = last.data.get("lifecycleState") if isinstance(last.data, dict) else None
            if isinstance(state, str) and state.upper() in wanted:
                return last
            elapsed = self._monotonic() - started
            if elapsed >= max_wait:
                raise WaitTimeout(last)
            self._sleep(max(0.0, min(2.0**attempt, float(interval), max_wait - elapsed)))
            attempt += 1

    # ---- region facts

    def availability_domains(self) -> tuple[str, ...]:
        """The region's ADs: from blockvault.json, else asked of the Identity API once."""
        if not self._ads:
            resp = self.get(self.bv_url("/availabilityDomains"), [("compartmentId", self.tenancy_id)])
            names = [ad.get("name") for ad in resp.data or [] if isinstance(ad, dict)]
            self._ads = tuple(n for n in names if isinstance(n, str))
        return self._ads

    def first_availability_domain(self) -> str:
        ads = self.availability_domains()
        if not ads:
            raise ConfigError(reason="the region has no availability domains; pass --availability-domain")
        return ads[0]


def _with_paging(params: QueryParams, limit: int | None, page: str | None) -> list[tuple[str, Any]]:
    """Put limit/page where the SDK declares them (placeholders in ``params``), else at the end."""
    out: list[tuple[str, Any]] = []
    seen_limit = seen_page = False
    for name, value in params:
        if name == "limit":
            out.append(("limit", limit))
            seen_limit = True
        elif name == "page":
            out.append(("page", page))
            seen_page = True
        else:
            out.append((name, value))
    if not seen_limit:
        out.append(("limit", limit))
    if not seen_page:
        out.append(("page", page))
    return out


def _api_error(resp: requests.Response, method: str, url: str) -> ApiError:
    request_id = resp.headers.get("opc-request-id")
    code: str | None = None
    message = resp.text or resp.reason or f"HTTP {resp.status_code}"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        if isinstance(body.get("message"), str):
            message = body["message"]
    return ApiError(resp.status_code, code, message, request_id, method=method, url=url)


# --------------------------------------------------------------------------------------------------- credentials


def make_signer(config_file: str, profile: str) -> tuple[Any, str]:
    """(requests auth, tenancy OCID) from an OCI config file, via the official SDK signer.

    ``oci.signer.Signer.from_config`` would insist on ``region`` (the SDK's validate_config); we only need the
    four signing fields, so the Signer is built directly.
    """
    import oci  # the SDK is slow to import; only commands that talk to the server pay for it

    path = str(Path(config_file).expanduser())
    try:
        config = oci.config.from_file(file_location=path, profile_name=profile)
    except (oci.exceptions.ConfigFileNotFound, oci.exceptions.ProfileNotFound) as exc:
        raise ConfigError(reason=str(exc)) from exc
    except (ValueError, OSError) as exc:
        raise ConfigError(reason=f"{path} [{profile}]: {exc}") from exc
    missing = [k for k in ("user", "tenancy", "fingerprint") if not config.get(k)]
    if not config.get("key_file") and not config.get("key_content"):
        missing.append("key_file")
    if missing:
        raise ConfigError(reason=f"{path} [{profile}] lacks {', '.join(missing)}")
    try:
        signer = oci.signer.Signer(
            tenancy=config["tenancy"],
            user=config["user"],
            fingerprint=config["fingerprint"],
            private_key_file_location=config.get("key_file"),
            pass_phrase=config.get("pass_phrase"),
            private_key_content=config.get("key_content"),
        )
    except (oci.exceptions.InvalidPrivateKey, OSError, ValueError) as exc:
        raise ConfigError(reason=f"cannot load the private key of {path} [{profile}]: {exc}") from exc
    return signer, str(config["tenancy"])


def build_client(opts: GlobalOptions, *, discovery: Discovery | None = _UNSET) -> Client:
    """Everything the Discovery section of the module docstring says, in one place."""
    disc: Discovery | None = Discovery.load(opts.data_dir) if discovery is _UNSET else discovery
    region: RegionInfo | None = None
    if disc is not None:
        name = opts.region or disc.default_region
        region = disc.regions.get(name)
        if region is None and not opts.endpoint:
            known = ", ".join(sorted(disc.regions))
            raise ConfigError(reason=f"unknown region {name!r}; {disc.path} knows: {known}")
    elif not opts.endpoint:
        raise ServerNotFound(file=DISCOVERY_FILE, data_dir=opts.data_dir)
    if opts.endpoint:
        endpoint = opts.endpoint
    else:
        assert region is not None
        endpoint = region.endpoint
    config_file = (
        opts.config_file or (disc.oci_config_file if disc else None) or opts.env_config_file or DEFAULT_OCI_CONFIG
    )
    profile = opts.profile or (disc.profile if disc else None) or opts.env_profile or "DEFAULT"
    signer, tenancy = make_signer(config_file, profile)
    session = requests.Session()
    session.auth = signer
    # Proxies from the environment would capture calls to 127.0.0.1; TLS trust comes from --cert-bundle.
    session.trust_env = False
    if opts.cert_bundle:
        session.verify = opts.cert_bundle
    return Client(
        endpoint=endpoint,
        session=session,
        tenancy_id=tenancy or (disc.tenancy_id if disc else "") or "",
        region=region,
        discovery=disc,
        max_attempts=opts.max_attempts,
    )


# --------------------------------------------------------------------------------------------------- context


class CliContext:
    """What a handler gets: the resolved options, the output, and a lazily built client (STYLE §2.8)."""

    def __init__(
        self,
        opts: GlobalOptions,
        out: Output,
        *,
        client_factory: Callable[[GlobalOptions], Client] | None = None,
        stdin: IO[bytes] | None = None,
    ) -> None:
        self.opts = opts
        self._stdin = stdin
        self.out = out
        self._client_factory = client_factory or build_client
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._client_factory(self.opts)
        return self._client

    def discovery(self) -> Discovery | None:
        return Discovery.load(self.opts.data_dir)

    def binary_stdin(self) -> IO[bytes]:
        return self._stdin if self._stdin is not None else sys.stdin.buffer

    def binary_stdout(self) -> IO[bytes]:
        buffer = getattr(self.out.stdout, "buffer", None)
        if buffer is not None:
            self.out.stdout.flush()
            return cast(IO[bytes], buffer)
        return sys.stdout.buffer


def env_snapshot() -> dict[str, str]:
    """The environment, read once by ``main`` and passed down."""
    return dict(os.environ)


class ProtocolError(BlockvaultError):
    """The server answered 2xx but not what the protocol promises (short read, wrong byte count)."""

    message = "{reason}"


# --------------------------------------------------------------------------------------------------- argument types
# Shared by the command modules: value parsers in the real CLI's formats, and the option groups every OCI command
# repeats (waiters, paging). argparse reports a ValueError/ArgumentTypeError from these as a usage error (exit 2).


def json_arg(value: str) -> Any:
    """A COMPLEX TYPE option: inline JSON, or ``file://path`` like the real CLI."""
    text = value
    if value.startswith("file://"):
        try:
            text = Path(value[len("file://") :]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {value}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def bool_arg(value: str) -> bool:
    """Strict booleans (STYLE §2.4: "false" must not be truthy)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def ocid_or_empty_arg(value: str) -> str:
    """An OCID where the empty string is meaningful (``backup update --kms-key-id ''``).

    A shell turns ``--kms-key-id=''`` into an empty value; when the line was pasted somewhere that does not strip
    quotes, the literal ``''`` / ``""`` arrives instead. Neither can be an OCID, so both mean the empty string.
    """
    if value in ("''", '""'):
        return ""
    return value


def datetime_arg(value: str) -> str:
    """An RFC 3339 / ISO 8601 instant, sent as the SDK sends datetimes: UTC with ``Z``."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed.microsecond:
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


_SIZE_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def size_arg(value: str) -> int:
    """A byte count: ``4096``, ``4K``, ``16M``, ``1G``, ``1GiB`` (binary multiples); never negative."""
    text = value.strip().lower().removesuffix("ib").removesuffix("b")
    number, suffix = text, ""
    if text and text[-1] in _SIZE_SUFFIXES:
        number, suffix = text[:-1], text[-1]
    try:
        n = int(number, 0) * _SIZE_SUFFIXES[suffix]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a byte count: {value!r}") from exc
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return n


def add_wait_options(parser: argparse.ArgumentParser, states: Sequence[str]) -> None:
    """``--wait-for-state`` (repeatable, case-insensitive), ``--max-wait-seconds``, ``--wait-interval-seconds``."""
    parser.add_argument(
        "--wait-for-state",
        action="append",
        type=str.upper,
        choices=list(states),
        metavar="STATE",
        help=f"wait until the resource reaches this state (repeatable; one of {', '.join(states)})",
    )
    parser.add_argument("--max-wait-seconds", type=int, help=f"default {DEFAULT_MAX_WAIT_SECONDS}")
    parser.add_argument("--wait-interval-seconds", type=int, help=f"default {DEFAULT_WAIT_INTERVAL_SECONDS}")


def add_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="the maximum number of items to return")
    parser.add_argument("--page", help="the opc-next-page value of a previous call")
    parser.add_argument("--all", dest="all_pages", action="store_true", help="fetch all pages")
    parser.add_argument("--page-size", type=int, help="items per call with --all or --limit")


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="accepted for compatibility; blockvault never prompts")


def list_and_emit(ctx: CliContext, args: argparse.Namespace, url: str, params: QueryParams) -> int:
    """Run a list call with the paging flags and print ``{"data": [...]}`` (+ ``opc-next-page`` if more)."""
    items, token = ctx.client.list(
        url,
        params,
        fetch_all=args.all_pages,
        limit=args.limit,
        page=args.page,
        page_size=args.page_size,
    )
    if token is not None:
        ctx.out.note("WARNING: this list has more items; use --all to fetch them, or --page with opc-next-page.")
    ctx.out.emit(items, next_page=token)
    return 0


def finish(
    ctx: CliContext,
    args: argparse.Namespace,
    resp: ApiResponse | None,
    get_url: str | None,
    *,
    deleting: bool = False,
) -> int:
    """Honour ``--wait-for-state`` (polling ``get_url``), then print the result like the real CLI.

    Deletes print nothing (the real CLI has no body to show); everything else prints the last resource seen.
    """
    states = getattr(args, "wait_for_state", None)
    if states and get_url:
        ctx.out.note(f"Action completed. Waiting until the resource has entered state: {tuple(states)}")
        final = ctx.client.wait_for_state(
            get_url,
            states,
            max_wait_seconds=args.max_wait_seconds,
            wait_interval_seconds=args.wait_interval_seconds,
            succeed_on_not_found=deleting,
        )
        if final is not None and not deleting:
            resp = final
    if resp is not None and resp.data is not None and not deleting:
        ctx.out.emit(resp.data, etag=resp.etag, work_request_id=resp.work_request_id)
    return 0


def compact(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """A request body from (wireName, value) pairs, dropping None like the SDK (absent != null; '' and [] stay)."""
    return {k: v for k, v in pairs if v is not None}
