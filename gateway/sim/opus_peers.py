"""Opus peers that neither encode nor decode, for measuring and testing the relay's fast path.

A source sends Opus payloads encoded once at start-up, and a probe takes the packets off its
receiver the way the relay's fast path does. That keeps the peers' own CPU low (in ``bench relay``
they share the machine with the relay being measured) and lets a probe see exactly what crossed.
Audio can be marked: digital silence (3-byte Opus packets) with one loud frame every
``MARK_PERIOD`` frames, which stays one large packet after a decode and re-encode, so the same
probe finds the marks behind aiortc's ``MediaRelay`` and behind the fast path.

A ``PeerHost`` holds many such peers: it offers sessions the way a browser does, or answers
``POST /v1/realtime/calls`` the way the AI upstream does. The media tests and the relay benchmark
both build on it, which is why it lives here and not in ``gateway/bench/``.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket
from av import AudioFrame
from av.packet import Packet

from gateway.media import aiortc_internals, ice
from gateway.media.forwarding import LegAudio, PacketQueueTrack
from gateway.upstream.openai import EVENTS_LABEL

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
#: One loud frame every this many (500 ms): a mark must arrive before the next one is sent.
MARK_PERIOD = 25
#: Silence encodes to 3 bytes, the loud frame to ~400: anything above this is a mark.
MARK_BYTES = 32
LOCAL = ["127.0.0.1"]
CONNECT_TIMEOUT = 30.0
#: The session key that carries a session's name from the near peer to the far one.
SESSION_KEY = "bench_session"


def encode_opus(samples: np.ndarray) -> list[bytes]:
    """Mono int16 samples as 20 ms Opus payloads, encoded the way aiortc's sender does."""
    encoder = OpusEncoder()
    payloads: list[bytes] = []
    for index in range(len(samples) // FRAME_SAMPLES):
        chunk = samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        stereo = np.repeat(chunk.astype(np.int16), 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * FRAME_SAMPLES
        frame.time_base = TIME_BASE
        encoded, _ = encoder.encode(frame)
        payloads.extend(encoded)
    return payloads


def marked_payloads() -> list[bytes]:
    """One mark period of Opus: a loud 1 kHz frame, then silence (encoded twice, second kept,
    so the encoder's state at the loop's seam is the steady one)."""
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    period = np.zeros(MARK_PERIOD * FRAME_SAMPLES)
    period[:FRAME_SAMPLES] = 12000 * np.sin(2 * np.pi * 1000 * t)
    return encode_opus(np.tile(period, 2))[MARK_PERIOD:]


class OpusSource(PacketQueueTrack):
    """Sends ``payloads`` in a loop as pre-encoded packets, paced at 20 ms.

    Sending starts when ``go`` is set (at a random phase within the first 20 ms, as independent
    browsers' microphones are not in step) and ends after ``stop`` (the track then stops, and
    so does its sender's loop). ``mark_times`` notes when each loop start (the mark) went out
    (monotonic). Each packet is sent by a timer callback: bound to its sender
    (``write_through``), written out at once through ``RtpWriter``, the writer the relay's
    forwarded packets take, so that a peer costs what the gateway's hot path costs and not
    aiortc's sender loop; unbound, queued for that loop.
    """

    def __init__(self, payloads: Sequence[bytes], go: asyncio.Event, stop: asyncio.Event) -> None:
        super().__init__()
        self._payloads = payloads
        self._go = go
        self._stop_sending = stop
        self._start = 0.0
        self._pacing: asyncio.Task[None] | None = None
        self.sent = 0
        self.mark_times: list[float] = []

    async def recv(self) -> Packet:  # type: ignore[override]
        # the sender's loop asks once it can send: from then on the timer paces the source
        if self._pacing is None:
            self._pacing = asyncio.ensure_future(self._pace())
        return await super().recv()

    async def _pace(self) -> None:
        await self._go.wait()
        loop = asyncio.get_running_loop()
        self._start = loop.time() + random.random() * FRAME_SECONDS
        loop.call_at(self._start, self._tick)

    def _tick(self) -> None:
        if self._stop_sending.is_set() or self.readyState != "live":
            self.stop()
            return
        index = self.sent % len(self._payloads)
        if index == 0:
            self.mark_times.append(time.monotonic())
        self.send(self._payloads[index], self.sent * FRAME_SAMPLES)
        self.sent += 1
        # late ticks catch up at once, as a microphone's buffered frames would
        asyncio.get_running_loop().call_at(self._start + self.sent * FRAME_SECONDS, self._tick)


class PacketProbe:
    """Takes a receiver's RTP packets without decoding them and notes what arrived when.

    ``keep=False`` (the benchmark's peers) counts packets without keeping them: a list of
    hundreds of thousands of ``RtpPacket`` objects makes each of the process's full garbage
    collections take ~90 ms, a pause the probe would then measure as the relay's latency.
    """

    def __init__(self, keep: bool = True) -> None:
        self._keep = keep
        self.packets: list[RtpPacket] = []
        self.received = 0
        self.sequence_numbers: set[int] = set()
        self.mark_times: list[float] = []
        self._last_loud = False
        self._wanted: tuple[int, asyncio.Future[None]] | None = None

    def attach(self, audio: LegAudio) -> None:
        """Take ``audio``'s packets, handled as they arrive (as the relay handles its own)."""
        aiortc_internals.tap_receiver(audio.receiver, self.on_packet)
        aiortc_internals.receive_directly(audio.receiver)

    def on_packet(self, packet: RtpPacket) -> None:
        loud = len(packet.payload) > MARK_BYTES
        if loud and not self._last_loud:
            self.mark_times.append(time.monotonic())
        self._last_loud = loud
        self.received += 1
        self.sequence_numbers.add(packet.sequence_number)
        if self._keep:
            self.packets.append(packet)
        if self._wanted is not None and self.received >= self._wanted[0]:
            if not self._wanted[1].done():
                self._wanted[1].set_result(None)

    async def wait_for(self, count: int) -> None:
        """Until ``count`` packets in all have arrived (bound it with ``asyncio.timeout``)."""
        if self.received >= count:
            return
        self._wanted = (count, asyncio.get_running_loop().create_future())
        await self._wanted[1]


@dataclass(slots=True)
class Peer:
    """One simulated end of a session: a peer connection, what it sends, what it received."""

    pc: RTCPeerConnection
    source: OpusSource
    probe: PacketProbe

    def report(self) -> dict[str, Any]:
        return {
            "sent": self.source.sent,
            "sent_marks": self.source.mark_times,
            "received": len(self.probe.sequence_numbers),
            "received_marks": self.probe.mark_times,
        }

    def attach(self, track: MediaStreamTrack) -> None:
        """Once negotiated: probe the remote ``track``, write the source through its sender."""
        audio = LegAudio.of(self.pc, track)
        self.probe.attach(audio)
        sender = next(s for s in self.pc.getSenders() if s.track is self.source)
        transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
        codecs = aiortc_internals.negotiated_codecs(transceiver)
        self.source.write_through(sender, codecs[0] if codecs else None)


class PeerHost:
    """The peers of one process and the controls the bench drives them with."""

    def __init__(self, payloads: Sequence[bytes], keep_packets: bool = True) -> None:
        self.payloads = payloads
        self._keep_packets = keep_packets
        self.go = asyncio.Event()
        self.stop = asyncio.Event()
        self.done = asyncio.Event()
        self.peers: dict[str, Peer] = {}

    def new_peer(self) -> Peer:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        source = OpusSource(self.payloads, self.go, self.stop)
        pc.addTrack(source)
        return Peer(pc, source, PacketProbe(self._keep_packets))

    async def accept(self, offer_sdp: str, name: str | None = None) -> tuple[str, Peer]:
        """Answer an offer with a new peer; returns its call id and the peer."""
        peer = self.new_peer()
        tracks: list[MediaStreamTrack] = []
        peer.pc.on("track", tracks.append)
        await peer.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        peer.attach(tracks[0])
        with ice.host_addresses(LOCAL):
            await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        name = name or str(len(self.peers))
        self.peers[name] = peer
        return f"rtc_{name}", peer

    async def answer(self, request: web.Request) -> web.Response:
        """``POST /realtime/calls`` as the upstream answers it; the session names the peer."""
        offer_sdp, session = await read_call(request)
        call_id, peer = await self.accept(offer_sdp, session.get(SESSION_KEY))
        return web.Response(
            status=201,
            text=peer.pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    async def answer_live(self, request: web.Request) -> web.Response:
        """``POST /live/sessions`` as GPT-Live answers it (JSON in, JSON out): the same peer."""
        body = await request.json()
        session, offer_sdp = body.get("session") or {}, body["transport"]["sdp"]
        call_id, peer = await self.accept(offer_sdp, session.get(SESSION_KEY))
        return web.json_response(
            {
                "session": {"id": call_id},
                "transport": {"type": "webrtc", "sdp": peer.pc.localDescription.sdp},
            }
        )

    async def hangup(self, request: web.Request) -> web.Response:
        peer = self.peers.get(request.match_info["call_id"].removeprefix("rtc_"))
        if peer is not None:
            await peer.pc.close()
        return web.Response()

    async def offer(self, answer: Callable[[str], Awaitable[str]], name: str) -> Peer:
        """Connect one session the way a browser does; ``answer`` turns our offer into an answer."""
        peer = self.new_peer()
        peer.pc.createDataChannel(EVENTS_LABEL)
        connected = asyncio.get_running_loop().create_future()

        @peer.pc.on("connectionstatechange")
        def _state() -> None:
            if peer.pc.connectionState in ("connected", "failed") and not connected.done():
                connected.set_result(peer.pc.connectionState)

        tracks: list[MediaStreamTrack] = []
        peer.pc.on("track", tracks.append)
        with ice.host_addresses(LOCAL):
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
        answer_sdp = await answer(peer.pc.localDescription.sdp)
        await peer.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        peer.attach(tracks[0])
        self.peers[name] = peer
        if await asyncio.wait_for(connected, CONNECT_TIMEOUT) != "connected":
            raise RuntimeError(f"session {name} failed to connect")
        return peer

    def report(self) -> dict[str, Any]:
        return {name: peer.report() for name, peer in self.peers.items()}

    async def close(self) -> None:
        await asyncio.gather(*(peer.pc.close() for peer in self.peers.values()))


async def read_call(request: web.Request) -> tuple[str, dict[str, Any]]:
    """The ``sdp`` and ``session`` parts of a ``POST /realtime/calls``."""
    offer_sdp, session = "", {}
    async for part in await request.multipart():
        if isinstance(part, BodyPartReader) and part.name == "sdp":
            offer_sdp = await part.text()
        elif isinstance(part, BodyPartReader) and part.name == "session":
            session = json.loads(await part.text())
    return offer_sdp, session
