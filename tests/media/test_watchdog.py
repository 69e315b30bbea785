"""The silence watchdog reports transitions once each, and counts only while a leg is up."""

from __future__ import annotations

import asyncio
import time

from gateway.media.watchdog import SilenceWatchdog

TIMEOUT = 0.3


class Peer:
    """A media source whose packets the test sends by hand, and what the watchdog said."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.said: list[str] = []
        self.changed = asyncio.Event()
        self.watchdog = SilenceWatchdog(
            TIMEOUT, lambda: self.last, on_silent=self._silent, on_back=self._back
        )

    def packet(self) -> None:
        self.last = time.monotonic()

    def _silent(self) -> None:
        self.said.append("silent")
        self.changed.set()

    def _back(self) -> None:
        self.said.append("back")
        self.changed.set()

    async def next_word(self, within: float = 5.0) -> str:
        self.changed.clear()
        await asyncio.wait_for(self.changed.wait(), within)
        return self.said[-1]


async def test_a_set_up_slower_than_the_timeout_is_not_silence() -> None:
    peer = Peer()
    await asyncio.sleep(TIMEOUT * 3)  # negotiating, ICE, DTLS: the watchdog is not running yet
    peer.watchdog.start()  # connected
    peer.packet()
    for _ in range(10):  # media flows for three timeouts
        await asyncio.sleep(TIMEOUT / 3)
        peer.packet()
    assert peer.said == []
    peer.watchdog.stop()


async def test_silence_is_reported_once_and_returning_media_once() -> None:
    peer = Peer()
    peer.watchdog.start()
    started = time.monotonic()
    assert await peer.next_word() == "silent"
    assert time.monotonic() - started >= TIMEOUT  # counted from the start, not before
    with_silence = len(peer.said)
    await asyncio.sleep(TIMEOUT * 3)  # still silent: nothing more is said
    assert len(peer.said) == with_silence
    peer.packet()
    assert await peer.next_word() == "back"
    assert peer.said == ["silent", "back"]
    peer.watchdog.stop()


async def test_a_new_leg_counts_afresh_and_a_stopped_watchdog_says_nothing() -> None:
    peer = Peer()
    peer.watchdog.start()
    assert await peer.next_word() == "silent"
    peer.watchdog.stop()  # the leg is replaced
    await asyncio.sleep(TIMEOUT * 2)
    assert peer.said == ["silent"]
    peer.watchdog.start()  # the new leg connected: silence on it is news again
    assert await peer.next_word() == "silent"
    assert peer.said == ["silent", "silent"]
    peer.watchdog.stop()


async def test_a_loop_that_fell_behind_is_not_taken_for_a_silent_peer() -> None:
    """The process, not the peer, stalls for two timeouts: the peer's packet arrived meanwhile
    and waits in the socket, handled only a turn after the late check. No silence."""
    peer = Peer()
    peer.watchdog.start()
    peer.packet()
    loop = asyncio.get_running_loop()
    handled = asyncio.Event()

    def stall() -> None:
        time.sleep(TIMEOUT * 2)  # the fault: a callback that holds the loop (a busy machine)

        def read_socket() -> None:  # a datagram's callback, then the task it wakes
            loop.call_soon(lambda: (peer.packet(), handled.set()))

        loop.call_soon(read_socket)

    loop.call_soon(stall)
    await asyncio.wait_for(handled.wait(), 5.0)
    for _ in range(6):  # media flows on for two timeouts
        await asyncio.sleep(TIMEOUT / 3)
        peer.packet()
    assert peer.said == []
    peer.watchdog.stop()


async def test_a_peer_gone_while_the_loop_lags_is_still_reported() -> None:
    """Lateness is forgiven once per silence, not for ever: a loop that lags for good (every
    turn holds it for two timeouts) still hears of a peer that sends nothing."""
    peer = Peer()
    peer.watchdog.start()
    peer.packet()
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    gave_up = asyncio.Event()

    def stall() -> None:
        time.sleep(TIMEOUT * 2)
        if peer.said:
            return
        if time.monotonic() - started > TIMEOUT * 20:
            gave_up.set()  # the watchdog stayed quiet through all that lag
            return
        loop.call_soon(stall)

    loop.call_soon(stall)
    assert await peer.next_word(within=15.0) == "silent"
    assert not gave_up.is_set()
    peer.watchdog.stop()
