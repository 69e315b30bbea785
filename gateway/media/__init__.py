"""Everything that touches aiortc and aioice: the relay, the Opus fast path, ICE addresses.

Nothing here patches a library on import. A process that runs WebRTC peers calls
``install()`` once at start; it is the one place the process's aiortc and aioice change.
"""

from __future__ import annotations

from collections.abc import Sequence


def install(ice_addresses: Sequence[str] | None = None) -> None:
    """Apply this package's changes to aiortc and aioice (idempotent): the numpy audio level,
    and the ICE host-address hook with ``ice_addresses`` as the process default."""
    from gateway.media import aiortc_internals, ice

    aiortc_internals.install()
    ice.install(ice_addresses)
