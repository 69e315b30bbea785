"""A headless candidate: an aiortc peer that takes an interview the way a browser would.

It signals over the real WebSocket protocol, offers audio plus the ``oai-events`` data channel,
and answers each of the interviewer's turns with a spoken, scripted answer: when the upstream
says a response is done (Realtime's ``response.done`` on the data channel, status
``completed``: a cancelled one asked nothing), it speaks the next answer; after the
interviewer's closing turn it says ``bye``. GPT-Live marks no end of a turn (the candidate
knows it is on GPT-Live from ``session.started``), so there it answers as a person would, once
the interviewer has spoken and then been quiet for ``QUIET_MS`` of the audio it receives.
Silence is measured in received audio, not wall-clock time, so a stalled process (a loaded
machine) cannot make it answer in the middle of a question. Used by ``simulate``, the
benchmarks and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from gateway.media import ice
from gateway.sim.speech import SpeechTrack
from gateway.upstream.openai import EVENTS_LABEL
from signaling.client import SignalingClient

#: How much silent audio from a GPT-Live interviewer, once it has spoken, ends its turn.
QUIET_MS = 1500
#: Received-audio RMS (16-bit samples) above which a frame is speech, below which silence.
SPEECH_RMS, SILENCE_RMS = 300.0, 30.0


@dataclass
class CandidateReport:
    """What one headless interview saw; ``error`` is None when it completed."""

    interview_id: str
    mode: str | None = None
    setup_ms: float | None = None
    answers_spoken: int = 0
    interviewer_turns: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    audio_frames_received: int = 0
    states: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None


class SmallCamera(VideoStreamTrack):
    """aiortc's synthetic camera (a flat picture at 30 fps) at 160x120 rather than its
    640x480: a headless candidate's encoder (libvpx, libx264) then costs its machine little,
    so that simulations and tests on a small machine measure the gateway, not the encoder."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = time_base
        return frame


class HeadlessCandidate:
    def __init__(
        self,
        signal_url: str,
        token: str,
        *,
        interview_id: str,
        answers: Sequence[str],
        ice_addresses: Sequence[str] = ("127.0.0.1",),
        words_per_second: float = 6.0,
        seed: int = 0,
        video: bool | str = False,
    ) -> None:
        self.signal_url = signal_url
        self.token = token
        self.answers = list(answers)
        self.ice_addresses = ice_addresses
        self.report = CandidateReport(interview_id=interview_id)
        self._wps, self._seed = words_per_second, seed
        #: whether it sends a camera too (``SmallCamera``), and in which
        #: codec: True for aiortc's first (VP8), or a MIME type it offers alone (``video/H264``)
        self.video = video
        self.speech = SpeechTrack(words_per_second=words_per_second, seed=seed, pitch_hz=190.0)
        self.client: SignalingClient | None = None
        #: from the first welcome: what a reconnect presents to rejoin the session
        self.reconnect_secret: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        #: GPT-Live: turns are heard, not announced (see the module docstring)
        self._turns_by_ear = False
        self._interviewer_spoke = False
        self._quiet_ms = 0.0
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, time_limit: float = 60.0) -> CandidateReport:
        """Take the whole interview; never raises, the outcome is in the report."""
        try:
            async with asyncio.timeout(time_limit):
                await self.connect()
                await self.converse()
                assert self.client is not None
                await self.client.bye()
        except TimeoutError:
            self.report.error = f"interview did not finish within {time_limit:.0f} s"
        except Exception as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
        finally:
            await self.close()
        return self.report

    async def connect(self, *, reconnect: bool = False) -> None:
        """Signal, offer and wait until the peer connection is connected (``setup_ms``).

        With ``reconnect``, a new socket and a new peer connection join the same session,
        as a browser does after a network loss.
        """
        loop = asyncio.get_running_loop()
        connected = loop.create_future()
        started = time.perf_counter()
        if reconnect:
            await self.close()
            self.speech = SpeechTrack(words_per_second=self._wps, seed=self._seed, pitch_hz=190.0)
        self.client = SignalingClient()
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        welcome = await self.client.connect(
            self.signal_url, self.token, reconnect_secret=self.reconnect_secret
        )
        self.reconnect_secret = welcome.get("reconnect_secret")
        pc.addTrack(self.speech)
        if self.video:
            sender = pc.addTrack(SmallCamera())
            camera = next(t for t in pc.getTransceivers() if t.sender is sender)
            if isinstance(self.video, str):
                camera.setCodecPreferences(
                    [
                        codec
                        for codec in RTCRtpSender.getCapabilities("video").codecs
                        if codec.mimeType.lower() == self.video.lower()
                    ]
                )
        self.channel = pc.createDataChannel(EVENTS_LABEL)
        self.channel.on("message", self._on_event)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState == "connected" and not connected.done():
                connected.set_result(None)
            elif pc.connectionState == "failed" and not connected.done():
                connected.set_exception(ConnectionError("peer connection failed"))

        pc.on("track", self._drain)
        with ice.host_addresses(self.ice_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        answer = await self.client.offer(pc.localDescription.sdp, reconnect=reconnect)
        self.report.mode = answer["mode"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await self.client.end_of_candidates()  # aiortc put all of its candidates in the offer
        await connected
        self.report.setup_ms = (time.perf_counter() - started) * 1000
        self._spawn(self._listen(self.client))

    async def converse(self) -> None:
        """Answer every question; return after the interviewer's closing turn."""
        await self._finished
        if self.report.error is not None:
            raise RuntimeError(self.report.error)

    async def close(self) -> None:
        """Drop everything at once, without a bye (what a lost network looks like)."""
        for task in list(self._tasks):
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.client is not None:
            await self.client.close()
        self.speech.stop()

    async def _listen(self, client: SignalingClient) -> None:
        async for message in client:
            if message["type"] == "transcript" and message.get("final"):
                self.report.transcript.append(message)
            elif message["type"] == "state":
                self.report.states.append(message["state"])
                if message["state"] in ("ended", "failed"):
                    self._finish(f"session {message['state']}: {message.get('detail')}")
            elif message["type"] == "bye":
                self._finish(f"the gateway said bye: {message.get('reason')}")
            elif message["type"] == "error" and message.get("fatal"):
                self._finish(f"signaling error {message.get('code')}: {message.get('message')}")

    def _on_event(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        kind = event.get("type")
        response = event.get("response")
        if kind == "response.done" and isinstance(response, dict):
            if response.get("status") == "completed":  # a cancelled one asked nothing
                self._interviewer_done()
        elif kind == "session.started":
            self._turns_by_ear = True

    def _hear(self, frame: av.AudioFrame) -> None:
        """Follow the interviewer's audio: once it has spoken, ``QUIET_MS`` of silence ends
        its turn."""
        rms = float(np.sqrt(np.mean(frame.to_ndarray().astype(np.float64) ** 2)))
        if rms > SPEECH_RMS:
            self._interviewer_spoke, self._quiet_ms = True, 0.0
        elif rms < SILENCE_RMS and self._interviewer_spoke:
            self._quiet_ms += 1000 * frame.samples / frame.sample_rate
            if self._quiet_ms >= QUIET_MS:
                self._interviewer_spoke = False
                self._interviewer_done()

    def _interviewer_done(self) -> None:
        self.report.interviewer_turns += 1
        if self.answers:
            self._spawn(self._answer(self.answers.pop(0)))
        else:
            self._finish(None)

    async def _answer(self, text: str) -> None:
        await self.speech.say(text)
        self.report.answers_spoken += 1

    def _finish(self, error: str | None) -> None:
        if not self._finished.done():
            if error is not None:
                self.report.error = error
            self._finished.set_result(None)

    def _drain(self, track: MediaStreamTrack) -> None:
        """Play the AI's audio into nothing, counting frames (a browser would play it)."""

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    self.report.audio_frames_received += 1
                    if self._turns_by_ear and isinstance(frame, av.AudioFrame):
                        self._hear(frame)

        self._spawn(drain())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
