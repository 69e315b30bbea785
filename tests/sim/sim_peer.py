"""Helpers for the simulated-upstream tests: a real aiortc offerer and the HTTP request shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media.ice import host_addresses
from gateway.sim.speech import SpeechTrack
from gateway.upstream.openai import EVENTS_LABEL

API_KEY = "sk-test-simulated-upstream-key"
TRANSCRIPTION = {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
SPEED = 16.0  # words per second, for the interviewer and the candidate: a quick interview
WAIT = 20.0  # seconds: the limit on any one wait, never a sleep


class Offerer:
    """What the gateway's upstream leg (or a browser) is to the sim: audio + ``oai-events``."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.voice = SpeechTrack(words_per_second=SPEED, pitch_hz=210.0, seed=7)
        self.pc.addTrack(self.voice)
        self.channel = self.pc.createDataChannel(EVENTS_LABEL)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.events: list[dict[str, Any]] = []
        self.frame_rms: list[float] = []  # of each audio frame received from the sim
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    async def offer(self) -> str:
        offer = await self.pc.createOffer()
        with host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def _on_message(self, message: str | bytes) -> None:
        self.events.append(json.loads(message))
        self._changed.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float64)  # type: ignore[union-attr]
                self.frame_rms.append(float(np.sqrt(np.mean(samples**2))))
        except MediaStreamError:
            pass

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        async def until() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), WAIT)
        except TimeoutError:
            types = [e["type"] for e in self.events]
            raise AssertionError(f"timed out waiting for {what}; events: {types}") from None

    async def wait_count(self, event_type: str, count: int) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.of_type(event_type)) >= count, f"{count} {event_type}")
        return self.of_type(event_type)

    async def close(self) -> None:
        self.voice.stop()
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def offer_form(sdp: str, session: dict[str, Any] | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("sdp", sdp, content_type="application/sdp")
    if session is not None:
        form.add_field("session", json.dumps(session), content_type="application/json")
    return form


async def post_call(
    http: aiohttp.ClientSession, base_url: str, sdp: str, session: dict[str, Any] | None
) -> aiohttp.ClientResponse:
    """POST an offer with a standard key, the unified interface (multipart)."""
    return await http.post(
        f"{base_url}/realtime/calls", data=offer_form(sdp, session), headers=auth()
    )
