"""The pages' HTTP side, without a browser: what the gateway serves at which address, and to
whom the report and the dashboard answer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from uuid import UUID, uuid4

import aiohttp

from gateway.app import DATABASE, JWT_SECRET, WRITER
from gateway.http.pages import DASHBOARD_PAGE, REPORT_PAGE, ROOM_PAGE
from gateway.sessions.invitations import observer_token
from signaling.tokens import issue_token
from storage import interviews, tenants
from storage import quality as call_quality
from storage.quality import LEGS, LegSample, QualityReport
from storage.transcripts import TranscriptEntry

from .conftest import Gateway


async def test_the_room_is_served_for_an_interview_id_and_not_for_anything_else(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        async with http.get("/interview/0b6e1f3c-8f4e-4d7a-9b1e-2f0c5d6a7b8c") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert response.headers["Cache-Control"] == "no-store"
            assert "<title>Interview room</title>" in await response.text()
        async with http.get("/interview/not-an-id") as response:
            assert response.status == 404
            assert "invitation link" in await response.text()


async def test_the_client_module_is_served_as_javascript(gateway: Gateway) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        for path in ("/static/interview-client.js", "/static/room.js"):
            async with http.get(path) as response:
                assert response.status == 200
                # Browsers run an ES module only when it comes with a JavaScript MIME type.
                assert response.content_type in ("text/javascript", "application/javascript")
        async with http.get("/static/../pages.py") as response:
            assert response.status in (403, 404)


def test_the_room_page_has_no_inline_script_or_style() -> None:
    html = ROOM_PAGE.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


def test_the_report_and_dashboard_shells_hold_no_inline_script_or_style_and_no_data() -> None:
    for page in (REPORT_PAGE, DASHBOARD_PAGE):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
        assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
        assert "<style" not in html
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


async def test_the_report_and_dashboard_shells_are_served_at_their_addresses(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        for path, title in (
            (f"/interview/{uuid4()}/report", "Interview report"),
            ("/dashboard", "Interviews"),
        ):
            async with http.get(path) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                assert response.headers["Cache-Control"] == "no-store"
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
                assert f"<title>{title}</title>" in await response.text()
        async with http.get("/interview/not-an-id/report") as response:
            assert response.status == 404


async def finished_interview(gateway: Gateway, *, candidate_ref: str | None = None) -> UUID:
    """An interview with two turns of transcript and a few call-quality samples, ended."""
    db = gateway.app[DATABASE]
    invitation = await gateway.invite("relay")
    interview_id = invitation.interview_id
    if candidate_ref is not None:
        await interviews.update_session(
            db, gateway.tenant_id, interview_id, candidate_ref=candidate_ref
        )
    await interviews.update_session(
        db, gateway.tenant_id, interview_id, status="active", connected_at=datetime.now(UTC)
    )
    for n, (role, text) in enumerate(
        [("interviewer", "Tell me about yourself."), ("candidate", HOSTILE_TEXT)]
    ):
        gateway.app[WRITER].submit(
            TranscriptEntry(
                gateway.tenant_id,
                interview_id,
                f"event_{n}",
                role,
                text,
                "relay",  # type: ignore[arg-type]
                "response.audio_transcript.done",
                item_id=f"item_{n}",
            )
        )
    await gateway.flush_transcripts()
    for rtt in (20.0, 35.0, 28.0):
        legs = [LegSample(leg, rtt_ms=rtt, jitter_ms=3.0, loss=0.0) for leg in LEGS]
        await call_quality.record_quality(
            db, gateway.tenant_id, interview_id, QualityReport(legs, turns_ms=[rtt * 20])
        )
    await interviews.end_session(
        db, gateway.tenant_id, interview_id, status="ended", reason="completed"
    )
    return interview_id


#: A candidate's words that would be markup if they were not escaped.
HOSTILE_TEXT = 'I <img src=x onerror="alert(1)"> break pages & more'


async def get(http: aiohttp.ClientSession, path: str, credential: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    async with http.get(path, headers=headers) as response:
        return response.status, await response.text()


async def test_a_report_opens_to_its_tenants_admin_and_its_interviewer_and_nobody_else(
    gateway: Gateway,
) -> None:
    db, secret = gateway.app[DATABASE], gateway.app[JWT_SECRET]
    interview_id = await finished_interview(gateway)
    other_interview = (await gateway.invite("relay")).interview_id
    key = await tenants.create_api_key(db, gateway.tenant_id, "tests")
    stranger = await tenants.create_tenant(db, "stranger")
    stranger_key = await tenants.create_api_key(db, stranger, "s")

    def token(
        role: str, *, tenant: UUID = gateway.tenant_id, interview: UUID = interview_id
    ) -> str:
        return observer_token(secret, tenant, interview, role=role, subject="alice")[0]

    path = f"/v1/interviews/{interview_id}/report"
    async with aiohttp.ClientSession(gateway.base_url) as http:
        for credential in (key, token("interviewer")):
            status, html = await get(http, path, credential)
            assert status == 200, html
            assert '<h1 id="report-title">Interview report</h1>' in html
            assert html.count('class="latency-mark"') == 3
            assert "Tell me about yourself." in html
            assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
            assert key not in html
        refusals = {
            "no credential": (None, 401, "unauthorized"),
            "a revoked-looking key": (key[:-4] + "AAAA", 401, "unauthorized"),
            "garbage": ("not-a-token", 401, "token_invalid"),
            "an observer token": (token("observer"), 403, "role_not_allowed"),
            "the candidate's invitation": (
                (await invitations_of(gateway, interview_id)),
                403,
                "role_not_allowed",
            ),
            "an interviewer token for another interview": (
                token("interviewer", interview=other_interview),
                403,
                "wrong_interview",
            ),
            "another tenant's key": (stranger_key, 404, "not_found"),
            "an interviewer token claiming another tenant": (
                token("interviewer", tenant=stranger),
                404,
                "not_found",
            ),
            "a token signed with another secret": (
                observer_token("x" * 48, gateway.tenant_id, interview_id, role="interviewer")[0],
                401,
                "token_invalid",
            ),
        }
        for what, (credential, status, code) in refusals.items():
            got, body = await get(http, path, credential)
            assert (got, json.loads(body)["error"]["code"]) == (status, code), what
            assert key not in body


async def invitations_of(gateway: Gateway, interview_id: UUID) -> str:
    """A candidate token for ``interview_id`` (what the candidate's join link carries)."""
    return issue_token(
        gateway.app[JWT_SECRET],
        tenant_id=str(gateway.tenant_id),
        interview_id=str(interview_id),
        role="candidate",
        ttl=600,
        jti="jti-1",
    )


async def test_the_dashboard_lists_live_interviews_first_pages_them_and_only_for_an_admin(
    gateway: Gateway,
) -> None:
    db = gateway.app[DATABASE]
    finished = [await finished_interview(gateway, candidate_ref=f"done-{n}") for n in range(2)]
    live = (await gateway.invite("relay")).interview_id
    await interviews.update_session(
        db, gateway.tenant_id, live, status="active", candidate_ref="live-1"
    )
    waiting = (await gateway.invite("relay")).interview_id
    key = await tenants.create_api_key(db, gateway.tenant_id, "tests")
    stranger = await tenants.create_tenant(db, "stranger")
    stranger_key = await tenants.create_api_key(db, stranger, "s")
    async with aiohttp.ClientSession(gateway.base_url) as http:
        status, first = await get(http, "/v1/dashboard?limit=2", key)
        assert status == 200, first
        links = re.findall(r'href="/interview/([0-9a-f-]{36})/report"', first)
        assert links == [str(live), str(waiting)]  # the live one, then the newest
        assert "active (live)" in first
        assert 'rel="next" href="/dashboard?offset=2&amp;limit=2"' in first
        assert 'rel="prev"' not in first
        status, second = await get(http, "/v1/dashboard?offset=2&limit=2", key)
        assert status == 200
        assert re.findall(r'href="/interview/([0-9a-f-]{36})/report"', second) == [
            str(finished[1]),
            str(finished[0]),
        ]
        assert 'rel="next"' not in second and 'rel="prev" href="/dashboard?offset=0' in second
        assert "completed" in second and "3 turns, median 560 ms (slowest 700 ms)" in second
        assert key not in first + second
        status, theirs = await get(http, "/v1/dashboard", stranger_key)
        assert status == 200 and "/interview/" not in theirs and "none of 0" in theirs
        interviewer = observer_token(
            gateway.app[JWT_SECRET], gateway.tenant_id, live, role="interviewer"
        )[0]
        for credential, code in ((interviewer, "token_invalid"), (None, "unauthorized")):
            status, body = await get(http, "/v1/dashboard", credential)
            assert (status, json.loads(body)["error"]["code"]) == (401, code)
        status, body = await get(http, "/v1/dashboard?limit=0", key)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
