"""Real-browser fixtures: Debian's Chromium driven by Playwright, and a gateway on loopback.

Nothing here downloads a browser: Playwright only drives ``/usr/bin/chromium`` (``scripts/test``
installs Debian's package when it is missing). The browser hears a WAV this module writes —
speech-like syllables, then a pause, looped by Chromium — so that the simulated interviewer's
voice-activity detector sees the candidate take turns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from gateway.app import DATABASE, JWT_SECRET, WRITER, create_app
from gateway.config import Settings
from gateway.sessions.invitations import Invitation, invite
from gateway.sessions.session import InterviewSession
from gateway.sim.speech import SAMPLE_RATE, synthesize
from storage import interviews, tenants
from storage.transcripts import TranscriptRow, read_transcript

from .netns import splice

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: A phone-sized viewport: the room must be usable there.
PHONE = {"width": 390, "height": 844}

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
]


#: Every browser test carries this: its markers (a browser test is slow too), and a clear skip
#: when there is no Chromium.
browser_test = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium",
    ),
]


def write_speech_wav(path: Path) -> Path:
    """Two seconds or so of speech-like sound, then 1.5 s of silence: one turn per loop."""
    speech = synthesize(
        "I have worked on realtime systems and I enjoy debugging hard problems",
        words_per_second=4.0,
        pitch_hz=190.0,
    )
    silence = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.int16)
    samples = np.concatenate([silence[: SAMPLE_RATE // 2], speech, silence])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    return write_speech_wav(tmp_path / "candidate.wav")


LaunchBrowser = Callable[..., Awaitable[Browser]]


@pytest.fixture
async def launch_browser(speech_wav: Path) -> AsyncIterator[LaunchBrowser]:
    """Start Chromium; ``microphone="deny"`` makes every getUserMedia fail as if refused, and
    ``executable`` may be a wrapper that runs Chromium somewhere else (a network namespace)."""
    async with async_playwright() as playwright:
        browsers: list[Browser] = []

        async def launch(microphone: str = "allow", executable: str | Path = CHROMIUM) -> Browser:
            fake_ui = "--use-fake-ui-for-media-stream"
            args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}"]
            args.append(fake_ui if microphone == "allow" else f"{fake_ui}=deny")
            browser = await playwright.chromium.launch(executable_path=executable, args=args)
            browsers.append(browser)
            return browser

        try:
            yield launch
        finally:
            for browser in browsers:
                await browser.close()


#: Connecting takes well under a second; the margin is for a loaded 2-core CI machine.
expect.set_options(timeout=20_000)


async def phone_page(browser: Browser) -> Page:
    """A phone-sized page whose console output lands in the test's captured stdout."""
    page = await browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page.set_default_timeout(20_000)
    page.on("console", lambda msg: print(f"browser console [{msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: print(f"browser page error: {exc}"))
    return page


@dataclass
class Gateway:
    app: web.Application
    base_url: str
    tenant_id: UUID
    upstream: str

    async def invite(self, mode: str, *, ttl: float = 3600) -> Invitation:
        return await invite(
            self.app[DATABASE], self.app[JWT_SECRET], self.tenant_id, mode=mode, ttl=ttl
        )

    async def flush_transcripts(self) -> None:
        await self.app[WRITER].flush()

    async def ran_to_its_end(
        self, page: Page, session: InterviewSession, interview_id: UUID, within: float
    ) -> list[TranscriptRow]:
        """The interview's closing line ended it within ``within`` seconds, the page says so,
        its row says ``ended``/``interview_complete``, and no line was stored twice: the lines."""
        await asyncio.wait_for(session.ended.wait(), within)
        await expect(page.get_by_role("status").last).to_contain_text(
            "The interviewer has finished"
        )
        db = self.app[DATABASE]
        record = await interviews.get_session(db, self.tenant_id, interview_id)
        assert record is not None
        assert (record.status, record.end_reason) == ("ended", "interview_complete")
        await self.flush_transcripts()
        rows = await read_transcript(db, self.tenant_id, interview_id)
        assert len({row.event_id for row in rows}) == len(rows), "a line was stored twice"
        return rows


@pytest.fixture
def gateway_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings a test changes (``@pytest.mark.parametrize("gateway_options", [{...}],
    indirect=True)``, or a fixture of that name in the test's module); ``upstream="sim-live"``
    makes the simulated upstream speak GPT-Live instead of the Realtime contract."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def gateway(
    fresh_database_url: str, tmp_path: Path, gateway_options: dict[str, Any]
) -> AsyncIterator[Gateway]:
    """The whole gateway in this process (simulated upstream included), ICE on 127.0.0.1."""
    settings = Settings(
        data_dir=tmp_path / "gateway",
        database_url=fresh_database_url,
        jwt_secret="browser-tests-secret-" + "x" * 32,
        ice_addresses=("127.0.0.1",),
        **gateway_options,
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        tenant_id = await tenants.create_tenant(app[DATABASE], "browser-tests")
        yield Gateway(app, f"http://127.0.0.1:{port}", tenant_id, settings.upstream)
    finally:
        await runner.cleanup()


class CuttableLink:
    """A loopback TCP forwarder to the gateway whose live connections the test can cut at once:
    to the browser that is a network loss (the signaling socket dies without a close frame),
    while new connections still get through, as when the network comes back. ``stall`` is the
    quieter loss: the live connections stay open but carry nothing more, either way (a path
    that silently drops everything, as a dead Wi-Fi does), so only liveness can notice it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()

    def stall(self) -> None:
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.pause_reading()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_writer))
        try:
            await splice((reader, writer), (up_reader, up_writer))
        finally:
            self._writers.difference_update((writer, up_writer))


@pytest.fixture
async def cuttable_link(gateway: Gateway) -> AsyncIterator[CuttableLink]:
    link = CuttableLink(int(gateway.base_url.rsplit(":", 1)[1]))
    await link.start()
    try:
        yield link
    finally:
        await link.close()
