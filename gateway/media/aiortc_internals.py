"""The one module that reaches into aiortc's internals, and why each reach is worth it.

Supported aiortc versions: 1.15 and 1.16 (``SUPPORTED``); ``tests/media/test_aiortc_internals.py``
fails loudly if a name used here moves, so an aiortc upgrade cannot silently undo a fix.

- ``aiortc.rtp.compute_audio_level_dbov``: every sent audio frame's RFC 6465 level is computed
  in a pure-Python per-sample loop (~0.8 ms of a 20 ms frame, a third of a relayed session's
  CPU). The numpy version below returns the identical value in ~5 µs.
- ``RTCRtpReceiver.__jitter_buffer``: aiortc's receiver always decodes, and its audio jitter
  buffer holds ~4 frames (80 ms) before releasing one. A relay that forwards Opus needs neither:
  ``tap_receiver`` puts a ``PacketTap`` in the buffer's place, which hands every packet (after
  SRTP, statistics for RTCP receiver reports, and RTX unwrapping, which all stay aiortc's) to a
  callback and releases nothing to the decoder. The far end keeps its own jitter buffer.
- The same attribute for video: ``tap_frames`` wraps the real buffer (``FrameTap``), so aiortc
  still assembles each frame from its depacketized RTP payloads (and still asks for a keyframe,
  by PLI, when packets were lost), but the frame goes to a callback, not to the decoder: the
  candidate's VP8 is recorded as it came. ``request_keyframe`` sends that PLI
  (``RTCRtpReceiver._send_rtcp_pli``) when a recording needs a keyframe to start a segment.
- ``RTCRtpTransceiver._codecs``: the codecs negotiated for a transceiver (first = the one that is
  sent), which aiortc does not expose; the relay forwards only when both legs agree on Opus.
- The RTCP report interval: aiortc's sender and receiver loops report every 0.5-1.5 s whatever
  the kind, RFC 3550's randomization of a 1 s interval. For audio that is five times what RFC
  3550 6.2 recommends and what libwebrtc does (``kDefaultAudioReportInterval``: 5 s; video 1 s),
  and a relay at 50 sessions spent 6-8 % of its CPU on the difference (a report a second from
  each of its four audio loops a session, and as many in from the peers). ``install`` paces each
  loop by its kind (``REPORT_INTERVALS``), the first interval halved as RFC 3550 says: the loops
  read their delay from ``random.random()``, so their modules' ``random`` becomes
  ``ReportTimer``, which scales it to the interval that the loop's own task set (``_paced``,
  wrapping ``_run_rtcp``). Call quality reads round-trip times from these reports
  (``media.quality``).

The hot path (50 relayed sessions in one process are 5 000 packets a second through one event
loop) takes two more reaches, each removing a hop through a queue and a task wake-up per packet:

- ``RtpWriter``: a forwarded packet is packetized, SRTP-protected and written by the callback that
  received it, instead of queued for the sender's own loop (``RTCRtpSender._run_rtp``), which
  then just waits on the track. It writes what that loop would (SSRC, sequence numbers from a
  random start, timestamps from a random origin, the marker, the negotiated header extensions)
  and keeps the sender's and the DTLS transport's counters, which RTCP sender reports and
  ``getStats`` read.
- ``receive_directly``: SRTP that reaches an ICE connection with nothing queued before it is
  decrypted in the same callback, instead of queued for the DTLS transport's receive task
  (DTLS, SCTP and RTCP keep aiortc's queue; aioice's socket protocol hands it over without
  first trying to parse it as STUN: ``gateway.media.ice``). A tapped audio receiver's
  packet from a source aiortc has already routed (``_tap_directly``) then goes to the tap with
  the receiver's statistics (which its RTCP receiver reports and ``getStats`` read) kept as
  aiortc keeps them, without the rest of aiortc's RTP handling (a full header parse, a
  coroutine per packet, and RTX, NACK, bitrate estimation and depacketization, none of which
  an audio receiver has). Anything else (a new SSRC, a CSRC list, padding, a video receiver)
  goes through aiortc's own ``RTCDtlsTransport._handle_rtp_data``.

Both take one more reach, into pylibsrtp (aiortc's SRTP): ``Srtp`` protects and unprotects
through a session's own libsrtp context and buffer without ``Session.protect``'s per-call wrapper
(a new ``int *``, two slice copies and an assertion call: 4.2 µs of a 1.9 µs job here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import struct
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

import aiortc
import aiortc.clock
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import numpy as np
import pylibsrtp
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import HeaderExtensions, RtpPacket
from aiortc.utils import random16, random32
from av import AudioFrame
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from gateway.media import ice

log = logging.getLogger(__name__)

SUPPORTED = ("1.15", "1.16")
#: pylibsrtp versions whose ``Session`` keeps its context and buffer where ``Srtp`` reads them
PYLIBSRTP_SUPPORTED = ("0.10", "0.11", "0.12", "1.0")

_MAX_SAMPLE = 32767.0
#: aiortc's own level function, kept to check the replacement against.
STOCK_AUDIO_LEVEL = aiortc.rtp.compute_audio_level_dbov
#: The name-mangled attribute of ``RTCRtpReceiver`` that holds its jitter buffer.
JITTER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


def compute_audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A audio level, exactly as aiortc computes it (same buffer, same scale)."""
    samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * _MAX_SAMPLE * _MAX_SAMPLE))
    if rms <= 0:
        return -127
    return round(min(max(20 * math.log10(rms), -127), 0))


#: RTCP report intervals by media kind, in seconds (see the module doc); others keep aiortc's
REPORT_INTERVALS = {"audio": 5.0, "video": 1.0}
#: the interval aiortc's loops are written for (they sleep 0.5 + random.random() seconds)
STOCK_REPORT_INTERVAL = 1.0
#: aiortc's own RTCP loops, kept to check on upgrades and for ``_paced`` to run
STOCK_SENDER_RTCP = RTCRtpSender._run_rtcp
STOCK_RECEIVER_RTCP = RTCRtpReceiver._run_rtcp
#: a loop's (next interval, interval) in its own task; none: aiortc's (1 s from the start)
_pace: ContextVar[tuple[float, float]] = ContextVar("rtcp_pace")


class ReportTimer:
    """Stands in for the ``random`` module in aiortc's RTCP loops: ``0.5 + random()`` is then
    RFC 3550's randomized interval (0.5 to 1.5 times it) of the loop's own kind, as its task set
    it (``_paced``), the first one halved (RFC 3550 6.2's initial interval: the first report,
    and with it the first round-trip time, comes 1.25-3.75 s in for audio, not 2.5-7.5 s);
    aiortc's 1 s where none was set."""

    @staticmethod
    def random() -> float:
        interval, every = _pace.get((STOCK_REPORT_INTERVAL, STOCK_REPORT_INTERVAL))
        _pace.set((every, every))
        return interval * (0.5 + random.random()) - 0.5


def _paced(stock: Callable[[Any], Coroutine[Any, Any, None]], kind: Callable[[Any], str]) -> Any:
    """``stock`` (an RTCP loop, run as its own task) with its task's interval set first."""

    async def _run_rtcp(self: Any) -> None:
        every = REPORT_INTERVALS.get(kind(self), STOCK_REPORT_INTERVAL)
        _pace.set((every / 2, every))
        await stock(self)

    return _run_rtcp


def install() -> None:
    """Apply the replacements (idempotent): every process that runs aiortc peers calls this."""
    aiortc.rtp.compute_audio_level_dbov = compute_audio_level_dbov  # type: ignore[assignment]
    if version_supported():
        aiortc.rtcrtpsender.random = ReportTimer  # type: ignore[assignment]
        aiortc.rtcrtpreceiver.random = ReportTimer  # type: ignore[assignment]
        RTCRtpSender._run_rtcp = _paced(STOCK_SENDER_RTCP, lambda sender: sender.kind)  # type: ignore[method-assign]
        RTCRtpReceiver._run_rtcp = _paced(  # type: ignore[method-assign]
            STOCK_RECEIVER_RTCP, lambda receiver: vars(receiver)[_KIND]
        )


def version_supported(version: str = aiortc.__version__) -> bool:
    return version.startswith(SUPPORTED)


class PacketTap:
    """Stands in for a receiver's jitter buffer: every packet goes to ``on_packet``, none is kept.

    ``RTCRtpReceiver._handle_rtp_packet`` calls ``add(packet)`` and decodes the frame it returns;
    returning none keeps the decoder thread idle. ``original`` is the real buffer, put back by
    ``restore_decoder``.
    """

    def __init__(self, on_packet: Callable[[RtpPacket], None], original: object) -> None:
        self.on_packet = on_packet
        self.original = original

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.on_packet(packet)
        return False, None


def tap_receiver(
    receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]
) -> Callable[[], None]:
    """Route ``receiver``'s RTP packets to ``on_packet`` instead of its decoder.

    Returns the detach function: from then on the receiver's packets go nowhere, not back to
    its decoder (a stopped route, or one moved to a reconnected peer's new receiver: decoding
    what no one reads would cost CPU and fill the track's queue); it does nothing if another
    tap has since taken the receiver's packets. ``restore_decoder`` gives the decoder back.
    """
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    original = current.original if isinstance(current, PacketTap) else current
    tap = PacketTap(on_packet, original)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, tap)

    def detach() -> None:
        tap.on_packet = _discard

    return detach


def restore_decoder(receiver: RTCRtpReceiver) -> None:
    """Give ``receiver`` back its real jitter buffer (and decoder), whatever tap is in place:
    for a route that must decode what an earlier, forwarding route tapped."""
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    if isinstance(current, PacketTap):
        setattr(receiver, JITTER_BUFFER_ATTRIBUTE, current.original)


def _discard(packet: RtpPacket) -> None:
    pass


class FrameTap:
    """Wraps a video receiver's jitter buffer: frames it completes go to ``on_frame``, none to
    the decoder; its PLIs (packets lost) still go out. ``ssrc``: the sender's, once heard."""

    def __init__(self, on_frame: Callable[[JitterFrame], None], original: object) -> None:
        self.on_frame = on_frame
        self.original = original
        self.ssrc: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.ssrc = packet.ssrc
        pli, frame = self.original.add(packet)  # type: ignore[attr-defined]
        if frame is not None:
            self.on_frame(frame)
        return pli, None


def tap_frames(
    receiver: RTCRtpReceiver, on_frame: Callable[[JitterFrame], None]
) -> Callable[[], None]:
    """Route the frames ``receiver``'s jitter buffer assembles (depacketized, RTP timestamps)
    to ``on_frame`` instead of its decoder; returns the detach function (frames go nowhere)."""
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    original = current.original if isinstance(current, (PacketTap, FrameTap)) else current
    tap = FrameTap(on_frame, original)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, tap)

    def detach() -> None:
        tap.on_frame = _discard_frame

    return detach


def drop_frames(receiver: RTCRtpReceiver) -> None:
    """Drop the frames ``receiver``'s jitter buffer assembles, never decoded (aiortc decodes
    every frame of a video track for a ``recv`` nobody may make); PLIs still go out."""
    tap_frames(receiver, _discard_frame)


def _discard_frame(frame: JitterFrame) -> None:
    pass


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Ask the sender of a tapped video receiver for a keyframe (RTCP PLI); nothing before
    its first packet (no SSRC to name yet)."""
    tap = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    if isinstance(tap, FrameTap) and tap.ssrc is not None:
        await receiver._send_rtcp_pli(tap.ssrc)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The transceiver's negotiated codecs, preferred first (empty before negotiation)."""
    return list(transceiver._codecs)


#: RFC 3550's fixed header: V=2 and no CSRC; the X bit, marker and payload type are added.
_RTP_HEADER = struct.Struct("!BBHLL")
#: the same header read past its first byte: marker and payload type, sequence, timestamp, SSRC
_RTP_FIXED = struct.Struct("!xBHLL")
#: RFC 3550 5.3.1: the header extension's length in 32-bit words, after its 16-bit profile
_EXTENSION_LENGTH = struct.Struct("!H")
#: seconds from the NTP epoch (1900) to the Unix epoch (1970)
_NTP_OFFSET = 2208988800
_SENDER = "_RTCRtpSender__"
_DTLS = "_RTCDtlsTransport__"
#: the private names ``RtpWriter.write`` reads and keeps, spelt out once (not per packet)
_STARTED, _TRANSPORT, _TRACK = _SENDER + "started", _SENDER + "transport", _SENDER + "track"
_NTP, _RTP_TIMESTAMP = _SENDER + "ntp_timestamp", _SENDER + "rtp_timestamp"
_OCTETS, _PACKETS = _SENDER + "octet_count", _SENDER + "packet_count"
_TX_BYTES, _TX_PACKETS = _DTLS + "tx_bytes", _DTLS + "tx_packets"
_RX_BYTES, _RX_PACKETS = _DTLS + "rx_bytes", _DTLS + "rx_packets"


def pylibsrtp_supported(version: str = pylibsrtp.__version__) -> bool:
    return version.startswith(PYLIBSRTP_SUPPORTED)


class Srtp:
    """One pylibsrtp ``Session``, protecting and unprotecting straight through libsrtp (see the
    module doc): the same context, the same buffer, the same bytes out. A packet libsrtp
    refuses (a replay, a failed authentication, too long for the buffer) gives None, and the
    caller drops it as aiortc does. On a pylibsrtp this module does not know, the session's own
    methods do the work."""

    __slots__ = ("_buffer", "_cdata", "_context", "_length", "session")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session
        self._context: Any = None
        if pylibsrtp_supported():
            self._context = session._srtp[0]
            self._cdata = session._cdata
            self._buffer = session._buffer
            self._length = _srtp_ffi.new("int *")

    @classmethod
    def over(cls, cached: Srtp | None, session: pylibsrtp.Session) -> Srtp:
        """``cached`` while it is still over ``session`` (a transport's SRTP session is set once
        its DTLS handshake completes), else a new one over it."""
        return cached if cached is not None and cached.session is session else cls(session)

    def protect(self, packet: bytes) -> bytes | None:
        if self._context is None:
            return self._through_session(self.session.protect, packet)
        return self._process(packet, _srtp_lib.srtp_protect, pylibsrtp.SRTP_MAX_TRAILER_LEN)

    def unprotect(self, packet: bytes) -> bytes | None:
        if self._context is None:
            return self._through_session(self.session.unprotect, packet)
        return self._process(packet, _srtp_lib.srtp_unprotect, 0)

    def _process(self, packet: bytes, function: Any, trailer: int) -> bytes | None:
        size = len(packet)
        if size > len(self._buffer) - trailer:
            return None
        _srtp_ffi.memmove(self._cdata, packet, size)
        length = self._length
        length[0] = size
        status = function(self._context, self._cdata, length)
        if status:
            log.debug("SRTP refused a packet: %s", pylibsrtp.ERRORS[status])
            return None
        return self._buffer[0 : length[0]]  # type: ignore[no-any-return]

    @staticmethod
    def _through_session(method: Callable[[bytes], bytes], packet: bytes) -> bytes | None:
        try:
            return method(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            log.debug("SRTP refused a packet: %s", exc)
            return None


class RtpWriter:
    """Sends pre-encoded audio through ``sender`` at once (see the module doc).

    ``write`` returns False while the sender cannot send (not started yet, DTLS or ICE not
    connected, or closed), and the caller keeps the packet; the sender's own loop must not send
    on this track meanwhile (it would start another sequence). No retransmission history is
    kept: aiortc retransmits only on NACK, which ``for_sender`` refuses.
    """

    def __init__(self, sender: RTCRtpSender, payload_type: int) -> None:
        self._sender = sender
        self._state = vars(sender)
        self._payload_type = payload_type
        self._sequence = random16() % 32768  # aiortc's random_sequence_number()
        self._origin = random32()
        #: the header's first byte and its extension block, once the sender has started
        self._first: int | None = None
        self._extension = b""
        self._srtp: Srtp | None = None
        self._ssrc: int = sender._ssrc

    @classmethod
    def for_sender(
        cls, sender: RTCRtpSender, codec: RTCRtpCodecParameters | None
    ) -> RtpWriter | None:
        """A writer for ``sender`` sending ``codec``, or None where the sender's loop must send
        (an unsupported aiortc, a codec with NACK, which needs the loop's history)."""
        if codec is None or codec.payloadType is None:
            return None
        if not version_supported() or not ice.aioice_supported():
            return None
        if any(feedback.type == "nack" for feedback in codec.rtcpFeedback):
            return None
        return cls(sender, codec.payloadType)

    def sends(self, track: object) -> bool:
        """Whether ``track`` is still the sender's (a ``replaceTrack`` may have moved it)."""
        return self._state[_TRACK] is track

    def _start(self) -> bool:
        extensions = self._state[_SENDER + "rtp_header_extensions_map"]
        mid = self._state[_SENDER + "mid"]
        # The loop also stamps abs-send-time per packet; aiortc negotiates it only for video.
        per_packet = HeaderExtensions(mid=mid, abs_send_time=0)
        profile, value = extensions.set(HeaderExtensions(mid=mid))
        if extensions.set(per_packet) != (profile, value):
            return False
        self._first = 0x80 | (0x10 if value else 0)
        if value:
            self._extension = struct.pack("!HH", profile, len(value) >> 2) + value
        return True

    def write(self, payload: bytes, pts: int) -> bool:
        state = self._state
        if not state[_STARTED]:
            return False
        dtls: RTCDtlsTransport = state[_TRANSPORT]
        if dtls._state is not DtlsState.CONNECTED:
            return False
        # what RTCIceTransport._send does, without its three coroutine frames
        pair = dtls._transport._connection._nominated.get(1)
        if pair is None or (self._first is None and not self._start()):
            return False
        srtp = self._srtp = Srtp.over(self._srtp, dtls._tx_srtp)
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        data = srtp.protect(
            _RTP_HEADER.pack(
                self._first, 0x80 | self._payload_type, self._sequence, timestamp, self._ssrc
            )
            + self._extension
            + payload
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        if data is None:
            return True  # refused (too long for libsrtp's buffer, as no Opus packet is): lost
        pair.protocol.transport.sendto(data, pair.remote_addr)
        # aiortc.clock.current_ntp_time() without datetime objects, to within a microsecond
        state[_NTP] = int((time.time() + _NTP_OFFSET) * 4294967296)
        state[_RTP_TIMESTAMP] = timestamp
        state[_OCTETS] += len(payload)
        state[_PACKETS] += 1
        transport = vars(dtls)
        transport[_TX_BYTES] += len(data)
        transport[_TX_PACKETS] += 1
        return True


def receive_directly(receiver: RTCRtpReceiver) -> None:
    """Handle the SRTP that reaches ``receiver``'s transport as it arrives (see the module
    doc); idempotent, and a no-op on an unsupported aiortc or aioice."""
    if not version_supported() or not ice.aioice_supported():
        return
    dtls = receiver.transport
    connection = dtls.transport._connection
    if getattr(connection.data_received, "direct", False):
        return
    queued = connection.data_received
    pending = connection._queue
    srtp: Srtp | None = None

    def data_received(data: bytes, component: int) -> None:
        nonlocal srtp
        # RFC 7983: 128-191 is RTP or RTCP; RTCP's packet types are 192-208 (aiortc's is_rtcp)
        if (
            127 < data[0] < 192
            and not 191 < data[1] < 209
            and dtls._state is DtlsState.CONNECTED
            and dtls._rx_srtp is not None
            and pending.empty()  # nothing received before it still waits for the task
        ):
            srtp = Srtp.over(srtp, dtls._rx_srtp)
            _handle_srtp(dtls, srtp, data)
        else:
            queued(data, component)

    data_received.direct = True  # type: ignore[attr-defined]
    connection.data_received = data_received  # type: ignore[method-assign]


def _handle_srtp(dtls: RTCDtlsTransport, srtp: Srtp, data: bytes) -> None:
    """``RTCDtlsTransport._recv_next`` for one SRTP packet, run to completion now."""
    transport = vars(dtls)
    transport[_RX_BYTES] += len(data)
    transport[_RX_PACKETS] += 1
    plain = srtp.unprotect(data)
    if plain is None:
        return
    if _tap_directly(dtls, plain):
        return
    arrival_ms = (int(time.time() * 1000)) + _NTP_OFFSET * 1000  # aiortc.clock.current_ms()
    _run_now(dtls._handle_rtp_data(plain, arrival_time_ms=arrival_ms))


_RECEIVER = "_RTCRtpReceiver__"
_KIND, _REMOTE_STREAMS = _RECEIVER + "kind", _RECEIVER + "remote_streams"
_ACTIVE_SSRC = _RECEIVER + "active_ssrc"


def _tap_directly(dtls: RTCDtlsTransport, plain: bytes) -> bool:
    """Hand ``plain`` (decrypted RTP) to its receiver's ``PacketTap`` as aiortc's
    ``_handle_rtp_data`` would, or return False for aiortc to handle it.

    Only for what aiortc would route by SSRC alone to an audio receiver with a tap, whose
    statistics it has already started (its first packet from that source): then aiortc's
    handling is, in order, the active-source time, the statistics, and the tap. Header
    extensions are skipped unread (an audio receiver reads none).
    """
    if len(plain) < 12 or plain[0] & 0xEF != 0x80:  # not V=2 with no padding and no CSRC
        return False
    second, sequence, timestamp, ssrc = _RTP_FIXED.unpack_from(plain)
    start = 12
    if plain[0] & 0x10:
        if len(plain) < 16:
            return False
        start = 16 + 4 * _EXTENSION_LENGTH.unpack_from(plain, 14)[0]
        if len(plain) < start:
            return False
    router = dtls._rtp_router
    receiver = router.ssrc_table.get(ssrc)
    payload_type = second & 0x7F
    if receiver is None or receiver not in router.payload_type_table.get(payload_type, ()):
        return False
    state = vars(receiver)
    tap = state[JITTER_BUFFER_ATTRIBUTE]
    stats = state[_REMOTE_STREAMS].get(ssrc)
    if type(tap) is not PacketTap or stats is None or state[_KIND] != "audio":
        return False
    if state["_enabled"]:
        packet = RtpPacket(payload_type, second >> 7, sequence, timestamp, ssrc, plain[start:])
        state[_ACTIVE_SSRC][ssrc] = aiortc.clock.current_datetime()
        stats.add(packet)
        tap.on_packet(packet)
    return True


#: the tasks ``_run_now`` started, held until they end (the loop keeps only weak references)
_carrying: set[asyncio.Future[None]] = set()


def _run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` here until it ends or waits; if it waits (it does not for audio: its
    awaits are aiortc's sends, which never suspend), a task carries it on."""
    try:
        waited = coroutine.send(None)
    except StopIteration:
        return
    task = asyncio.ensure_future(_carry_on(coroutine, waited))
    _carrying.add(task)
    task.add_done_callback(_carrying.discard)


async def _carry_on(coroutine: Coroutine[Any, Any, None], waited: Any) -> None:
    while True:
        if waited is None:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(BaseException):
                await waited  # the coroutine reads the outcome itself once resumed
        try:
            waited = coroutine.send(None)
        except StopIteration:
            return
