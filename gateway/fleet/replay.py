"""Routing a candidate's signaling to its worker on Fly: the ``fly-replay`` response header.

Fly's proxy replays a request (WebSocket upgrades included) on the Machine a response's
``fly-replay: instance=<id>`` names, and marks the replayed request with ``fly-replay-src``
(``instance=<the replaying Machine>;region=...;t=...;state=...``). The front sets ``state`` to
the worker it sent the request to, so a request that comes back to a front carrying it (the
worker's Machine is gone, or a route looped) is not replayed to the same worker again.
Sans-I/O: header values in, header values out.
"""

from __future__ import annotations

#: Fly's request and response headers
REPLAY, REPLAY_SRC = "fly-replay", "fly-replay-src"


def parse_fields(value: str) -> dict[str, str]:
    """``a=1;b=2`` as a dict (Fly's header syntax); fields without ``=`` are ignored."""
    fields = {}
    for part in value.split(";"):
        key, sep, item = part.strip().partition("=")
        if sep and key:
            fields[key.strip().lower()] = item.strip()
    return fields


def replay_to(instance: str, *, app: str, replay_src: str | None) -> str | None:
    """The ``fly-replay`` value that routes a request to Machine ``instance`` of ``app``, or
    None when the request was already replayed there (its ``fly-replay-src`` says so)."""
    if replay_src is not None and parse_fields(replay_src).get("state") == instance:
        return None
    return f"instance={instance};app={app};state={instance}"
