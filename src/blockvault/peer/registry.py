"""Which cross-region Protocols travel between processes, and how each side finds its half.

An `Interface` is derived from a Protocol class: its public methods are the remote operations, its properties are
values the caller knows without a call (configuration for a top-level peer, a snapshot taken at open for a handle).
A method whose return annotation names another registered Protocol returns a HANDLE: the object stays on the
serving side, the caller gets a proxy whose calls go to it. A handle interface's `close` drops the handle.

Adding a method to a registered Protocol needs nothing here; adding a Protocol needs one `register` call
(peer/interfaces.py), naming how the serving process builds its in-process implementation for a region.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from blockvault.peer.codec import TypeRegistry

__all__ = ["Interface", "LocalFactory", "PeerRegistry"]

# (app services, region services, the internal request) -> the in-process implementation serving one call.
LocalFactory = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Interface:
    name: str
    protocol: type[Any]
    methods: frozenset[str]
    properties: tuple[str, ...]
    returns: dict[str, str] = field(default_factory=dict)  # method -> name of the Protocol it returns (handles)
    local: LocalFactory | None = None  # None: reachable only through a handle
    # Top-level methods that are safe to send again after ANY transport failure (reads of immutable data, or calls
    # whose repetition converges): retried like a handle's calls (client.py), not only when the connection was
    # refused.
    repeatable: frozenset[str] = frozenset()


def _members(protocol: type[Any]) -> tuple[frozenset[str], tuple[str, ...], dict[str, str]]:
    methods: set[str] = set()
    properties: list[str] = []
    returns: dict[str, str] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                if name not in properties:
                    properties.append(name)
            elif inspect.isfunction(value):
                methods.add(name)
                annotation = value.__annotations__.get("return")
                text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
                returns[name] = str(text).strip("'\"")
    return frozenset(methods), tuple(properties), returns


class PeerRegistry:
    """The Protocols and plain-data types of the peer transport. One per process (peer/interfaces.py builds it)."""

    def __init__(self) -> None:
        self.types = TypeRegistry()
        self._interfaces: dict[str, Interface] = {}

    def register(
        self,
        name: str,
        protocol: type[Any],
        *,
        local: LocalFactory | None = None,
        repeatable: Iterable[str] = (),
    ) -> Interface:
        methods, properties, returns = _members(protocol)
        unknown = set(repeatable) - methods
        if unknown:
            raise ValueError(f"{name}: {sorted(unknown)} are not methods of {protocol.__name__}")
        iface = Interface(name, protocol, methods, properties, returns, local, frozenset(repeatable))
        if name in self._interfaces:
            raise ValueError(f"the peer interface {name!r} is registered twice")
        self._interfaces[name] = iface
        return iface

    def register_types(self, *modules: ModuleType, classes: Iterable[type[Any]] = ()) -> None:
        for module in modules:
            self.types.register_module(module)
        for cls in classes:
            self.types.register(cls)

    def get(self, name: str) -> Interface | None:
        return self._interfaces.get(name)

    def names(self) -> list[str]:
        return sorted(self._interfaces)

    def top_level(self) -> list[Interface]:
        """The interfaces a region serves directly (not only through handles)."""
        return [i for i in self._interfaces.values() if i.local is not None]

    def handle_interface(self, iface: Interface, method: str) -> Interface | None:
        """The registered interface `method` returns, if it returns a handle."""
        wanted = iface.returns.get(method, "")
        for other in self._interfaces.values():
            if other.protocol.__name__ == wanted:
                return other
        return None
