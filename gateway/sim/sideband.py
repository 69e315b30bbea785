"""A simulated call's sideband: its server events fanned out to WebSocket clients, theirs taken in.

A gateway in proxy mode learns what was said only from the sideband
(``GET /v1/realtime?call_id=``), so the simulator must deliver every event there as OpenAI does,
without letting one slow socket hold up the call: each socket gets a bounded queue of its own,
and a socket that falls that far behind is closed rather than waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1024  # events buffered per sideband socket before it counts as too slow

#: one socket's outgoing events; ``None`` tells its writer to close the socket
Queue = asyncio.Queue[str | None]


class Sidebands:
    """The sideband sockets of one call, each behind a bounded queue of serialized events."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._queues: set[Queue] = set()

    def join(self) -> Queue:
        """A queue of this call's server events from now on."""
        queue: Queue = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        return queue

    def leave(self, queue: Queue) -> None:
        self._queues.discard(queue)

    def publish(self, text: str) -> None:
        """Queue one event for every socket; close the ones that fell too far behind."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("call %s: a sideband socket fell behind; closing it", self.call_id)
                self._queues.discard(queue)
                _close(queue)

    def close(self) -> None:
        """Close every socket after what is queued for it (the call is over)."""
        for queue in self._queues:
            _close(queue)
        self._queues.clear()


async def serve(
    ws: web.WebSocketResponse, sidebands: Sidebands, on_message: Callable[[str], None]
) -> None:
    """Run one prepared sideband socket: the call's events out, client events to ``on_message``."""
    queue = sidebands.join()
    writer = asyncio.create_task(_write(ws, queue))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                on_message(message.data)
    finally:
        sidebands.leave(queue)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def _write(ws: web.WebSocketResponse, queue: Queue) -> None:
    while (text := await queue.get()) is not None:
        await ws.send_str(text)
    await ws.close()


def _close(queue: Queue) -> None:
    """Tell the socket's writer to close after what is queued (dropping the oldest if full)."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)
