"""The admin HTTP API: interviews, their invitations and transcripts, for one tenant at a time.

Every request authenticates as exactly one tenant, by an API key (``igw_...``, stored hashed)
or an admin JWT, and every query it makes runs inside that tenant's row-level-security
transaction, so another tenant's interview is not forbidden but simply absent (404). What a
request may hold is defined in :mod:`gateway.http.validation`, which also writes those limits
into :mod:`gateway.http.openapi`'s document; every refusal is JSON ``{"error": {"code",
"message"}}`` with a fitting status. ``docs/http-api.md`` is the manual.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from aiohttp import hdrs, web

from gateway.config import Settings
from gateway.http import openapi, transcript_formats, validation
from gateway.http.errors import api_error
from gateway.http.security import RateLimiter, too_many_requests
from gateway.http.urls import PublicUrls
from gateway.sessions import invitations
from gateway.sessions.manager import SessionManager
from gateway.sessions.turns import read_turns
from signaling.tokens import TokenError, TokenVerifier
from storage import interviews, tenants, transcripts
from storage import quality as call_quality
from storage.database import Database

ENDED_BY_ADMIN = "ended_by_admin"


class AdminApi:
    """The API's handlers; ``mount(app)`` routes them. The database and the session manager
    are looked up per request because they only exist once the application has started."""

    def __init__(
        self,
        settings: Settings,
        *,
        verifier: TokenVerifier,
        secret: str,
        limiter: RateLimiter,
        database: Callable[[], Database],
        sessions: Callable[[], SessionManager],
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self._secret = secret
        self.limiter = limiter
        self._database = database
        self._sessions = sessions
        self.urls = PublicUrls.from_settings(settings)

    def __repr__(self) -> str:
        return "AdminApi()"

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/interviews", self.create_interview)
        app.router.add_get("/v1/interviews", self.list_interviews)
        app.router.add_get("/v1/interviews/{interview_id}", self.get_interview)
        app.router.add_get("/v1/interviews/{interview_id}/transcript", self.transcript)
        app.router.add_post("/v1/interviews/{interview_id}/end", self.end_interview)
        app.router.add_post(
            "/v1/interviews/{interview_id}/observer-tokens", self.create_observer_token
        )
        app.router.add_get("/v1/interviews/{interview_id}/quality", self.quality)
        app.router.add_get("/openapi.json", self.openapi)

    # -- authentication ----------------------------------------------------------------------

    async def tenant(self, request: web.Request) -> UUID:
        """The caller's tenant, from ``Authorization: Bearer <API key or admin JWT>``."""
        scheme, _, credential = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        credential = credential.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="interview-gateway"'}
        if scheme.lower() != "bearer" or not credential:
            raise api_error(401, "unauthorized", "send Authorization: Bearer <key>", challenge)
        if credential.startswith(tenants.API_KEY_PREFIX):
            tenant_id = await tenants.authenticate_api_key(self._database(), credential)
            if tenant_id is None:
                raise api_error(401, "unauthorized", "unknown or revoked API key", challenge)
        else:
            try:
                claims = await self.verifier.verify_admin(credential)
                tenant_id = UUID(claims.tenant_id)
            except TokenError as exc:
                raise api_error(401, exc.code, exc.message, challenge) from None
            except ValueError:
                raise api_error(
                    401, "token_invalid", "tenant_id is not a UUID", challenge
                ) from None
        wait = self.limiter.take(str(tenant_id))
        if wait > 0:
            raise too_many_requests(wait, "requests for this tenant")
        return tenant_id

    # -- handlers ----------------------------------------------------------------------------

    async def create_interview(self, request: web.Request) -> web.Response:
        tenant_id = await self.tenant(request)
        body = await validation.json_object(
            request, self.settings.api_max_body, self.settings.http_body_timeout
        )
        new = validation.new_interview(body)
        try:
            invitation = await invitations.invite(
                self._database(),
                self._secret,
                tenant_id,
                audience=self.settings.jwt_audience,
                mode=new.mode,
                ttl=new.expires_in,
                max_duration=new.max_duration,
                candidate_ref=new.candidate_ref,
                metadata=new.metadata,
                single_use=new.single_use,
                upstream_session=new.session,
                recording=new.recording,  # type: ignore[arg-type]
            )
        except psycopg.errors.ForeignKeyViolation:
            raise api_error(403, "unknown_tenant", "the token's tenant does not exist") from None
        base = self.urls.base_url(request)
        record = await self._interview(tenant_id, invitation.interview_id)
        return web.json_response(
            {
                **record,
                "token": invitation.token,
                "join_url": invitation.room_url(base),
                "signal_url": invitation.signal_url(base),
            },
            status=201,
            headers={"Location": f"/v1/interviews/{invitation.interview_id}"},
        )

    async def get_interview(self, request: web.Request) -> web.Response:
        tenant_id = await self.tenant(request)
        return web.json_response(await self._interview(tenant_id, interview_id_of(request)))

    async def list_interviews(self, request: web.Request) -> web.Response:
        tenant_id = await self.tenant(request)
        limit = validation.PAGE_LIMIT.parse("limit", request.query.get("limit"))
        offset = validation.PAGE_OFFSET.parse("offset", request.query.get("offset"))
        db = self._database()
        records = await interviews.list_sessions(db, tenant_id, limit=limit, offset=offset)
        options = await interviews.list_interview_options(db, tenant_id, [r.id for r in records])
        total = await interviews.count_sessions(db, tenant_id)
        next_offset = offset + len(records) if offset + len(records) < total else None
        return web.json_response(
            {
                "items": [_interview_json(r, options.get(r.id)) for r in records],
                "total": total,
                "limit": limit,
                "offset": offset,
                "next_offset": next_offset,
            }
        )

    async def transcript(self, request: web.Request) -> web.Response:
        tenant_id = await self.tenant(request)
        interview_id = interview_id_of(request)
        fmt = validation.TRANSCRIPT_FORMAT.parse("format", request.query.get("format"))
        await self._interview(tenant_id, interview_id)  # 404 before an empty transcript
        rows = read_turns(
            await transcripts.read_transcript(self._database(), tenant_id, interview_id)
        )
        if fmt == "text":
            return web.Response(text=transcript_formats.as_text(rows))
        if fmt == "vtt":
            return web.Response(text=transcript_formats.as_vtt(rows), content_type="text/vtt")
        return web.json_response(transcript_formats.as_json(interview_id, rows))

    async def end_interview(self, request: web.Request) -> web.Response:
        """End the interview now (idempotent): a live session hangs up and tells the browser."""
        tenant_id = await self.tenant(request)
        interview_id = interview_id_of(request)
        await self._interview(tenant_id, interview_id)
        if not await self._sessions().end(tenant_id, interview_id, "ended", ENDED_BY_ADMIN):
            await interviews.end_session(
                self._database(), tenant_id, interview_id, status="ended", reason=ENDED_BY_ADMIN
            )
        return web.json_response(await self._interview(tenant_id, interview_id))

    async def create_observer_token(self, request: web.Request) -> web.Response:
        """A token that watches this interview live, read-only (role observer or interviewer)."""
        tenant_id = await self.tenant(request)
        interview_id = interview_id_of(request)
        body = await validation.json_object(
            request, self.settings.api_max_body, self.settings.http_body_timeout
        )
        new = validation.new_observer_token(body)
        await self._interview(tenant_id, interview_id)  # 404 for another tenant's interview
        token, expires_at = invitations.observer_token(
            self._secret,
            tenant_id,
            interview_id,
            role=new.role,
            subject=new.subject,
            ttl=new.expires_in,
            audience=self.settings.jwt_audience,
        )
        invitation = invitations.Invitation(tenant_id, interview_id, token, expires_at)
        return web.json_response(
            {
                "interview_id": str(interview_id),
                "role": new.role,
                "subject": new.subject,
                "token": token,
                "expires_at": _iso(expires_at),
                "signal_url": invitation.signal_url(self.urls.base_url(request)),
            },
            status=201,
        )

    async def quality(self, request: web.Request) -> web.Response:
        """The interview's call quality: per leg and per turn (relay mode; empty otherwise)."""
        tenant_id = await self.tenant(request)
        interview_id = interview_id_of(request)
        await self._interview(tenant_id, interview_id)
        summary = await call_quality.quality_summary(self._database(), tenant_id, interview_id)
        return web.json_response({"interview_id": str(interview_id), **summary})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.DOCUMENT)

    # -- helpers -----------------------------------------------------------------------------

    async def _interview(self, tenant_id: UUID, interview_id: UUID) -> dict[str, Any]:
        db = self._database()
        record = await interviews.get_session(db, tenant_id, interview_id)
        if record is None:
            raise api_error(404, "not_found", "no such interview")
        options = await interviews.get_interview_options(db, tenant_id, interview_id)
        return _interview_json(record, options)


def interview_id_of(request: web.Request) -> UUID:
    """The path's interview id; anything that is not a UUID is `404 not_found`."""
    try:
        return UUID(request.match_info["interview_id"])
    except ValueError:
        raise api_error(404, "not_found", "no such interview") from None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _interview_json(
    record: interviews.SessionRecord, options: interviews.InterviewOptions | None
) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "status": record.status,
        "mode": record.requested_mode,
        "actual_mode": record.actual_mode,
        "candidate_ref": record.candidate_ref,
        "metadata": record.metadata,
        "created_at": _iso(record.created_at),
        "connected_at": _iso(record.connected_at),
        "ended_at": _iso(record.ended_at),
        "end_reason": record.end_reason,
        "expires_at": _iso(options.expires_at) if options else None,
        "max_duration": options.max_duration_s if options else None,
        "session": options.upstream_session if options else {},
        "recording": options.recording if options else None,
    }
