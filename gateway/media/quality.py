"""Call quality as the relay sees it: each leg's network from aiortc's statistics (RTCP
included), and each turn's response latency, measured where the gateway stands.

A leg's sample (``LegMeter.sample``): round-trip time from the peer's receiver reports
(``remote-inbound-rtp``), jitter and loss of what the peer sends us (``inbound-rtp``; loss over
the interval since the last sample), and bitrate both ways: what we sent over that interval,
and what the peer's sender reports say it sent between the last two reports (None while no new
report came: they arrive every 2.5-7.5 s, as libwebrtc sends them for audio and as the
relay's own do, ``aiortc_internals``, so a sample often brings none).
Audio only: these are voice calls.

A turn's latency (``TurnTimer``): from the candidate's end of speech as the upstream announces
it to the first packet of the interviewer's voice the relay forwards after it. On Realtime the
end of speech is ``input_audio_buffer.speech_stopped`` on the data channel, timed as it
arrives. GPT-Live has no such event (nor any turn or VAD event: ``openai.types.live``); what
it has is ``session.input_transcript.delta``, whose ``end_ms`` says where on the session
timeline the candidate's words end. So on GPT-Live the last such fragment before the
interviewer answers gives the end of speech, placed on the gateway's clock through the
timeline's origin: each timed event (input or output fragment) arrives no earlier than its
``end_ms``, so the least ``arrival - end_ms`` seen so far is the origin, late by at most the
fastest event's delivery (the interviewer's own fragments, sent as its words are played).
Nothing is decoded, so "voice" is told by size: an Opus packet of at least ``VOICE_BYTES``
carries sound (an encoder spends a few bytes on a silent 20 ms frame, and a sender keeps
sending those between turns). That is the delay the candidate hears, less the browser leg's
own transit (and on GPT-Live it includes the upstream's wait for silence after the words,
which Realtime's ``speech_stopped`` is sent after).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCRemoteOutboundRtpStreamStats,
)

from gateway.media.forwarding import OPUS_RATE
from storage.quality import LegSample

#: The upstream event that marks the candidate's end of speech.
SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
#: GPT-Live's timed transcript fragments: the candidate's (the end of speech) and the
#: interviewer's (which, sent as its words play, pin the timeline's origin closely).
LIVE_INPUT_DELTA = "session.input_transcript.delta"
LIVE_OUTPUT_DELTA = "session.output_transcript.delta"
_MARKERS = ("speech_stopped", LIVE_INPUT_DELTA, LIVE_OUTPUT_DELTA)
_BYTE_MARKERS = tuple(marker.encode() for marker in _MARKERS)
#: The least Opus payload counted as sound, not the few bytes of a silent frame.
VOICE_BYTES = 24


@dataclass(frozen=True, slots=True)
class _Counters:
    at: float
    received: int
    lost: int
    bytes_out: int
    bytes_in: int


class LegMeter:
    """One leg's samples; each covers the interval since the previous one."""

    def __init__(self, leg: str) -> None:
        self.leg = leg
        self._last: _Counters | None = None
        #: (when, bytes) of the last sender report that brought news
        self._report_in: tuple[float, int] | None = None

    async def sample(self, pc: RTCPeerConnection) -> LegSample:
        report = await pc.getStats()
        rtt: list[float] = []
        jitter: list[float] = []
        received = lost = bytes_out = bytes_in = 0
        for stats in report.values():
            if getattr(stats, "kind", "audio") != "audio":
                continue
            if isinstance(stats, RTCRemoteInboundRtpStreamStats) and stats.roundTripTime:
                rtt.append(stats.roundTripTime * 1000)
            elif isinstance(stats, RTCInboundRtpStreamStats):
                jitter.append(stats.jitter * 1000 / OPUS_RATE)
                received += stats.packetsReceived
                lost += max(stats.packetsLost, 0)
            elif isinstance(stats, RTCOutboundRtpStreamStats):
                bytes_out += stats.bytesSent
            elif isinstance(stats, RTCRemoteOutboundRtpStreamStats):
                bytes_in += stats.bytesSent
        now = _Counters(time.monotonic(), received, lost, bytes_out, bytes_in)
        last, self._last = self._last, now
        loss = bitrate_in = bitrate_out = None
        base = last or _Counters(now.at, 0, 0, 0, 0)
        expected = (now.received - base.received) + (now.lost - base.lost)
        if expected > 0:
            loss = (now.lost - base.lost) / expected
        if last is not None and now.at > last.at:
            seconds = now.at - last.at
            bitrate_out = max(now.bytes_out - last.bytes_out, 0) * 8 / 1000 / seconds
        if self._report_in is None or now.bytes_in != self._report_in[1]:
            if self._report_in is not None and now.at > self._report_in[0]:
                seconds = now.at - self._report_in[0]
                bitrate_in = max(now.bytes_in - self._report_in[1], 0) * 8 / 1000 / seconds
            self._report_in = (now.at, now.bytes_in)
        return LegSample(
            self.leg,
            rtt_ms=max(rtt) if rtt else None,
            jitter_ms=max(jitter) if jitter else None,
            loss=loss,
            bitrate_in_kbps=bitrate_in,
            bitrate_out_kbps=bitrate_out,
        )


class TurnTimer:
    """Each turn's response latency, in ms: end of speech to the interviewer's next packet."""

    def __init__(self) -> None:
        #: the candidate's end of speech on the gateway's clock, while a turn waits for voice
        self._since: float | None = None
        #: GPT-Live: the session timeline's origin on the gateway's clock (least estimate)
        self._origin: float | None = None
        self._turns: list[float] = []

    def upstream_event(self, message: str | bytes) -> None:
        """Every upstream event passes here; only the end of speech (and, on GPT-Live, timed
        fragments) are read, after a cheap test: this is the data channel's path."""
        if isinstance(message, bytes):
            if not any(marker in message for marker in _BYTE_MARKERS):
                return
        elif not any(marker in message for marker in _MARKERS):
            return
        arrived = time.monotonic()
        try:
            event = json.loads(message)
            kind = event.get("type")
        except (ValueError, AttributeError):
            return
        if kind == SPEECH_STOPPED:
            self._since = arrived
        elif kind in (LIVE_INPUT_DELTA, LIVE_OUTPUT_DELTA):
            end_ms = event.get("end_ms")
            if not isinstance(end_ms, int) or isinstance(end_ms, bool):
                return
            origin = arrived - end_ms / 1000
            if self._origin is None or origin < self._origin:
                self._origin = origin
            if kind == LIVE_INPUT_DELTA:
                self._since = self._origin + end_ms / 1000

    def interviewer_packet(self, payload: bytes, pts: int) -> None:
        """A subscriber of the interviewer's forwarder."""
        if self._since is not None and len(payload) >= VOICE_BYTES:
            self._turns.append(max(0.0, time.monotonic() - self._since) * 1000)
            self._since = None

    def take(self) -> list[float]:
        """The turns measured since the last call."""
        turns, self._turns = self._turns, []
        return turns
