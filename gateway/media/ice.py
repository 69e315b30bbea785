"""Which local addresses aiortc's ICE agent gathers host candidates on.

aioice enumerates every interface and deliberately skips 127.0.0.1, with no way to choose.
Deployments need a choice (a container's one interface, Fly's ``fly-global-services``), and
tests and benchmarks must keep every WebRTC packet on loopback. This module is the only
place that reaches into aioice for that: it replaces ``aioice.ice.get_host_addresses`` with
a function that honours, in order, the addresses set for the current task (one leg of a
relay may gather on other addresses than the other) and a process-wide default.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import aioice.ice

_original_get_host_addresses = aioice.ice.get_host_addresses
_default: tuple[str, ...] | None = None
_current: ContextVar[tuple[str, ...] | None] = ContextVar("ice_host_addresses", default=None)


def _validated(addresses: Sequence[str]) -> tuple[str, ...]:
    for address in addresses:
        ipaddress.ip_address(address)  # ValueError names the bad address
    return tuple(addresses)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _current.get() or _default
    if chosen is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [
        a
        for a in chosen
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]


def set_default_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather on exactly these addresses from now on (``None``: every interface, aioice's way)."""
    global _default
    _default = _validated(addresses) if addresses else None


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather on these addresses for ICE gathering started inside the block, in this task.

    aiortc gathers inside ``setLocalDescription``, so wrap that call.
    """
    token = _current.set(_validated(addresses) if addresses else None)
    try:
        yield
    finally:
        _current.reset(token)


aioice.ice.get_host_addresses = _get_host_addresses


def selected_pair_summary(pc: object) -> str | None:
    """The nominated candidate pair of a connected aiortc peer, e.g. for the session record.

    aiortc exposes no getSelectedCandidatePair(); this reads aioice's nominated pair.
    """
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[attr-defined]
    except AttributeError:
        try:
            transceiver = pc.getTransceivers()[0]  # type: ignore[attr-defined]
            connection = transceiver.receiver.transport.transport._connection
        except (AttributeError, IndexError):
            return None
    pair = getattr(connection, "_nominated", {}).get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return (
        f"{local.type} {local.transport} {local.host}:{local.port} -> "
        f"{remote.type} {remote.transport} {remote.host}:{remote.port}"
    )
