"""Media tracks that carry one leg's audio into the other leg of a relay.

A relay's two legs live longer than any one of their tracks: a candidate who reconnects brings
a new peer connection and a new remote track, while the upstream leg (the AI conversation) and
its sender stay. ``ForwardedTrack`` is the sender's stable source whose origin can be swapped,
which also keeps timestamps continuous across the swap, and notes when media last arrived so
that the session can tell a dead peer within seconds (aiortc's consent check takes ~30 s).
"""

from __future__ import annotations

import asyncio
import time

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet


class ForwardedTrack(MediaStreamTrack):
    """A track that yields the frames of another, replaceable track."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._replaced = asyncio.Event()
        self._next_pts: int | None = None
        #: monotonic time of the last frame forwarded (None before the first)
        self.last_frame_at: float | None = None
        self.frames = 0

    @property
    def source(self) -> MediaStreamTrack:
        return self._source

    def replace_source(self, source: MediaStreamTrack) -> None:
        """Forward from ``source`` from now on (a reconnected peer's new track)."""
        self._source = source
        self._replaced.set()

    async def recv(self) -> Frame | Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            try:
                frame = await source.recv()
            except MediaStreamError:
                # The origin ended (its peer connection closed). Wait for a replacement rather
                # than ending this track: the session decides when the relay is over.
                if self._source is source:
                    self._replaced.clear()
                    await self._replaced.wait()
                continue
            self._retime(frame)
            self.last_frame_at = time.monotonic()
            self.frames += 1
            return frame

    def _retime(self, frame: Frame | Packet) -> None:
        """Number frames continuously, whatever the origin's own clock did across a swap."""
        samples = getattr(frame, "samples", None)
        if samples is None:  # video keeps its own clock
            return
        if self._next_pts is None:
            self._next_pts = frame.pts or 0
        frame.pts = self._next_pts
        self._next_pts += samples
