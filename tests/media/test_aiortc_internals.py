"""Fails loudly when aiortc internals that gateway/media/aiortc_internals.py reaches into move."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aioice.ice
import aiortc
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import numpy as np
import pylibsrtp
import pytest
from aiortc import (
    RTCConfiguration,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket
from av import AudioFrame

from gateway.media import aiortc_internals, ice
from gateway.media.forwarding import LegAudio
from gateway.sim.opus_peers import LOCAL, OpusSource, PacketProbe, encode_opus
from gateway.sim.speech import SpeechTrack

WAIT = 20.0


def test_the_installed_aiortc_is_a_supported_version() -> None:
    assert aiortc_internals.version_supported(), (
        f"aiortc {aiortc.__version__} is not in {aiortc_internals.SUPPORTED}: check every reach in "
        "gateway/media/aiortc_internals.py against its source, then add the version"
    )


def test_the_numpy_audio_level_equals_aiortcs() -> None:
    rng = np.random.default_rng(5)
    for scale in (0, 1, 30, 1000, 32767):
        samples = (rng.uniform(-1, 1, 960 * 2) * scale).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48000
        expected = aiortc_internals.STOCK_AUDIO_LEVEL(frame)
        assert aiortc_internals.compute_audio_level_dbov(frame) == expected


def test_the_receiver_keeps_its_jitter_buffer_where_the_tap_goes() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer = JitterBuffer(" in source
    assert "self.__jitter_buffer.add(packet)" in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    ), "the receiver no longer hands packets to its jitter buffer: the relay's tap is bypassed"
    assert aiortc_internals.JITTER_BUFFER_ATTRIBUTE == "_RTCRtpReceiver__jitter_buffer"
    assert "_codecs" in vars(aiortc.RTCRtpTransceiver("audio", None, None))  # type: ignore[arg-type]


def test_the_receiver_sends_a_pli_and_its_video_buffer_hands_back_frames() -> None:
    """What the video tap (``FrameTap``) and ``request_keyframe`` rely on."""
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    )


def test_aiortcs_rtcp_loops_still_sleep_what_the_report_timer_scales() -> None:
    for cls, stock in (
        (RTCRtpSender, aiortc_internals.STOCK_SENDER_RTCP),
        (RTCRtpReceiver, aiortc_internals.STOCK_RECEIVER_RTCP),
    ):
        assert "await asyncio.sleep(0.5 + random.random())" in inspect.getsource(stock)
        # each loop is a task of its own, so the interval its wrapper sets stays in it
        assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in inspect.getsource(
            cls
        )
        assert cls._run_rtcp is not stock  # install()'s, pacing it by kind
    assert aiortc.rtcrtpsender.random is aiortc_internals.ReportTimer
    assert aiortc.rtcrtpreceiver.random is aiortc_internals.ReportTimer


class Silent(MediaStreamTrack):
    """A track that never yields a frame: its sender's loops start, nothing is encoded."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


async def test_rtcp_reports_audio_every_5_s_and_video_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libwebrtc's intervals, randomized and the first halved as RFC 3550 says: each of the four
    loops (audio and video, sender and receiver) says how long it sleeps."""
    delays: dict[asyncio.Task[Any] | None, list[float]] = {}
    slept = asyncio.Event()

    class Loops:
        """aiortc's RTCP modules' ``asyncio``, noting each sleep of the task that sleeps."""

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay: float) -> None:
            delays.setdefault(asyncio.current_task(), []).append(delay)
            slept.set()
            await asyncio.sleep(delay)

    monkeypatch.setattr(aiortc.rtcrtpsender, "asyncio", Loops())
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "asyncio", Loops())
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind in ("audio", "video"):
            offerer.addTrack(Silent(kind))
        await connect(offerer, answerer)

        def loops() -> dict[str, list[asyncio.Task[Any] | None]]:
            """Each kind's sender and receiver RTCP tasks (None until DTLS connects)."""
            return {
                kind: [
                    vars(offerer.getTransceivers()[i].sender)["_RTCRtpSender__rtcp_task"],
                    vars(answerer.getTransceivers()[i].receiver)["_RTCRtpReceiver__rtcp_task"],
                ]
                for i, kind in enumerate(("audio", "video"))
            }

        async with asyncio.timeout(WAIT):
            while not all(t in delays for tasks in loops().values() for t in tasks):
                slept.clear()
                await slept.wait()
        # past each loop's first interval: one more sleep of an audio loop (up to 3.75 s in),
        # three more of a video loop, each at full length
        more = {"audio": 2, "video": 4}
        async with asyncio.timeout(WAIT):
            while any(len(delays[t]) < more[kind] for kind, ts in loops().items() for t in ts):
                slept.clear()
                await slept.wait()
        for kind, every in aiortc_internals.REPORT_INTERVALS.items():
            for task in loops()[kind]:
                first, *later = delays[task]
                assert later  # the full-length intervals were seen, not only the first
                # RFC 3550's randomization (0.5 to 1.5 times), the first interval halved
                assert every / 4 <= first <= every * 3 / 4, (kind, delays[task])
                assert all(every / 2 <= delay <= every * 3 / 2 for delay in later), kind
        assert aiortc_internals.REPORT_INTERVALS == {"audio": 5.0, "video": 1.0}
    finally:
        await offerer.close()
        await answerer.close()


async def connect(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection
) -> list[MediaStreamTrack]:
    tracks: list[MediaStreamTrack] = []
    answerer.on("track", tracks.append)
    with ice.host_addresses(LOCAL):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(
        RTCSessionDescription(answerer.localDescription.sdp, "answer")
    )
    return tracks


async def test_a_tap_hands_over_packets_detached_decodes_nothing_restored_decodes() -> None:
    payloads = encode_opus(np.random.default_rng(1).normal(0, 2000, 48000).astype(np.int16))
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        go = asyncio.Event()
        go.set()
        offerer.addTrack(OpusSource(payloads, go, asyncio.Event()))
        (track,) = await connect(offerer, answerer)
        audio = LegAudio.of(answerer, track)
        assert audio.codec is not None and audio.codec.mimeType == "audio/opus"
        assert aiortc_internals.negotiated_codecs(answerer.getTransceivers()[0])[0] == audio.codec

        probe = PacketProbe()
        detach = aiortc_internals.tap_receiver(audio.receiver, probe.on_packet)
        async with asyncio.timeout(WAIT):
            await probe.wait_for(25)
        # The sender packetized the pre-encoded payloads (av.Packet) unchanged.
        received = [p.payload for p in probe.packets]
        start = payloads.index(received[0])
        assert received == [payloads[(start + i) % len(payloads)] for i in range(len(received))]
        assert track._queue.empty()  # type: ignore[attr-defined]  # nothing was decoded

        detach()  # packets now go nowhere: no more to the probe, none to the decoder
        seen = len(probe.packets)
        tap = getattr(audio.receiver, aiortc_internals.JITTER_BUFFER_ATTRIBUTE)
        assert isinstance(tap, aiortc_internals.PacketTap)
        assert tap.add(RtpPacket(payload_type=111, payload=b"x")) == (False, None)
        assert len(probe.packets) == seen and track._queue.empty()  # type: ignore[attr-defined]

        aiortc_internals.restore_decoder(audio.receiver)
        assert isinstance(
            getattr(audio.receiver, aiortc_internals.JITTER_BUFFER_ATTRIBUTE), JitterBuffer
        )
        async with asyncio.timeout(WAIT):
            frame = await track.recv()
        assert isinstance(frame, AudioFrame)
    finally:
        await offerer.close()
        await answerer.close()


async def test_a_second_tap_replaces_the_first_and_restoring_puts_the_real_buffer_back() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver(SpeechTrack()).receiver
        buffer = getattr(receiver, aiortc_internals.JITTER_BUFFER_ATTRIBUTE)
        first: list[RtpPacket] = []
        second: list[RtpPacket] = []
        detach_first = aiortc_internals.tap_receiver(receiver, first.append)
        aiortc_internals.tap_receiver(receiver, second.append)
        detach_first()  # no longer the tap in place: the second goes on
        tap = getattr(receiver, aiortc_internals.JITTER_BUFFER_ATTRIBUTE)
        assert isinstance(tap, aiortc_internals.PacketTap) and tap.original is buffer
        packet = RtpPacket(payload_type=111, payload=b"x")
        tap.add(packet)
        assert (first, second) == ([], [packet])
        aiortc_internals.restore_decoder(receiver)
        assert getattr(receiver, aiortc_internals.JITTER_BUFFER_ATTRIBUTE) is buffer
    finally:
        await pc.close()


def test_aioices_consent_loop_is_still_the_one_the_gateway_replaces() -> None:
    """ice.install() swaps aioice's consent loop for one that retransmits its checks; if aioice
    changes the loop (or starts retransmitting itself), the swap must be looked at again."""
    source = inspect.getsource(ice.STOCK_QUERY_CONSENT)
    assert "retransmissions=0" in source
    assert "CONSENT_FAILURES" in source and "CONSENT_INTERVAL" in source
    assert aioice.ice.Connection.query_consent is not ice.STOCK_QUERY_CONSENT  # installed


async def test_the_hot_paths_reaches_are_where_aiortc_and_aioice_keep_them() -> None:
    """``RtpWriter`` and ``receive_directly`` read and keep counters under aiortc's private
    names and call into aioice's connection: if any moved, the relay would send nothing or
    report wrong statistics, so this fails first."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTrack(OpusSource([b"x"], asyncio.Event(), asyncio.Event()))
        names = ("started", "mid", "track", "transport", "rtp_header_extensions_map")
        counters = ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count")
        for name in names + counters:
            assert f"_RTCRtpSender__{name}" in vars(sender), name
        for name in counters:
            assert f"self.__{name}" in inspect.getsource(aiortc_internals.STOCK_SENDER_RTCP), name
        dtls = sender.transport
        for name in ("tx_bytes", "tx_packets", "rx_bytes", "rx_packets"):
            assert f"_RTCDtlsTransport__{name}" in vars(dtls), name
        assert {"_state", "_rx_srtp", "_tx_srtp"} <= set(vars(dtls))
        receive = inspect.getsource(RTCDtlsTransport._recv_next)
        assert "self._rx_srtp.unprotect(data)" in receive
        assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in receive
        connection = dtls.transport._connection
        assert isinstance(connection, aioice.ice.Connection)
        assert {"_nominated", "_queue"} <= set(vars(connection))
        assert "self._queue.put_nowait((data, component))" in inspect.getsource(
            aioice.ice.Connection.data_received
        )
        assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in (
            inspect.getsource(aioice.ice.Connection.sendto)
        )
        assert "self.receiver.data_received(data, self.local_candidate.component)" in (
            inspect.getsource(ice.STOCK_DATAGRAM_RECEIVED)
        )
        assert {"_rtp_router", "_transport"} <= set(vars(dtls))
        assert {"ssrc_table", "payload_type_table"} <= set(vars(dtls._rtp_router))
        # the direct receive lane keeps what aiortc's handling of an audio packet keeps
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        for name in ("kind", "remote_streams", "active_ssrc", "jitter_buffer"):
            assert f"_RTCRtpReceiver__{name}" in vars(receiver), name
        assert "_enabled" in vars(receiver)
        assert vars(receiver)["_RTCRtpReceiver__nack_generator"] is None  # audio: no NACK,
        assert vars(receiver)["_RTCRtpReceiver__remote_bitrate_estimator"] is None  # no REMB
        handling = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        for line in (
            "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
            "self.__remote_streams[packet.ssrc].add(packet)",
            "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)",
        ):
            assert line in handling, line
        # and Srtp protects through a pylibsrtp session's own context and buffer
        assert aiortc_internals.pylibsrtp_supported()
        session = pylibsrtp.Session()
        assert {"_srtp", "_cdata", "_buffer"} <= set(vars(session))
    finally:
        await pc.close()
