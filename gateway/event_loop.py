"""Which event loop a gateway process runs (``GATEWAY_EVENT_LOOP``): asyncio's own, or uvloop.

Relay mode is one event loop carrying every packet of every session (50 sessions are 10 000
datagrams a second in and out). uvloop's datagram transports and callback queue are libuv's,
in C: ``bench relay --event-loop uvloop`` measures what that saves on the machine at hand. The
gateway's reaches into aioice's sockets (``media.aiortc_internals``) and the UDP mux's
``add_reader`` use only what both loops provide, and the suite runs whole interviews under
both. asyncio stays the default: the one that needs no extension module.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOPS = ("asyncio", "uvloop")


def installed(event_loop: str) -> bool:
    """Whether ``event_loop`` can run in this process (uvloop: the package is installed)."""
    return event_loop != "uvloop" or importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """``asyncio.run(main)`` on a new loop of the named kind (one of ``EVENT_LOOPS``)."""
    if event_loop == "uvloop":
        import uvloop  # only where asked for: importing it sets nothing up

        return uvloop.run(main)
    if event_loop != "asyncio":
        raise ValueError(f"unknown event loop {event_loop!r}: one of {', '.join(EVENT_LOOPS)}")
    return asyncio.run(main)
