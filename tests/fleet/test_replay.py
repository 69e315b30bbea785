"""Routing on Fly: the ``fly-replay`` header a front answers a candidate's signaling request
with, and the loop it must not make."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.config import ConfigError, Settings
from gateway.fleet import replay
from gateway.fleet.front import RECONNECT
from storage import workers

from .conftest import FLY_APP, FlyFrontFactory, fleet_of


def test_the_header_names_the_machine_its_app_and_marks_the_replay() -> None:
    assert (
        replay.replay_to("148ed1", app="w", replay_src=None) == "instance=148ed1;app=w;state=148ed1"
    )


def test_a_request_already_replayed_to_that_machine_is_not_replayed_again() -> None:
    src = "instance=front1;region=ams;t=1700000000000;state=148ed1"
    assert replay.replay_to("148ed1", app="w", replay_src=src) is None
    # replayed for another worker (an earlier claim), or by someone else: route it
    other = "instance=front1;region=ams;state=99aa00"
    assert replay.replay_to("148ed1", app="w", replay_src=other) is not None
    assert replay.replay_to("148ed1", app="w", replay_src="instance=148ed1") is not None


def test_fields_parse_as_fly_writes_them() -> None:
    assert replay.parse_fields(" instance=a ; Region=ams;junk;t=1") == {
        "instance": "a",
        "region": "ams",
        "t": "1",
    }


def test_a_fly_front_without_its_token_app_or_image_does_not_start() -> None:
    env = {"GATEWAY_ROLE": "front", "GATEWAY_BACKEND": "fly"}
    with pytest.raises(
        ConfigError, match="FLY_API_TOKEN, GATEWAY_FLY_APP, GATEWAY_FLY_IMAGE are not set"
    ):
        Settings.from_env(env)
    env.update(FLY_API_TOKEN="t", GATEWAY_FLY_APP="w", GATEWAY_FLY_IMAGE="img")
    settings = Settings.from_env({**env, "GATEWAY_FLY_REGIONS": "ams, fra"})
    assert settings.fly.regions == ("ams", "fra") and "'t'" not in repr(settings)
    for name, value, says in [
        ("GATEWAY_FLY_MEMORY_MB", "300", "multiple of 256"),
        ("GATEWAY_FLY_CPU_KIND", "gpu", "shared, performance"),
        ("GATEWAY_FLY_REGIONS", "ams,Frankfurt", "region codes"),
        ("GATEWAY_FLY_ROUTING", "redirect", "replay, forward"),
        ("GATEWAY_FLY_API_DEADLINE", "0", "above 0"),
    ]:
        with pytest.raises(ConfigError, match=name) as refused:
            Settings.from_env({**env, name: value})
        assert says in str(refused.value)


@pytest.mark.slow  # a Machine's worker boots
async def test_a_front_replays_a_ready_interview_and_readies_one_that_has_no_worker(
    start_fly_front: FlyFrontFactory,
) -> None:
    front = await start_fly_front(fly={"routing": "replay"})
    invitation = await front.invite("proxy")
    url = invitation.signal_url(front.base_url)
    async with aiohttp.ClientSession() as http:
        # no worker yet: the front checks the hello, readies a worker, sends the client back
        async with http.ws_connect(url) as first:
            await first.send_json({"type": "hello", "token": invitation.token})
            assert (await first.receive()).type == aiohttp.WSMsgType.CLOSE
            assert first.close_code == RECONNECT
        claim = await workers.get_claim(front.db, invitation.interview_id)
        assert claim is not None and claim.state == "ready" and claim.worker_id is not None
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
        upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
        async with http.get(url, headers=upgrade) as again:  # the retry: Fly replays it
            assert again.status == 204
            assert again.headers[replay.REPLAY] == (
                f"instance={claim.worker_id};app={FLY_APP};state={claim.worker_id}"
            )
        looped = {**upgrade, replay.REPLAY_SRC: f"instance=f;state={claim.worker_id}"}
        async with http.get(url, headers=looped) as back:  # came back: not replayed again
            assert back.status == 101 and replay.REPLAY not in back.headers
    assert fleet_of(front).front.stats.claims == 1
