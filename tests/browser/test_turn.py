"""TURN for browsers against a real coturn: a candidate whose network has no route to the gateway
still holds the whole interview, over relay candidates, with credentials the gateway minted for
that interview; and coturn itself refuses an expired one."""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID

import pytest
from aioice import stun, turn
from playwright.async_api import expect

from gateway.sim.script import Script
from signaling.turn import mint_credential
from storage import interviews
from storage.database import open_database

from .conftest import LaunchBrowser, browser_test, phone_page
from .netns import (
    CANDIDATE_ADDRESS,
    GATEWAY_ADDRESS,
    TURN_ADDRESS,
    TURN_PORT,
    Bridge,
    Coturn,
    Namespace,
    Output,
    Topology,
    can_make_namespaces,
    isolated_sides,
    stop,
)

pytestmark = browser_test

GATEWAY_PORT = 8080
#: The type of the local candidate in the pair the page's peer connection selected (getStats).
SELECTED_LOCAL_CANDIDATE_TYPE = """async () => {
  const stats = await interviewClient.peerConnection.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      pair = stats.get(r.selectedCandidatePairId);
    }
  });
  return pair ? stats.get(pair.localCandidateId).candidateType : null;
}"""


@pytest.fixture
def sides() -> Iterator[Topology]:
    if shutil.which("turnserver") is None:
        pytest.skip("no coturn: apt-get install coturn (scripts/test does, as root)")
    if not can_make_namespaces():
        pytest.skip("network namespaces need root and iproute2")
    with isolated_sides() as topology:
        yield topology


@pytest.fixture
async def coturn(sides: Topology, tmp_path: Path) -> AsyncIterator[Coturn]:
    server = Coturn(sides.turn, secrets.token_urlsafe(24), tmp_path)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


def allocate(username: str, password: str) -> tuple[str, int]:
    """A TURN allocation with these credentials; its relayed address (in the caller's
    namespace: run it through ``Namespace.run``)."""

    async def attempt() -> tuple[str, int]:
        transport, _ = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(TURN_ADDRESS, TURN_PORT),
            username=username,
            password=password,
        )
        try:
            return transport.get_extra_info("sockname")
        finally:
            transport.close()

    try:
        return asyncio.run(attempt())
    except stun.TransactionFailed as exc:
        # 438 Stale Nonce (RFC 5766 §4 via RFC 5389 §10.2.2): the server replaced the nonce
        # (a retransmitted request got a second 401); a client retries with the new one, which
        # aioice does not do itself. Any other refusal stands.
        if "438" not in str(exc):
            raise
        return asyncio.run(attempt())


async def test_coturn_takes_a_minted_credential_and_refuses_it_once_expired(
    sides: Topology, coturn: Coturn
) -> None:
    fresh = mint_credential(coturn.secret, "iv-1", ttl=600)
    relayed = await asyncio.wrap_future(
        sides.gateway.run(lambda: allocate(fresh.username, fresh.credential))
    )
    assert relayed[0] == TURN_ADDRESS
    # a minute ago: coturn reads its own clock, cached and advanced by its timers, which lags
    # the wall clock on a busy machine (a credential a second old was once still taken)
    expired = mint_credential(coturn.secret, "iv-1", ttl=-60)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await asyncio.wrap_future(
            sides.gateway.run(lambda: allocate(expired.username, expired.credential))
        )
    forged = mint_credential("not-" + coturn.secret, "iv-1", ttl=600)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await asyncio.wrap_future(
            sides.gateway.run(lambda: allocate(forged.username, forged.credential))
        )


def unreachable(ns: Namespace, address: str) -> bool:
    """True when ``ns`` has no route to ``address`` at all (the kernel says so at once)."""
    sock = ns.socket()
    try:
        sock.connect((address, GATEWAY_PORT))
    except OSError as exc:
        return exc.errno == errno.ENETUNREACH
    finally:
        sock.close()
    return False


def chromium_in(ns: Namespace, directory: Path) -> Path:
    """An executable that runs Debian's Chromium inside ``ns`` (for Playwright to launch)."""
    wrapper = directory / "chromium-in-netns"
    command = " ".join(ns.command(os.environ.get("CHROMIUM", "/usr/bin/chromium")))
    wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


async def test_a_candidate_with_no_route_to_the_gateway_interviews_over_turn(
    sides: Topology,
    coturn: Coturn,
    fresh_database_url: str,
    tmp_path: Path,
    launch_browser: LaunchBrowser,
) -> None:
    assert unreachable(sides.candidate, GATEWAY_ADDRESS)
    assert unreachable(sides.gateway, CANDIDATE_ADDRESS)
    data_dir = tmp_path / "gateway"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,  # a unix socket: no network namespace in the way
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_MODE": "relay",
        "GATEWAY_ICE_ADDRESSES": GATEWAY_ADDRESS,
        "GATEWAY_TURN_URLS": f"turn:{TURN_ADDRESS}:{TURN_PORT}?transport=udp",
        "GATEWAY_TURN_SECRET": coturn.secret,
    }
    process = await asyncio.create_subprocess_exec(
        *sides.gateway.command(sys.executable, "-m", "gateway.cli", "serve"),
        "--host", "127.0.0.1", "--port", str(GATEWAY_PORT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    printed, logged = Output(process.stdout), Output(process.stderr)
    bridge = Bridge(
        sides.candidate, ("127.0.0.1", GATEWAY_PORT), sides.gateway, ("127.0.0.1", GATEWAY_PORT)
    )
    try:
        async with asyncio.timeout(60):
            room = (await printed.wait_for("interview room: ")).split(": ", 1)[1].strip()
        await bridge.start()
        interview_id = UUID(room.split("/interview/")[1].split("#")[0])

        browser = await launch_browser(executable=chromium_in(sides.candidate, tmp_path))
        page = await phone_page(browser)
        await page.goto(room)  # http://127.0.0.1:8080 in the candidate's namespace: the bridge
        await page.get_by_role("button", name="Start interview").click()
        await expect(page.locator("#status")).to_have_text("Connected (relay)", timeout=30_000)
        servers = await page.evaluate(
            "interviewClient.peerConnection.getConfiguration().iceServers"
        )
        assert [s["username"].split(":", 1)[1] for s in servers] == [str(interview_id)]
        assert coturn.secret not in str(servers)
        # The browser's own view of the pair it uses: its end is a TURN relay candidate.
        assert await page.evaluate(SELECTED_LOCAL_CANDIDATE_TYPE) == "relay"

        # Both voices cross coturn: the interviewer's question, then the candidate's answer.
        script = Script.default()
        transcript = page.get_by_role("log")
        await expect(transcript.locator('li[data-role="interviewer"] .text').first).to_have_text(
            script.turns[0].question, timeout=30_000
        )
        await expect(transcript.locator('li[data-role="candidate"] .text').first).to_have_text(
            script.turns[0].answer, timeout=45_000
        )
        await page.get_by_role("button", name="End interview").click()
        async with asyncio.timeout(20):
            await logged.wait_for("session ended: bye")
        process.send_signal(signal.SIGINT)  # shutdown waits for the session's record to land
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        await bridge.close()
        await stop(process, printed, logged)

    db = await open_database(fresh_database_url, data_dir=data_dir, migrate=False)
    try:
        tenant = UUID((data_dir / "default-tenant").read_text().strip())
        record = await interviews.get_session(db, tenant, interview_id)
    finally:
        await db.close()
    assert record is not None
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", "relay")
    # The gateway's view of the pair its browser leg used: the far end is on the TURN server
    # (named "relay" when the trickled candidate came first, "prflx" when the browser's check
    # through coturn arrived before it: the same address either way).
    assert f"udp {TURN_ADDRESS}:" in str(record.selected_pair), record.selected_pair
