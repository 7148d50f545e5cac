"""The calling side of the peer transport: one signed HTTP POST per Protocol method call, proxies generated from
the Protocol (peer/registry.py), handles for stateful results.

Failure rules (docs/design/regions.md, "Failure behaviour"):
- A call whose connection was refused (nothing was sent) is retried with backoff for `connect_window` seconds, then
  raises `PeerUnavailable` (a retryable `Unavailable`: 503 on the API, FAILED for a job).
- A handle's calls (reads of an open export, its close) are retried for `handle_window` seconds after ANY transport
  failure, and when the peer restarted and no longer knows the handle (`HandleGone`) the handle is opened again
  with the call that made it: those calls are reads of immutable data, so a retry returns what the first would have.
- Top-level calls are never re-sent once a request may have reached the peer (a create must not run twice),
  except the methods registered as `repeatable` (reads of immutable data, calls whose repetition converges), which
  are retried after any transport failure for `resend_window` seconds: shorter than a handle's window, because the
  callers are jobs that park and retry on `PeerUnavailable`, and a job worker blocked for minutes on a peer that is
  down would starve the region's other jobs (e.g. activating a replica while its source region is down).
- A domain error raised on the peer is raised here as the same class with the same message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3

from blockvault.clock import SystemClock
from blockvault.errors import BlockvaultError, NotFound, Unavailable
from blockvault.peer import identity as service_identity
from blockvault.peer.codec import CodecError, HandleRef, RemoteError, decode, encode, rebuild
from blockvault.peer.registry import Interface, PeerRegistry

__all__ = ["HandleGone", "PeerTransport", "PeerUnavailable", "make_proxy"]

log = logging.getLogger("blockvault.peer")

CONNECT_TIMEOUT = 5.0
# A call is a metadata lookup or one batch of at most 16 chunks (4 MiB) decrypted on the peer: minutes mean a hung
# peer, not a slow one.
READ_TIMEOUT = 300.0


class PeerUnavailable(Unavailable):
    message = "region {region} at {url} is unreachable: {reason}"


class HandleGone(NotFound):
    """The peer does not know this handle (it restarted, or the handle was idle too long and was closed)."""

    message = "peer handle {ident} is not open"


class PeerTransport:
    """Signed POSTs to one peer region's internal routes: `<base>/<region>/internal/peer/<interface>/<method>`.
    Thread-safe: each thread keeps its own keep-alive session."""

    def __init__(
        self,
        registry: PeerRegistry,
        base_url: str,
        region: str,
        identity: service_identity.ServiceIdentity,
        *,
        connect_window: float = 5.0,
        handle_window: float = 120.0,
        resend_window: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry, self.base_url, self.region, self.identity = registry, base_url.rstrip("/"), region, identity
        self.connect_window, self.handle_window = connect_window, handle_window
        self.resend_window = resend_window
        self._sleep, self._monotonic = sleep, monotonic
        self._local = threading.local()
        self._wall = SystemClock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy from the environment between our own processes
            self._local.session = session
        return session

    def url(self, interface: str, method: str) -> str:
        return f"{self.base_url}/{self.region}/internal/peer/{interface}/{method}"

    def post(
        self,
        interface: str,
        method: str,
        handle: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        resend: bool,
        window: float | None = None,
    ) -> Any:
        """One call; returns the decoded result (a `HandleRef` for handles) or raises the peer's domain error.

        Refused connections are retried within `connect_window`; with `resend`, any transport failure is retried
        within `window` (default `handle_window`; the caller vouches that the call is safe to repeat)."""
        body = encode({"h": handle, "a": list(args), "k": kwargs}, self.registry.types)
        url = self.url(interface, method)
        if not resend:
            window = self.connect_window
        elif window is None:
            window = self.handle_window
        deadline = self._monotonic() + window
        delay = 0.1
        while True:
            headers = service_identity.sign_headers(self.identity, url, body, self._wall.now())
            try:
                response = self._session().post(
                    url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), stream=True
                )
                # One read of the whole body: `response.content` reads 10 KiB at a time, which costs more than
                # the decryption of a 4 MiB batch (measured: 55 ms per batch instead of a few).
                content = response.raw.read(decode_content=True)
                response.raw.release_conn()
            except requests.ConnectionError as exc:
                refused = isinstance(exc, requests.ConnectTimeout) or _refused(exc)
                self._local.session = None
                if (refused or resend) and self._monotonic() + delay < deadline:
                    log.info(
                        "peer %s at %s: %s; retrying %s.%s",
                        self.region,
                        self.base_url,
                        type(exc).__name__,
                        interface,
                        method,
                    )
                    self._sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise PeerUnavailable(region=self.region, url=self.base_url, reason=type(exc).__name__) from None
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                # A timeout, or the connection dropped mid-reply (urllib3 refuses a short body: IncompleteRead).
                self._local.session = None
                if resend and self._monotonic() + delay < deadline:
                    self._sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise PeerUnavailable(region=self.region, url=self.base_url, reason=type(exc).__name__) from None
            return self._result(response.status_code, response.headers.get("content-type", ""), content)

    def _result(self, status: int, content_type: str, content: bytes) -> Any:
        if not content_type.startswith(service_identity.CONTENT_TYPE):
            # Not our framing: a 401 from the signature check, a 404/421 from a peer that does not serve the region.
            reason = f"HTTP {status}: {content[:300].decode('utf-8', 'replace')}"
            raise PeerUnavailable(region=self.region, url=self.base_url, reason=reason)
        try:
            reply = decode(content, self.registry.types)
        except CodecError as exc:
            raise PeerUnavailable(region=self.region, url=self.base_url, reason=f"bad reply: {exc}") from None
        if isinstance(reply, RemoteError):
            raise rebuild(reply)
        if not isinstance(reply, dict) or "r" not in reply:
            raise PeerUnavailable(region=self.region, url=self.base_url, reason="bad reply: no result")
        return reply["r"]


def _refused(exc: requests.ConnectionError) -> bool:
    # requests wraps urllib3's NewConnectionError (ECONNREFUSED) in ConnectionError; nothing was sent then.
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text


class _Proxy:
    """Base of generated proxies: calls go to `_peer_call`."""

    _iface: Interface

    def __init__(
        self,
        transport: PeerTransport,
        props: Mapping[str, Any],
        handle: str | None = None,
        reopen: Callable[[], HandleRef] | None = None,
    ) -> None:
        self._transport, self._props, self._handle, self._reopen = transport, dict(props), handle, reopen
        self._is_handle = handle is not None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<peer {self._iface.name} of {self._transport.region} at {self._transport.base_url}>"

    def _peer_call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        transport = self._transport
        if not self._is_handle:
            resend = method in self._iface.repeatable
            result = transport.post(
                self._iface.name, method, None, args, kwargs, resend=resend, window=transport.resend_window
            )
            return self._wrap(method, args, kwargs, result)
        closing = method == "close"
        for attempt in range(3):
            with self._lock:
                handle = self._handle
            if handle is None:
                if closing:
                    return None
                raise HandleGone(ident="(closed)")
            try:
                result = transport.post(self._iface.name, method, handle, args, kwargs, resend=True)
            except HandleGone:
                if closing:
                    return None  # the peer already dropped it
                if self._reopen is None or attempt == 2:
                    raise
                log.info("peer %s no longer has its %s handle: opening it again", transport.region, self._iface.name)
                ref = self._reopen()  # the peer restarted: open the same (immutable) object again
                with self._lock:
                    self._handle, self._props = ref.id, dict(ref.props)
                continue
            if closing:
                with self._lock:
                    self._handle = None
            return result
        raise AssertionError("unreachable")

    def _wrap(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> Any:
        if not isinstance(result, HandleRef):
            return result
        transport = self._transport
        name = self._iface.name

        def reopen() -> HandleRef:
            ref = transport.post(name, method, None, args, kwargs, resend=True)
            if not isinstance(ref, HandleRef):
                raise PeerUnavailable(region=transport.region, url=transport.base_url, reason="reopen gave no handle")
            return ref

        return make_proxy(transport, result.interface, result.props, handle=result.id, reopen=reopen)


_CLASSES: dict[tuple[str, int], type[_Proxy]] = {}
_CLASSES_LOCK = threading.Lock()


def _method(name: str) -> Callable[..., Any]:
    def call(self: _Proxy, *args: Any, **kwargs: Any) -> Any:
        return self._peer_call(name, args, kwargs)

    call.__name__ = name
    return call


def _prop(name: str) -> property:
    def get(self: _Proxy) -> Any:
        try:
            return self._props[name]
        except KeyError:
            raise AttributeError(name) from None

    return property(get)


def _proxy_class(iface: Interface) -> type[_Proxy]:
    with _CLASSES_LOCK:
        cls = _CLASSES.get((iface.name, id(iface)))
        if cls is None:
            namespace: dict[str, Any] = {"_iface": iface}
            namespace.update({m: _method(m) for m in iface.methods})
            namespace.update({p: _prop(p) for p in iface.properties})
            cls = type(f"Http{iface.protocol.__name__}", (_Proxy,), namespace)
            _CLASSES[(iface.name, id(iface))] = cls
        return cls


def make_proxy(
    transport: PeerTransport,
    interface: str,
    props: Mapping[str, Any],
    *,
    handle: str | None = None,
    reopen: Callable[[], HandleRef] | None = None,
) -> Any:
    """An object satisfying the registered Protocol `interface` whose methods run on the peer. `props` gives its
    properties (configuration for a top-level peer; the peer's snapshot for a handle)."""
    iface = transport.registry.get(interface)
    if iface is None:
        raise BlockvaultError(f"no peer interface {interface!r} is registered")
    missing = [p for p in iface.properties if p not in props]
    if missing:
        raise ValueError(f"a {interface} proxy needs its properties {missing}")
    return _proxy_class(iface)(transport, props, handle, reopen)
