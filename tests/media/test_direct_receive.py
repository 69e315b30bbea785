"""The hot path's own SRTP and its direct receive lane give what aiortc's own handling gives.

Real aiortc peers over loopback; packets are written by the relay's ``RtpWriter`` (through a
``PacketQueueTrack``), or built here and protected with the sender's own SRTP session, and
received by a tapped receiver, as a relayed leg's are.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from gateway.media import aiortc_internals, ice
from gateway.media.forwarding import PacketQueueTrack
from tests.media.test_aiortc_internals import WAIT, connect


def policies() -> tuple[pylibsrtp.Policy, pylibsrtp.Policy]:
    key = os.urandom(30)
    outbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    inbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    return outbound, inbound


def rtp(sequence: int, payload: bytes = b"\x78" * 60) -> bytes:
    return RtpPacket(111, 0, sequence, sequence * 960, 1234, payload).serialize()


@pytest.mark.parametrize("known", [True, False], ids=["libsrtp", "unknown-pylibsrtp"])
def test_srtp_gives_pylibsrtps_bytes_and_refuses_what_it_refuses(
    known: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not known:  # a pylibsrtp this module does not know: the session's own methods
        monkeypatch.setattr(aiortc_internals, "PYLIBSRTP_SUPPORTED", ())
    outbound, inbound = policies()
    ours = aiortc_internals.Srtp(pylibsrtp.Session(outbound))
    stock = pylibsrtp.Session(outbound)
    receiving = aiortc_internals.Srtp(pylibsrtp.Session(inbound))
    plain = [rtp(sequence) for sequence in range(1, 6)]
    protected = [ours.protect(packet) for packet in plain]
    assert protected == [stock.protect(packet) for packet in plain]
    assert [receiving.unprotect(packet) for packet in protected if packet] == plain

    assert receiving.unprotect(protected[0] or b"") is None  # a replay
    tampered = bytearray(ours.protect(rtp(6)) or b"")
    tampered[20] ^= 0xFF
    assert receiving.unprotect(bytes(tampered)) is None  # fails authentication
    assert ours.protect(rtp(7, b"\x78" * 1400)) is None  # no room for the trailer
    assert receiving.unprotect(ours.protect(rtp(8)) or b"") == rtp(8)  # and goes on


@dataclass
class Pair:
    """A sender of pre-encoded packets and a tapped, directly receiving audio receiver."""

    track: PacketQueueTrack
    dtls: RTCDtlsTransport
    receiver: RTCRtpReceiver
    payload_type: int
    tapped: list[RtpPacket] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_packet(self, packet: RtpPacket) -> None:
        self.tapped.append(packet)
        self.arrived.set()

    def send_raw(self, data: bytes) -> None:
        """``data`` (RTP) protected with the sender's session and sent out of its socket."""
        pair = self.dtls.transport._connection._nominated[1]
        pair.protocol.transport.sendto(self.dtls._tx_srtp.protect(data), pair.remote_addr)

    async def tapped_count(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.tapped) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def connected(*pcs: RTCPeerConnection) -> None:
    changed = asyncio.Event()
    for pc in pcs:
        pc.on("connectionstatechange", changed.set)
    async with asyncio.timeout(WAIT):
        while any(pc.connectionState != "connected" for pc in pcs):
            assert all(pc.connectionState != "failed" for pc in pcs)
            changed.clear()
            await changed.wait()


@pytest.fixture
async def pair(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Pair, list[bytes]]]:
    """A connected pair, and every datagram that aiortc's own RTP handling was given."""
    handled: list[bytes] = []
    stock: Callable[..., Any] = RTCDtlsTransport._handle_rtp_data

    async def counted(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        handled.append(data)
        await stock(self, data, arrival_time_ms=arrival_time_ms)

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", counted)
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = PacketQueueTrack()
    sender = offerer.addTrack(track)
    try:
        await connect(offerer, answerer)
        await connected(offerer, answerer)
        codec = aiortc_internals.negotiated_codecs(offerer.getTransceivers()[0])[0]
        assert codec.payloadType is not None
        track.write_through(sender, codec)
        receiver = answerer.getTransceivers()[0].receiver
        link = Pair(track, sender.transport, receiver, codec.payloadType)
        aiortc_internals.tap_receiver(receiver, link.on_packet)
        aiortc_internals.receive_directly(receiver)
        yield link, handled
    finally:
        await offerer.close()
        await answerer.close()


async def inbound(receiver: RTCRtpReceiver) -> Any:
    (stats,) = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
    return stats


async def test_a_known_source_skips_aiortcs_handling_and_keeps_its_statistics(
    pair: tuple[Pair, list[bytes]],
) -> None:
    link, handled = pair
    payloads = [bytes([i % 200 + 1]) * (20 + i % 40) for i in range(200)]
    lost = {50, 51, 120}
    writer = link.track._writer
    assert writer is not None
    for i, payload in enumerate(payloads):
        if i in lost:  # a packet lost on the way: its sequence number never arrives
            writer._sequence = (writer._sequence + 1) & 0xFFFF
        link.track.send(payload, i * 960)
    await link.tapped_count(len(payloads))

    assert len(handled) == 1  # aiortc routed the source's first packet; the rest came direct
    assert [p.payload for p in link.tapped] == payloads
    # aiortc's sender marks every audio packet (the last, and only, packet of its frame)
    assert all(p.payload_type == link.payload_type and p.marker == 1 for p in link.tapped)
    steps = {
        (b.sequence_number - a.sequence_number) % 65536
        for a, b in zip(link.tapped, link.tapped[1:], strict=False)
    }
    assert steps == {1, 2}  # each lost packet's number is missing, in order
    pairs = zip(link.tapped, link.tapped[1:], strict=False)
    assert {b.timestamp - a.timestamp for a, b in pairs} == {960}
    assert len({p.ssrc for p in link.tapped}) == 1
    stats = await inbound(link.receiver)
    assert stats.packetsReceived == len(payloads)
    assert stats.packetsLost == len(lost)
    sources = link.receiver.getSynchronizationSources()
    assert [s.source for s in sources] == [link.tapped[0].ssrc]


async def test_what_the_direct_lane_does_not_read_goes_to_aiortc(
    pair: tuple[Pair, list[bytes]],
) -> None:
    link, handled = pair
    link.track.send(b"\x78" * 40, 0)
    await link.tapped_count(1)
    ssrc, sequence = link.tapped[0].ssrc, link.tapped[0].sequence_number
    assert len(handled) == 1

    pt = link.payload_type
    with_csrc = RtpPacket(pt, 0, sequence + 1, 960, ssrc, b"csrc")
    with_csrc.csrc = [7, 8]
    padded = bytearray(RtpPacket(pt, 1, sequence + 2, 1920, ssrc, b"pad").serialize())
    padded[0] |= 0x20
    padded += b"\x00\x00\x03"  # RFC 3550: three bytes of padding, counting the last
    newcomer = RtpPacket(pt, 0, 9000, 5000, ssrc ^ 1, b"new")
    newcomer_next = RtpPacket(pt, 0, 9001, 5960, ssrc ^ 1, b"next")
    for data in (with_csrc.serialize(), bytes(padded), newcomer.serialize()):
        link.send_raw(data)
    await link.tapped_count(4)
    assert len(handled) == 4  # each went through aiortc's parse and routing
    assert [p.payload for p in link.tapped[1:]] == [b"csrc", b"pad", b"new"]
    assert link.tapped[1].csrc == [7, 8] and link.tapped[2].marker == 1

    # aiortc learnt the new source: its next packet comes direct
    link.send_raw(newcomer_next.serialize())
    await link.tapped_count(5)
    assert len(handled) == 4 and link.tapped[4].payload == b"next"
    stats = await inbound(link.receiver)  # aiortc reports the last source it heard
    assert (stats.ssrc, stats.packetsReceived) == (ssrc ^ 1, 2)

    # an extension that claims more than the packet holds (libsrtp would not even protect it):
    # the direct lane leaves it to aiortc, which refuses it
    lying = bytearray(RtpPacket(pt, 0, sequence + 3, 2880, ssrc, b"").serialize())
    lying[0] |= 0x10
    lying += b"\xbe\xde\x00\x40"  # 64 words of extension follow; none does
    dtls = link.receiver.transport
    assert not aiortc_internals._tap_directly(dtls, bytes(lying))
    await dtls._handle_rtp_data(bytes(lying), arrival_time_ms=0)
    assert len(link.tapped) == 5


async def test_aioices_socket_hands_media_on_and_stun_to_aioice(
    pair: tuple[Pair, list[bytes]],
) -> None:
    link, _ = pair
    connection = link.receiver.transport.transport._connection
    given: list[bytes] = []
    direct = connection.data_received

    def spy(data: bytes, component: int) -> None:
        given.append(data)
        direct(data, component)

    connection.data_received = spy  # type: ignore[method-assign]
    (protocol,) = connection._protocols
    assert type(protocol).datagram_received is ice._datagram_received  # ice.install()'s
    # a STUN response nobody asked for: aioice's to parse (and to ignore), not the connection's
    stray = bytes.fromhex("0101000021120442") + os.urandom(12)
    protocol.datagram_received(stray, ("127.0.0.1", 9))
    assert given == []
    link.track.send(b"\x78" * 40, 0)
    await link.tapped_count(1)
    assert len(given) == 1 and 127 < given[0][0] < 192
    # SRTP that aioice's parse takes for STUN still reaches the connection: its length field
    # (the RTP sequence number) matches, its method (PCMA's payload type, 8) is one, and aioice
    # checks nothing else
    lookalike = bytes.fromhex("8008002c") + bytes(60)  # 64 bytes: 20 + 0x2c
    protocol.datagram_received(lookalike, ("127.0.0.1", 9))
    assert given[1:] == [lookalike]
