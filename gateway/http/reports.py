"""The report and dashboard content, behind the admin API's authentication.

A browser cannot put a bearer credential on a page it navigates to, and a credential in a
query string would reach access logs. So the pages (``/interview/{id}/report``,
``/dashboard``; :mod:`gateway.http.pages`) are shells without data, and their script fetches
the content from here with ``Authorization: Bearer``, as every API client does:

* ``GET /v1/interviews/{id}/report``: an admin credential of the interview's tenant (API key
  or admin JWT, :meth:`AdminApi.tenant`), or an ``interviewer`` token for that interview;
* ``GET /v1/dashboard``: an admin credential only.

Both answer HTML (``gateway.http.report_html``) and read everything inside the tenant's
row-level-security transactions, so another tenant's interview is simply not found.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import jwt
from aiohttp import hdrs, web

from gateway.http import report_html, validation
from gateway.http.api import AdminApi, interview_id_of
from gateway.http.errors import api_error
from gateway.http.security import too_many_requests
from gateway.sessions.turns import read_turns
from signaling.tokens import TokenError
from storage import interviews, transcripts
from storage import quality as call_quality
from storage.database import Database
from storage.tenants import API_KEY_PREFIX

#: The interview-token role that may read a report (observers watch live only).
REPORT_ROLE = "interviewer"


class ReportsApi:
    """The two HTML endpoints; ``mount(app)`` routes them."""

    def __init__(self, admin: AdminApi, database: Callable[[], Database]) -> None:
        self.admin = admin
        self._database = database

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/v1/interviews/{interview_id}/report", self.report)
        app.router.add_get("/v1/dashboard", self.dashboard)

    async def report(self, request: web.Request) -> web.Response:
        interview_id = interview_id_of(request)
        tenant_id = await self.report_tenant(request, interview_id)
        db = self._database()
        record = await interviews.get_session(db, tenant_id, interview_id)
        if record is None:
            raise api_error(404, "not_found", "no such interview")
        turns = read_turns(await transcripts.read_transcript(db, tenant_id, interview_id))
        samples, latencies = await call_quality.quality_samples(db, tenant_id, interview_id)
        report = report_html.Report(record, turns, samples, latencies, datetime.now(UTC))
        return web.Response(text=report_html.render_report(report), content_type="text/html")

    async def dashboard(self, request: web.Request) -> web.Response:
        tenant_id = await self.admin.tenant(request)
        limit = validation.PAGE_LIMIT.parse("limit", request.query.get("limit"))
        offset = validation.PAGE_OFFSET.parse("offset", request.query.get("offset"))
        db = self._database()
        records = await interviews.list_sessions(
            db, tenant_id, limit=limit, offset=offset, live_first=True
        )
        overviews = await call_quality.quality_overviews(db, tenant_id, [r.id for r in records])
        total = await interviews.count_sessions(db, tenant_id)
        html = report_html.render_dashboard(
            records, overviews, total=total, limit=limit, offset=offset, now=datetime.now(UTC)
        )
        return web.Response(text=html, content_type="text/html")

    async def report_tenant(self, request: web.Request, interview_id: UUID) -> UUID:
        """The tenant whose report this is: an interviewer token's for its own interview, or
        the admin credential's (refused the way the admin API refuses it)."""
        _, _, credential = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        credential = credential.strip()
        if credential.startswith(API_KEY_PREFIX) or not _names_an_interview(credential):
            return await self.admin.tenant(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="interview-gateway"'}
        try:
            claims = await self.admin.verifier.verify_async(credential, str(interview_id))
        except TokenError as exc:
            status = 403 if exc.code == "wrong_interview" else 401
            raise api_error(status, exc.code, exc.message, challenge) from None
        if claims.role != REPORT_ROLE:
            raise api_error(
                403, "role_not_allowed", "only an interviewer token or an admin opens a report"
            )
        try:
            tenant_id = UUID(claims.tenant_id)
        except ValueError:
            raise api_error(401, "token_invalid", "tenant_id is not a UUID", challenge) from None
        wait = self.admin.limiter.take(str(tenant_id))
        if wait > 0:
            raise too_many_requests(wait, "requests for this tenant")
        return tenant_id


def _names_an_interview(credential: str) -> bool:
    """Whether a JWT claims an interview (an interview token, not an admin's): read without
    its signature only to choose the verification, which then checks everything."""
    try:
        payload = jwt.decode(credential, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(payload, dict) and "interview_id" in payload
