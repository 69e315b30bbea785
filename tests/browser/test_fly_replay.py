"""Fly's routing path end to end in a real Chromium: a front on the ``fly`` backend (against
the Machines API stand-in) with ``GATEWAY_FLY_ROUTING=replay``, behind the Fly proxy stand-in
(``gateway.sim.fly_proxy``). The candidate opens the room through the proxy; the front claims
and starts a Machine and closes the socket with 1012; the room's client connects again, and
that attempt is replayed onto the Machine, which serves the whole interview."""

from __future__ import annotations

from collections import Counter

from playwright.async_api import expect

from gateway.fleet.front import RECONNECT
from gateway.sessions.turns import read_turns
from gateway.sim import fly_proxy
from gateway.sim.script import Script
from storage import transcripts, workers
from tests.fleet.conftest import (  # noqa: F401 (fixtures)
    FLY_APP,
    FlyFrontFactory,
    Served,
    fleet_of,
    machines_api,
    start_fly_front,
)
from tests.gateway.conftest import start_gateway, until_status  # noqa: F401 (a fixture)

from .conftest import LaunchBrowser, browser_test, phone_page

pytestmark = browser_test


async def test_the_room_through_fly_replay_runs_on_its_own_machine(
    start_fly_front: FlyFrontFactory,  # noqa: F811
    machines_api: Served,  # noqa: F811
    launch_browser: LaunchBrowser,
) -> None:
    front = await start_fly_front(
        mode="proxy",
        fly={"routing": "replay"},
        worker_pool=1,  # a stopped (skip_launch) Machine: the claim starts it
        worker_start_timeout=90.0,
        end_linger=2.0,  # the script's closing line ends the interview by itself
    )
    fleet = fleet_of(front)
    assert fleet.front.replays
    await fleet.pool.full()
    invitation = await front.invite("proxy")
    script = Script.default()
    async with fly_proxy.serve(
        origin=front.base_url, app_name=FLY_APP, instances=machines_api.api.address
    ) as proxy:
        page = await phone_page(await launch_browser())
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(invitation.room_url(proxy.url))
        await page.get_by_role("button", name="Start interview").click()
        status = page.locator("#status")
        await expect(status).to_have_text("Connected (proxy)", timeout=90_000)

        claim = await workers.get_claim(front.db, invitation.interview_id)
        assert claim is not None and claim.state == "ready" and claim.worker_id is not None
        assert fleet.front.stats.claims == 1
        # the first socket was the front's (closed with 1012), the one that connected the
        # Machine's, reached by a replay that named it
        assert len(sockets) >= 2, f"one socket, no retry after the front's {RECONNECT}"
        assert proxy.proxy.replays, "no attempt was replayed"
        assert {r.instance for r in proxy.proxy.replays} == {claim.worker_id}
        assert machines_api.api.machines[claim.worker_id].state == "started"

        transcript = page.get_by_role("log")
        interviewer = transcript.locator('li[data-role="interviewer"] .text')
        await expect(interviewer.last).to_have_text(script.closing, timeout=120_000)
        await expect(status).to_have_text("Interview ended", timeout=60_000)

    record = await until_status(
        front, invitation.tenant_id, invitation.interview_id, {"ended", "failed"}, 60
    )
    assert (record.status, record.end_reason) == ("ended", "interview_complete")
    rows = await transcripts.read_transcript(
        front.db, invitation.tenant_id, invitation.interview_id
    )
    stored = Counter((turn.role, turn.text) for turn in read_turns(rows))
    expected = [("interviewer", t.question) for t in script.turns]
    expected += [("candidate", t.answer) for t in script.turns]
    expected.append(("interviewer", script.closing))
    assert stored == Counter(expected), "a line missing, extra or stored twice"
    # its gateway exited at the end: auto_destroy removed the Machine; only the pool's remain
    await fleet.backend.wait(claim.worker_id, "destroyed", 60)
    assert machines_api.api.machines[claim.worker_id].state == "destroyed"
    assert {m.id for m in machines_api.api.live()} <= fleet.pool.ids
