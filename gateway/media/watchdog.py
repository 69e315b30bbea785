"""Tells, within seconds, when a peer's media stops and when it comes back.

aiortc notices a dead peer only by ICE consent (~30 s). A relay sees every packet, so it can
tell much sooner: the watchdog reads when media last arrived and reports *transitions*, once
each: ``on_silent`` when nothing arrived for ``timeout`` seconds, ``on_back`` when media
arrives again after that. Reporting transitions rather than states is what keeps a session
from being failed behind a healthy peer: a reconnect or a returning stream cancels a loss, and
nothing re-arms it until the media stops again.

Silence is counted only while the watchdog runs, and it runs from the moment a leg is
connected (ICE and DTLS done): a slow set-up is not silence. A new leg (a reconnect) restarts
the count from its own connection.

One class watches both legs of a relay: the browser's (its audio: a silent candidate is lost,
and may come back) and the upstream's (its audio packets and data-channel events: an upstream
that sends neither is dead or frozen, and the session ends). Both count packets *arriving*, not
speech: a WebRTC peer sends Opus frames all along, silence included (OpenAI's leg does, and so
does the simulated upstream's ``SpeechTrack``), so a quiet interviewer is never taken for a
dead one.

It needs no task and costs nothing per packet: while media flows, one timer call when the
silence *would* begin if nothing more arrived (``timeout`` after the last packet), which then
moves on to the next such moment; so silence is reported within ``timeout`` plus the event
loop's latency, not a polling period later. While silent, it looks for returning media every
``timeout / 2`` seconds (at most 1 s), reading a timestamp that the forwarder keeps anyway.

A timestamp read in this process says when the process *handled* a packet, not when it
arrived: while the event loop is behind (a machine kept busy, a long callback), packets wait
in the socket and a timer firing late would take the process's own lag for the peer's
silence, and fail a healthy interview. So a check that fires late concludes nothing: it looks
again once the loop has had a turn to read its sockets (for at most one ``timeout`` of
lateness in all, so a loop lagging for good still reports a peer that is really gone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: A check that fires this much later than it was due found the loop behind: the lateness
#: is time the process was not reading its sockets, not the peer's silence.
LAG_TOLERANCE = 0.25


class SilenceWatchdog:
    def __init__(
        self,
        timeout: float,
        last_media_at: Callable[[], float | None],
        *,
        on_silent: Callable[[], None],
        on_back: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._last_media_at = last_media_at
        self._on_silent = on_silent
        self._on_back = on_back
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        #: when counting began (the current leg connected)
        self._since = 0.0
        #: when silence was reported, while it lasts
        self._silent_at: float | None = None
        #: when the pending check is due; what was last heard, and how late checks have
        #: fired since (not counted as silence, up to one ``timeout``)
        self._due = 0.0
        self._heard = 0.0
        self._lag = 0.0

    @property
    def silent(self) -> bool:
        return self._silent_at is not None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        """Count from now: a leg just connected, which is itself news that the peer is back
        (the session clears its loss); a silence on this leg is reported afresh."""
        self.stop()
        self._since = self._clock()
        self._silent_at = None
        self._schedule(self._timeout)

    def stop(self) -> None:
        """Stop counting (the leg is being replaced or closed); reports nothing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, delay: float) -> None:
        self._due = self._clock() + delay
        self._timer = asyncio.get_running_loop().call_later(delay, self._check)

    def _check(self) -> None:
        last = self._last_media_at()
        now = self._clock()
        if self._silent_at is None:
            heard = max(last or 0.0, self._since)
            if heard != self._heard:  # media came (or a new leg): earlier lag does not matter
                self._heard, self._lag = heard, 0.0
            late = now - self._due
            if late > LAG_TOLERANCE and self._lag < self._timeout:
                # the loop was behind: packets may wait unread; look again after it had a turn
                self._lag += late
                self._schedule(LAG_TOLERANCE)
                return
            silent_from = heard + self._timeout
            if now < silent_from:  # media came meanwhile: look again when it would be silent
                self._schedule(silent_from - now)
                return
            self._silent_at = now
            self._schedule(self._poll)
            self._on_silent()
        elif last is not None and last > self._silent_at and last >= self._since:
            self._silent_at = None
            self._schedule(max(last + self._timeout - now, 0.0))
            self._on_back()
        else:
            self._schedule(self._poll)

    @property
    def _poll(self) -> float:
        return min(1.0, self._timeout / 2)
