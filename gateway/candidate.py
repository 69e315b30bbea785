"""A headless candidate: an aiortc peer that takes an interview the way a browser would.

It signals over the real WebSocket protocol, offers audio plus the ``oai-events`` data channel,
and answers each of the interviewer's turns with a spoken, scripted answer: when the upstream
says a response is done (``response.done`` on the data channel), it speaks the next answer; after
the interviewer's closing turn it says ``bye``. Used by ``simulate``, the benchmarks and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway import ice
from gateway.speech import SpeechTrack
from signaling.client import SignalingClient


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
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None


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
    ) -> None:
        self.signal_url = signal_url
        self.token = token
        self.answers = list(answers)
        self.ice_addresses = ice_addresses
        self.report = CandidateReport(interview_id=interview_id)
        self.speech = SpeechTrack(words_per_second=words_per_second, seed=seed, pitch_hz=190.0)
        self._finished: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, time_limit: float = 60.0) -> CandidateReport:
        """Take the whole interview; never raises, the outcome is in the report."""
        try:
            await asyncio.wait_for(self._interview(), time_limit)
        except TimeoutError:
            self.report.error = f"interview did not finish within {time_limit:.0f} s"
        except Exception as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
        return self.report

    async def _interview(self) -> None:
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        connected = loop.create_future()
        started = time.perf_counter()
        client = SignalingClient()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            await client.connect(self.signal_url, self.token)
            pc.addTrack(self.speech)
            channel = pc.createDataChannel("oai-events")
            channel.on("message", self._on_event)

            @pc.on("connectionstatechange")
            def _on_state() -> None:
                if pc.connectionState == "connected" and not connected.done():
                    connected.set_result(None)
                elif pc.connectionState == "failed" and not connected.done():
                    connected.set_exception(ConnectionError("peer connection failed"))

            pc.on("track", self._drain)
            with ice.host_addresses(self.ice_addresses):
                await pc.setLocalDescription(await pc.createOffer())
            answer = await client.offer(pc.localDescription.sdp)
            self.report.mode = answer["mode"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            await client.end_of_candidates()  # aiortc put all of its candidates in the offer
            await connected
            self.report.setup_ms = (time.perf_counter() - started) * 1000
            listener = asyncio.create_task(self._listen(client))
            try:
                await self._finished
            finally:
                listener.cancel()
            await client.bye()
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.speech.stop()
            await pc.close()
            await client.close()

    async def _listen(self, client: SignalingClient) -> None:
        async for message in client:
            if message["type"] == "transcript" and message.get("final"):
                self.report.transcript.append(message)
            elif message["type"] == "state" and message.get("state") in ("ended", "failed"):
                self._finish(f"session {message['state']}: {message.get('detail')}")
            elif message["type"] == "error" and message.get("fatal"):
                self._finish(f"signaling error {message.get('code')}: {message.get('message')}")

    def _on_event(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if event.get("type") != "response.done":
            return
        self.report.interviewer_turns += 1
        if self.answers:
            self._spawn(self._answer(self.answers.pop(0)))
        else:
            self._finish(None)

    async def _answer(self, text: str) -> None:
        await self.speech.say(text)
        self.report.answers_spoken += 1

    def _finish(self, error: str | None) -> None:
        if self._finished is not None and not self._finished.done():
            if error is not None:
                self.report.error = error
            self._finished.set_result(None)

    def _drain(self, track: MediaStreamTrack) -> None:
        """Play the AI's audio into nothing, counting frames (a browser would play it)."""

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.report.audio_frames_received += 1

        self._spawn(drain())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
