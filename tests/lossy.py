"""Packet loss on a peer connection's sending side, in userspace (this kernel has no netem).

``LossyLeg.impair(pc)`` wraps the ICE transport each of ``pc``'s senders uses: a seeded
fraction of the RTP packets it sends (SRTP, after encryption: what a lossy network would lose)
never leaves, counted by payload type; RTCP, DTLS and STUN pass untouched, so the connection
stays up and the far end can ask for what it missed (NACK, PLI).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection
from aiortc.rtp import is_rtcp

Send = Callable[[bytes], Awaitable[None]]


def is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and 0x80 <= data[0] <= 0xBF and not is_rtcp(data)


class LossyLeg:
    def __init__(self, rate: float, seed: int = 0) -> None:
        self.rate = rate
        self._random = random.Random(seed)
        #: packets dropped, by RTP payload type
        self.dropped: Counter[int] = Counter()
        self.sent: Counter[int] = Counter()

    def impair(self, pc: RTCPeerConnection) -> None:
        """Lose ``rate`` of the RTP packets ``pc`` sends from now on."""
        transports = {s.transport.transport for s in pc.getSenders() if s.transport is not None}
        for ice in transports:
            ice._send = self._lossy(ice._send)

    def _lossy(
        self, send: Callable[[bytes], Awaitable[None]]
    ) -> Callable[[bytes], Awaitable[None]]:
        async def lossy_send(data: bytes) -> None:
            if is_rtp(data):
                payload_type = data[1] & 0x7F
                self.sent[payload_type] += 1
                if self._random.random() < self.rate:
                    self.dropped[payload_type] += 1
                    return
            await send(data)

        return lossy_send
