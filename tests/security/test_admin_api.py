"""The admin HTTP API against a real gateway: create, read, page, transcripts, end; auth."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from gateway.app import JWT_SECRET
from gateway.cli import invite as invite_command
from gateway.sessions.invitations import Invitation
from gateway.sim.script import Script
from signaling.tokens import issue_admin_token
from storage import interviews, tenants

from .conftest import ApiTenant, GatewayFactory, make_tenant


async def error_of(response: aiohttp.ClientResponse) -> str:
    body = await response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return str(body["error"]["code"])


@pytest.mark.slow
@pytest.mark.parametrize("upstream", ["sim", "sim-live"])
async def test_create_returns_an_invitation_that_a_candidate_can_use(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession, upstream: str
) -> None:
    """On either upstream contract: GPT-Live's fragments read back as the same turns."""
    gateway = await start_gateway(mode="proxy", upstream=upstream)
    acme = await make_tenant(gateway, http, "acme")
    created = await acme.create(
        mode="proxy",
        expires_in=600,
        max_duration=900,
        candidate_ref="cand-42",
        metadata={"role": "backend"},
        session={"instructions": "Ask about Python.", "voice": "alloy"},
    )
    interview_id = UUID(str(created["id"]))
    assert created["status"] == "created" and created["mode"] == "proxy"
    assert created["max_duration"] == 900 and created["session"]["voice"] == "alloy"
    assert created["join_url"] == (
        f"{gateway.base_url}/interview/{interview_id}#token={created['token']}"
    )
    invitation = Invitation(acme.id, interview_id, str(created["token"]))
    report = await gateway.candidate(invitation).run(time_limit=60)
    assert report.error is None, report.error
    await gateway.writer.flush()
    async with await acme.request("GET", f"/v1/interviews/{interview_id}") as response:
        record = await response.json()
    assert record["actual_mode"] == "proxy" and record["candidate_ref"] == "cand-42"

    path = f"/v1/interviews/{interview_id}/transcript"
    async with await acme.request("GET", path) as response:
        entries = (await response.json())["entries"]
    async with await acme.request("GET", path + "?format=text") as response:
        text = await response.text()
    async with await acme.request("GET", path + "?format=vtt") as response:
        assert response.content_type == "text/vtt"
        vtt = await response.text()
    script = Script.default()
    said = [(r, t) for turn in script.turns for r, t in (("interviewer", turn.question),
                                                         ("candidate", turn.answer))]  # fmt: skip
    said.append(("interviewer", script.closing))
    assert [(e["role"], e["text"]) for e in entries] == [(r, " ".join(t.split())) for r, t in said]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert text.splitlines() == [
        f"{e['role'].capitalize() if e['role'] == 'candidate' else 'Interviewer'}: {e['text']}"
        for e in entries
    ]
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == len(entries)
    cues = re.findall(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", vtt)
    assert all(start < end for start, end in cues) and cues == sorted(cues)


async def test_list_pages_newest_first(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    acme = await make_tenant(gateway, http, "acme")
    ids = [str((await acme.create(candidate_ref=f"c{n}"))["id"]) for n in range(5)]
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        async with await acme.request("GET", f"/v1/interviews?limit=2&offset={offset}") as r:
            page = await r.json()
        assert page["total"] == 5 and len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        offset = page["next_offset"]
    assert seen == list(reversed(ids))
    async with await acme.request("GET", "/v1/interviews?limit=1000") as response:
        assert response.status == 400 and await error_of(response) == "bad_request"


async def test_end_hangs_up_a_live_session_and_is_idempotent(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(mode="proxy")
    acme = await make_tenant(gateway, http, "acme")
    created = await acme.create(mode="proxy")
    invitation = Invitation(acme.id, UUID(str(created["id"])), str(created["token"]))
    candidate = gateway.candidate(invitation)
    await candidate.connect()  # once connected, the session is live
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    for _ in range(2):
        async with await acme.request("POST", f"/v1/interviews/{created['id']}/end") as r:
            assert r.status == 200
            body = await r.json()
        assert (body["status"], body["end_reason"]) == ("ended", "ended_by_admin")
    assert session.ended.is_set()
    with pytest.raises(RuntimeError, match="ended"):  # the candidate hears it is over
        await asyncio.wait_for(candidate.converse(), 30)
    await candidate.close()
    never_started = await acme.create()
    async with await acme.request("POST", f"/v1/interviews/{never_started['id']}/end") as r:
        assert (await r.json())["status"] == "ended"


async def test_authentication_by_api_key_or_admin_jwt_and_nothing_else(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(jwt_audience="authenticated")
    acme = await make_tenant(gateway, http, "acme")
    url = gateway.base_url + "/v1/interviews"
    secret = gateway.app[JWT_SECRET]

    async def status(auth: str | None) -> tuple[int, str | None]:
        headers = {"Authorization": auth} if auth is not None else {}
        async with http.get(url, headers=headers) as response:
            code = await error_of(response) if response.status != 200 else None
            if response.status == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            return response.status, code

    admin = issue_admin_token(secret, tenant_id=str(acme.id), audience="authenticated")
    assert await status(f"Bearer {acme.key}") == (200, None)
    assert await status(f"Bearer {admin}") == (200, None)
    assert await status(None) == (401, "unauthorized")
    assert await status(f"Basic {acme.key}") == (401, "unauthorized")
    assert await status(f"Bearer {acme.key[:-2]}xx") == (401, "unauthorized")
    expired = issue_admin_token(secret, tenant_id=str(acme.id), ttl=-60, audience="authenticated")
    assert await status(f"Bearer {expired}") == (401, "token_expired")
    assert await status(f"Bearer {issue_admin_token(secret, tenant_id=str(acme.id))}") == (
        401,
        "wrong_audience",
    )
    forged = issue_admin_token("f" * 40, tenant_id=str(acme.id), audience="authenticated")
    assert await status(f"Bearer {forged}") == (401, "token_invalid")
    await tenants.revoke_api_key(gateway.db, acme.id, acme.key)
    assert await status(f"Bearer {acme.key}") == (401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"mode": "telepathy"}, "bad_request"),
        ({"surprise": 1}, "bad_request"),
        ({"expires_in": True}, "bad_request"),
        ({"expires_in": 10}, "bad_request"),
        ({"session": {"voice": "Robert'); DROP TABLE tenants;--"}}, "bad_request"),
        ({"session": {"api_key": "x"}}, "bad_request"),
        ({"candidate_ref": "nul\x00byte"}, "bad_request"),
        ({"metadata": {"a": "\ud800"}}, "bad_request"),
    ],
)
async def test_bad_bodies_get_a_clear_400(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession, body: dict[str, Any], code: str
) -> None:
    gateway = await start_gateway()
    acme = await make_tenant(gateway, http, "acme")
    import json

    raw = json.dumps(body)  # ensure_ascii keeps the lone surrogate as an escape
    headers = {"Content-Type": "application/json"}
    async with await acme.request("POST", "/v1/interviews", data=raw, headers=headers) as r:
        assert r.status == 400 and await error_of(r) == code
    assert await interviews.list_sessions(gateway.db, acme.id) == []


async def test_malformed_and_oversized_bodies(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(api_max_body=1024)
    acme = await make_tenant(gateway, http, "acme")
    cases = [
        ("{not json", "application/json", 400, "bad_json"),
        ("[1, 2]", "application/json", 400, "bad_request"),
        ('{"metadata": {"x": NaN}}', "application/json", 400, "bad_json"),
        ("mode=proxy", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"metadata": {"x": "' + "a" * 2000 + '"}}', "application/json", 413, "body_too_large"),
        ("[" * 5000 + "]" * 5000, "application/json", 413, "body_too_large"),
    ]
    for data, content_type, status, code in cases:
        headers = {"Content-Type": content_type}
        async with await acme.request("POST", "/v1/interviews", data=data, headers=headers) as r:
            assert (r.status, await error_of(r)) == (status, code), data[:40]
    deep = '{"metadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}"
    headers = {"Content-Type": "application/json"}
    async with await acme.request("POST", "/v1/interviews", data=deep, headers=headers) as r:
        assert r.status == 400 and await error_of(r) == "bad_request"


async def test_openapi_describes_every_route(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    async with http.get(gateway.base_url + "/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.")
    routes = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.method, route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and not route.resource.canonical.endswith("/signal")
        and route.method != "HEAD"
    }
    assert routes == served


def test_invite_command_prints_a_join_url(
    fresh_database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://interviews.example")
    monkeypatch.setenv("GATEWAY_JWT_SECRET", "cli-secret-" + "y" * 32)
    assert invite_command.main(["--create-tenant", "acme"]) == 0
    out = capsys.readouterr().out
    tenant_id = re.search(r"tenant ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    assert re.search(r"api key igw_[0-9a-f]{32}_\S{43}", out)
    assert invite_command.main(["--tenant", tenant_id, "--mode", "proxy", "--voice", "alloy"]) == 0
    captured = capsys.readouterr()
    url = captured.out.strip()
    assert re.fullmatch(r"https://interviews\.example/interview/[0-9a-f-]{36}#token=\S+", url)
    assert invite_command.main(["--tenant", "00000000-0000-0000-0000-000000000000"]) == 1
    assert "no tenant" in capsys.readouterr().err


__all__ = ["ApiTenant"]
