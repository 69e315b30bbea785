"""The Fly proxy stand-in (``gateway.sim.fly_proxy``): answers passed through, ``fly-replay``
answers replayed on the Machine named with ``fly-replay-src`` added (WebSocket upgrades
included, frames and close codes both ways), and the front's ``state=`` stopping a replay that
comes back to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from gateway.fleet.front import RECONNECT
from gateway.fleet.replay import REPLAY, REPLAY_SRC, parse_fields
from gateway.sim import fly_proxy
from storage import workers

from .conftest import FLY_APP, FlyFrontFactory, fleet_of


@pytest.fixture
async def machine() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A Machine's app: ``/ws`` echoes frames and closes with 4001 after ``bye``; every request
    records the ``fly-replay-src`` it came with."""
    seen: list[str | None] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        seen.append(request.headers.get(REPLAY_SRC))
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for msg in socket:
            if msg.data == "bye":
                await socket.close(code=4001)
            else:
                await socket.send_str("echo " + msg.data)
        return socket

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


@pytest.fixture
async def front_app() -> AsyncIterator[str]:
    """A front's app: ``/ws`` asks for a replay to Machine ``m1``; ``/page`` answers itself,
    echoing the ``fly-replay-src`` a client tried to send."""

    async def ws(_: web.Request) -> web.Response:
        return web.Response(status=204, headers={REPLAY: f"instance=m1;app={FLY_APP};state=m1"})

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=f"src={request.headers.get(REPLAY_SRC)}", headers={"X-Kept": "yes"}
        )

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_an_answer_without_fly_replay_passes_through(front_app: str) -> None:
    async with (
        fly_proxy.serve(origin=front_app, app_name=FLY_APP, instances=lambda _: None) as served,
        aiohttp.ClientSession() as http,
        http.post(served.url + "/page", data=b"x", headers={REPLAY_SRC: "state=forged"}) as r,
    ):
        assert (r.status, await r.text(), r.headers["X-Kept"]) == (200, "src=None", "yes")
    assert served.proxy.replays == []


async def test_a_replayed_upgrade_reaches_the_machine_named_and_passes_frames_both_ways(
    front_app: str, machine: tuple[str, list[str | None]]
) -> None:
    address, seen = machine
    instances = {"m1": address}.get
    async with (
        fly_proxy.serve(origin=front_app, app_name=FLY_APP, instances=instances) as served,
        aiohttp.ClientSession() as http,
        http.ws_connect(served.url + "/ws") as socket,
    ):
        await socket.send_str("hello")
        assert (await socket.receive_str()) == "echo hello"
        await socket.send_str("bye")
        assert (await socket.receive()).type == WSMsgType.CLOSE
        assert socket.close_code == 4001  # the Machine's close, not the proxy's
    [src] = seen
    assert src is not None
    fields = parse_fields(src)
    assert (fields["instance"], fields["region"], fields["state"]) == ("front-machine", "ams", "m1")
    assert int(fields["t"]) > 0
    assert [(r.instance, r.replay_src) for r in served.proxy.replays] == [("m1", src)]


async def test_a_replay_to_a_machine_it_cannot_reach_is_a_502(front_app: str) -> None:
    async with (
        fly_proxy.serve(origin=front_app, app_name=FLY_APP, instances=lambda _: None) as served,
        aiohttp.ClientSession() as http,
        http.get(served.url + "/ws") as r,
    ):
        assert r.status == 502 and "instance=m1" in await r.text()
    assert served.proxy.unroutable == 1


async def test_a_replay_that_comes_back_to_the_front_is_not_replayed_again(
    start_fly_front: FlyFrontFactory,
) -> None:
    """A misroute (the Machine's id leads back to the front): the replayed request carries
    ``state=<machine id>``, so the front opens the socket itself and sends the client back
    (1012) rather than answering with a second ``fly-replay`` to the same Machine."""
    front = await start_fly_front(fly={"routing": "replay"})
    invitation = await front.invite("proxy")
    fleet = fleet_of(front)
    machine_id = "148ed1"  # a ready claim, as a booted worker leaves it
    claimed = await workers.try_claim(
        front.db, invitation.tenant_id, invitation.interview_id, fleet.front.front_id, "fly"
    )
    assert claimed
    await workers.assign(front.db, invitation.interview_id, fleet.front.front_id, machine_id)
    await workers.mark_ready(
        front.db, invitation.interview_id, fleet.front.front_id, "http://127.0.0.1:9"
    )
    loop = {machine_id: front.base_url}.get
    async with (
        fly_proxy.serve(origin=front.base_url, app_name=FLY_APP, instances=loop) as served,
        aiohttp.ClientSession() as http,
        http.ws_connect(invitation.signal_url(served.url)) as socket,
    ):
        await socket.send_json({"type": "hello", "token": invitation.token})
        assert (await socket.receive()).type == WSMsgType.CLOSE
        assert socket.close_code == RECONNECT
    [replayed] = served.proxy.replays
    assert replayed.instance == machine_id
    assert parse_fields(replayed.replay_src)["state"] == machine_id
