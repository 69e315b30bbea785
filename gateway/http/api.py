"""The admin HTTP API: interviews, their invitations and transcripts, for one tenant at a time.

Every request authenticates as exactly one tenant, by an API key (``igw_...``, stored hashed)
or an admin JWT, and every query it makes runs inside that tenant's row-level-security
transaction, so another tenant's interview is not forbidden but simply absent (404). Bodies
are small JSON objects, checked field by field; every refusal is JSON
``{"error": {"code", "message"}}`` with a fitting status. ``docs/http-api.md`` is the manual
and ``/openapi.json`` the machine-readable contract.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from aiohttp import hdrs, web

from gateway.config import MODES, Settings
from gateway.http.security import RateLimiter, too_many_requests
from gateway.sessions import invitations
from gateway.sessions.session import SessionManager
from signaling.tokens import TokenError, TokenVerifier
from storage import interviews, tenants, transcripts
from storage.database import Database

MAX_PAGE = 100
DEFAULT_TTL = 24 * 3600
MAX_TTL = 30 * 24 * 3600
_VOICE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_DEPTH = 16
ENDED_BY_ADMIN = "ended_by_admin"


def api_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An HTTP error whose body is the API's JSON error object."""
    body = json.dumps({"error": {"code": code, "message": message}})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            0, text=body, content_type="application/json", headers=headers
        )
    return _STATUS[status](text=body, content_type="application/json", headers=headers)


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    415: web.HTTPUnsupportedMediaType,
}


def _bad(message: str, code: str = "bad_request") -> web.HTTPException:
    return api_error(400, code, message)


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

    def __repr__(self) -> str:
        return "AdminApi()"

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/interviews", self.create_interview)
        app.router.add_get("/v1/interviews", self.list_interviews)
        app.router.add_get("/v1/interviews/{interview_id}", self.get_interview)
        app.router.add_get("/v1/interviews/{interview_id}/transcript", self.transcript)
        app.router.add_post("/v1/interviews/{interview_id}/end", self.end_interview)
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
        body = await self._json_body(request)
        options = _interview_request(body)
        try:
            invitation = await invitations.invite(
                self._database(),
                self._secret,
                tenant_id,
                audience=self.settings.jwt_audience,
                **options,
            )
        except psycopg.errors.ForeignKeyViolation:
            raise api_error(403, "unknown_tenant", "the token's tenant does not exist") from None
        base = self._base_url(request)
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
        return web.json_response(await self._interview(tenant_id, _interview_id(request)))

    async def list_interviews(self, request: web.Request) -> web.Response:
        tenant_id = await self.tenant(request)
        limit = _query_int(request, "limit", 50, 1, MAX_PAGE)
        offset = _query_int(request, "offset", 0, 0, 10**9)
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
        interview_id = _interview_id(request)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "text", "vtt"):
            raise _bad("format must be json, text or vtt")
        await self._interview(tenant_id, interview_id)  # 404 before an empty transcript
        rows = await transcripts.read_transcript(self._database(), tenant_id, interview_id)
        if fmt == "text":
            lines = [f"{_SPEAKER[r.role]}: {r.text}" for r in rows]
            return web.Response(text="\n".join(lines) + ("\n" if lines else ""))
        if fmt == "vtt":
            return web.Response(text=to_vtt(rows), content_type="text/vtt")
        return web.json_response(
            {
                "interview_id": str(interview_id),
                "entries": [
                    {
                        "seq": r.seq,
                        "role": r.role,
                        "text": r.text,
                        "source": r.source,
                        "item_id": r.item_id,
                        "received_at": r.received_at.isoformat(),
                        "audio_start_ms": r.audio_start_ms,
                        "audio_end_ms": r.audio_end_ms,
                    }
                    for r in rows
                ],
            }
        )

    async def end_interview(self, request: web.Request) -> web.Response:
        """End the interview now (idempotent): a live session hangs up and tells the browser."""
        tenant_id = await self.tenant(request)
        interview_id = _interview_id(request)
        await self._interview(tenant_id, interview_id)
        session = self._sessions().sessions.get(interview_id)
        if session is not None and session.tenant_id == tenant_id:
            await session.end("ended", ENDED_BY_ADMIN)
        else:
            await interviews.end_session(
                self._database(), tenant_id, interview_id, status="ended", reason=ENDED_BY_ADMIN
            )
        return web.json_response(await self._interview(tenant_id, interview_id))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    # -- helpers -----------------------------------------------------------------------------

    async def _interview(self, tenant_id: UUID, interview_id: UUID) -> dict[str, Any]:
        db = self._database()
        record = await interviews.get_session(db, tenant_id, interview_id)
        if record is None:
            raise api_error(404, "not_found", "no such interview")
        options = await interviews.get_interview_options(db, tenant_id, interview_id)
        return _interview_json(record, options)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        limit = self.settings.api_max_body
        if request.content_type != "application/json":
            raise api_error(415, "unsupported_media_type", "send Content-Type: application/json")
        if request.content_length is not None and request.content_length > limit:
            raise api_error(413, "body_too_large", f"bodies are limited to {limit} bytes")
        raw = b""
        while chunk := await request.content.read(limit + 1 - len(raw)):
            raw += chunk
            if len(raw) > limit:
                raise api_error(413, "body_too_large", f"bodies are limited to {limit} bytes")
        try:
            body = json.loads(raw, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            raise _bad("the body is not valid JSON", "bad_json") from None
        if not isinstance(body, dict):
            raise _bad("the body must be a JSON object")
        _check_storable(body, 0)
        return body

    def _base_url(self, request: web.Request) -> str:
        return self.settings.public_url or f"{request.scheme}://{request.host}"


_SPEAKER = {"interviewer": "Interviewer", "candidate": "Candidate"}


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_storable(value: Any, depth: int) -> None:
    """PostgreSQL refuses NUL characters and lone surrogates; refuse them first, clearly."""
    if depth > _MAX_DEPTH:
        raise _bad(f"the body nests deeper than {_MAX_DEPTH} levels")
    items: list[Any] = []
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str):
        if "\x00" in value:
            raise _bad("strings may not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("strings must be valid Unicode (no lone surrogates)") from None
    for item in items:
        _check_storable(item, depth + 1)


#: What the body of POST /v1/interviews may hold.
_FIELDS = frozenset(
    {"mode", "expires_in", "max_duration", "candidate_ref", "metadata", "single_use", "session"}
)
_SESSION_FIELDS = frozenset({"instructions", "voice"})


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}")
    return value


def _interview_request(body: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``invitations.invite`` that a request body asks for."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    mode = body.get("mode", "auto")
    if mode not in MODES:
        raise _bad(f"mode must be one of {', '.join(MODES)}")
    ttl = _int_field(body, "expires_in", 60, MAX_TTL) or DEFAULT_TTL
    max_duration = _int_field(body, "max_duration", 30, 24 * 3600)
    ref = body.get("candidate_ref")
    if ref is not None and (not isinstance(ref, str) or not 0 < len(ref) <= 200):
        raise _bad("candidate_ref must be a string of 1 to 200 characters")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _bad("metadata must be an object")
    single_use = body.get("single_use", True)
    if not isinstance(single_use, bool):
        raise _bad("single_use must be true or false")
    session = body.get("session", {})
    if not isinstance(session, dict) or set(session) - _SESSION_FIELDS:
        raise _bad("session must be an object with only instructions and voice")
    instructions, voice = session.get("instructions"), session.get("voice")
    if instructions is not None and (
        not isinstance(instructions, str) or len(instructions) > 20_000
    ):
        raise _bad("session.instructions must be a string of at most 20000 characters")
    if voice is not None and (not isinstance(voice, str) or not _VOICE.fullmatch(voice)):
        raise _bad("session.voice must be a voice name such as 'alloy'")
    return {
        "mode": mode,
        "ttl": ttl,
        "max_duration": max_duration,
        "candidate_ref": ref,
        "metadata": metadata,
        "single_use": single_use,
        "upstream_session": session,
    }


def _interview_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["interview_id"])
    except ValueError:
        raise api_error(404, "not_found", "no such interview") from None


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _bad(f"{name} must be from {low} to {high}")
    return value


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
    }


def _timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _vtt_text(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.replace("-->", "--&gt;").split())


def to_vtt(rows: list[transcripts.TranscriptRow]) -> str:
    """WebVTT, one cue per line. A cue runs from when its line was received (relative to the
    first) to when the next one was: what the gateway knows without the audio itself."""
    out = ["WEBVTT", ""]
    if not rows:
        return "\n".join(out)
    start = rows[0].received_at
    offsets = [(r.received_at - start).total_seconds() for r in rows]
    for index, row in enumerate(rows):
        begin = offsets[index]
        words = max(1, len(row.text.split()))
        end = offsets[index + 1] if index + 1 < len(rows) else begin + max(1.0, words / 2.5)
        end = max(end, begin + 0.5)
        out += [
            str(row.seq),
            f"{_timestamp(begin)} --> {_timestamp(end)}",
            f"<v {_SPEAKER[row.role]}>{_vtt_text(row.text)}",
            "",
        ]
    return "\n".join(out)


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERRORS = {
    str(status): {"description": text, "content": _json_content(_schema_ref("Error"))}
    for status, text in [
        (400, "the request is malformed (code bad_request or bad_json)"),
        (401, "no valid API key or admin token (code unauthorized or a token error code)"),
        (404, "no such interview for this tenant"),
        (429, "rate limited; see Retry-After"),
    ]
}
_ID = {"name": "interview_id", "in": "path", "required": True, "schema": {"type": "string"}}

#: The contract served at /openapi.json; docs/http-api.md says the same in prose.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "interview-gateway admin API", "version": "1"},
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "a tenant API key (igw_...) or an admin JWT (role admin)",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "NewInterview": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "mode": {"enum": list(MODES), "default": "auto"},
                    "expires_in": {
                        "type": "integer",
                        "minimum": 60,
                        "maximum": MAX_TTL,
                        "default": DEFAULT_TTL,
                    },
                    "max_duration": {"type": "integer", "minimum": 30, "maximum": 86400},
                    "candidate_ref": {"type": "string", "minLength": 1, "maxLength": 200},
                    "metadata": {"type": "object"},
                    "single_use": {"type": "boolean", "default": True},
                    "session": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "instructions": {"type": "string", "maxLength": 20000},
                            "voice": {"type": "string", "pattern": _VOICE.pattern},
                        },
                    },
                },
            },
            "Interview": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "status": {
                        "enum": ["created", "waiting", "connecting", "active", "ended", "failed"]
                    },
                    "mode": {"enum": list(MODES)},
                    "actual_mode": {"enum": ["relay", "proxy", None]},
                    "candidate_ref": {"type": ["string", "null"]},
                    "metadata": {"type": "object"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "connected_at": {"type": ["string", "null"], "format": "date-time"},
                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                    "end_reason": {"type": ["string", "null"]},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                    "max_duration": {"type": ["integer", "null"]},
                    "session": {"type": "object"},
                },
            },
            "Invitation": {
                "allOf": [
                    _schema_ref("Interview"),
                    {
                        "type": "object",
                        "properties": {
                            "token": {"type": "string"},
                            "join_url": {"type": "string", "format": "uri"},
                            "signal_url": {"type": "string", "format": "uri"},
                        },
                    },
                ]
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/interviews": {
            "post": {
                "summary": "create an interview and its candidate invitation",
                "requestBody": {"content": _json_content(_schema_ref("NewInterview"))},
                "responses": {
                    "201": {
                        "description": "created",
                        "content": _json_content(_schema_ref("Invitation")),
                    },
                    "413": {"description": "body too large"},
                    "415": {"description": "not application/json"},
                    **_ERRORS,
                },
            },
            "get": {
                "summary": "the tenant's interviews, newest first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    },
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "200": {"description": "a page: items, total, limit, offset, next_offset"},
                    **_ERRORS,
                },
            },
        },
        "/v1/interviews/{interview_id}": {
            "get": {
                "summary": "one interview",
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "the interview",
                        "content": _json_content(_schema_ref("Interview")),
                    },
                    **_ERRORS,
                },
            }
        },
        "/v1/interviews/{interview_id}/transcript": {
            "get": {
                "summary": "the transcript, in reading order",
                "parameters": [
                    _ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"enum": ["json", "text", "vtt"], "default": "json"},
                    },
                ],
                "responses": {
                    "200": {"description": "JSON entries, plain text or WebVTT"},
                    **_ERRORS,
                },
            }
        },
        "/v1/interviews/{interview_id}/end": {
            "post": {
                "summary": "end the interview now (idempotent)",
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "the ended interview",
                        "content": _json_content(_schema_ref("Interview")),
                    },
                    **_ERRORS,
                },
            }
        },
    },
}
