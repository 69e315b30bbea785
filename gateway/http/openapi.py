"""The contract served at ``/openapi.json`` (OpenAPI 3.1); ``docs/http-api.md`` says the same
in prose. Every request limit in it is written by the spec object in
:mod:`gateway.http.validation` that enforces it, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, get_args

from gateway.config import MODES
from gateway.http import validation
from gateway.http.validation import (
    NEW_INTERVIEW,
    NEW_OBSERVER_TOKEN,
    PAGE_LIMIT,
    PAGE_OFFSET,
    TRANSCRIPT_FORMAT,
)
from gateway.recording.export import TRACKS
from storage.interviews import SessionStatus

#: the download of both voices in one file (``gateway.http.recordings``)
COMBINED = "combined"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERRORS = {
    str(status): {"description": text, "content": _json(_ref("Error"))}
    for status, text in [
        (400, "the request is malformed (code bad_request or bad_json)"),
        (401, "no valid API key or admin token (code unauthorized or a token error code)"),
        (404, "no such interview for this tenant"),
        (429, "rate limited; see Retry-After"),
    ]
}
_ID = {"name": "interview_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, spec: validation.Integer | validation.Choice) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": spec.schema()}


def _new_interview() -> dict[str, Any]:
    """The request body's schema; ``x-max-depth`` is the nesting limit JSON Schema lacks."""
    return validation.Object(NEW_INTERVIEW).schema() | {"x-max-depth": validation.MAX_DEPTH}


_SCHEMAS: dict[str, Any] = {
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
    "NewInterview": _new_interview(),
    "NewObserverToken": validation.Object(NEW_OBSERVER_TOKEN).schema(),
    "ObserverToken": {
        "type": "object",
        "properties": {
            "interview_id": {"type": "string", "format": "uuid"},
            "role": {"enum": ["observer", "interviewer"]},
            "subject": {"type": ["string", "null"]},
            "token": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"},
            "signal_url": {"type": "string", "format": "uri"},
        },
    },
    "Interview": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"enum": list(get_args(SessionStatus))},
            "mode": {"enum": list(MODES)},
            "actual_mode": {"enum": [*(m for m in MODES if m != "auto"), None]},
            "candidate_ref": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "connected_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "end_reason": {"type": ["string", "null"]},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "max_duration": {"type": ["integer", "null"]},
            "session": {"type": "object"},
            "recording": {"enum": ["off", "audio", None]},
        },
    },
    "Invitation": {
        "allOf": [
            _ref("Interview"),
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
}

_PATHS: dict[str, Any] = {
    "/v1/interviews": {
        "post": {
            "summary": "create an interview and its candidate invitation",
            "requestBody": {"content": _json(_ref("NewInterview"))},
            "responses": {
                "201": {"description": "created", "content": _json(_ref("Invitation"))},
                "413": {"description": "body too large"},
                "415": {"description": "not application/json"},
                **_ERRORS,
            },
        },
        "get": {
            "summary": "the tenant's interviews, newest first",
            "parameters": [_query("limit", PAGE_LIMIT), _query("offset", PAGE_OFFSET)],
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
                "200": {"description": "the interview", "content": _json(_ref("Interview"))},
                **_ERRORS,
            },
        }
    },
    "/v1/interviews/{interview_id}/transcript": {
        "get": {
            "summary": "the transcript, in reading order",
            "parameters": [_ID, _query("format", TRANSCRIPT_FORMAT)],
            "responses": {
                "200": {"description": "JSON entries, plain text or WebVTT"},
                **_ERRORS,
            },
        }
    },
    "/v1/interviews/{interview_id}/observer-tokens": {
        "post": {
            "summary": "mint a token that watches the live interview read-only",
            "parameters": [_ID],
            "requestBody": {"content": _json(_ref("NewObserverToken"))},
            "responses": {
                "201": {"description": "minted", "content": _json(_ref("ObserverToken"))},
                "413": {"description": "body too large"},
                "415": {"description": "not application/json"},
                **_ERRORS,
            },
        }
    },
    "/v1/interviews/{interview_id}/quality": {
        "get": {
            "summary": "call quality: per leg p50/p95 and worst moment, per turn latency",
            "parameters": [_ID],
            "responses": {
                "200": {"description": "interview_id, legs (browser, upstream), turns"},
                **_ERRORS,
            },
        }
    },
    "/v1/interviews/{interview_id}/report": {
        "get": {
            "summary": "the report page's content (HTML with SVG pictures): transcript, who"
            " spoke when, each turn's latency, each leg's quality; an admin credential or an"
            " interviewer token for this interview",
            "parameters": [_ID],
            "responses": {
                "200": {"description": "an HTML fragment", "content": {"text/html": {}}},
                "403": {
                    "description": "a token of another role or interview"
                    " (code role_not_allowed or wrong_interview)",
                    "content": _json(_ref("Error")),
                },
                **_ERRORS,
            },
        }
    },
    "/v1/dashboard": {
        "get": {
            "summary": "the dashboard page's content (HTML): the tenant's interviews, live"
            " ones first",
            "parameters": [_query("limit", PAGE_LIMIT), _query("offset", PAGE_OFFSET)],
            "responses": {
                "200": {"description": "an HTML fragment", "content": {"text/html": {}}},
                **_ERRORS,
            },
        }
    },
    "/v1/interviews/{interview_id}/end": {
        "post": {
            "summary": "end the interview now (idempotent)",
            "parameters": [_ID],
            "responses": {
                "200": {"description": "the ended interview", "content": _json(_ref("Interview"))},
                **_ERRORS,
            },
        }
    },
}

_TRACK = {
    "name": "track",
    "in": "path",
    "required": True,
    "schema": {"enum": [*TRACKS, COMBINED]},
}
_SCHEMAS["Recordings"] = {
    "type": "object",
    "properties": {
        "interview_id": {"type": "string", "format": "uuid"},
        "tracks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "track": {"enum": list(TRACKS)},
                    "participant": {"enum": ["candidate", "interviewer"]},
                    "kind": {"enum": ["audio", "video"]},
                    "codec": {"type": ["string", "null"]},
                    "segments": {"type": "integer"},
                    "uploaded": {"type": "integer"},
                    "duration_ms": {"type": "integer"},
                    "bytes": {"type": "integer"},
                    "download_url": {"type": "string"},
                },
            },
        },
        "combined_url": {"type": ["string", "null"]},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "track": {"enum": list(TRACKS)},
                    "sequence": {"type": "integer"},
                    "status": {"enum": ["recording", "stored", "uploaded", "failed"]},
                    "codec": {"type": ["string", "null"]},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "duration_ms": {"type": ["integer", "null"]},
                    "bytes": {"type": ["integer", "null"]},
                    "video_id": {"type": ["string", "null"]},
                    "video_url": {"type": ["string", "null"]},
                },
            },
        },
    },
}
_STORAGE_DOWN = {"description": "storage cannot be reached (code storage_unavailable)"}
_PATHS["/v1/interviews/{interview_id}/recordings"] = {
    "get": {
        "summary": "the interview's recorded tracks and their segments",
        "parameters": [_ID],
        "responses": {
            "200": {"description": "the recordings", "content": _json(_ref("Recordings"))},
            **_ERRORS,
        },
    },
    "delete": {
        "summary": "delete the interview's recordings: the media in storage and their rows",
        "parameters": [_ID],
        "responses": {
            "204": {"description": "deleted"},
            "409": {
                "description": "the interview is live (interview_live), or some of its segments"
                " are still on their way to storage (upload_pending)"
            },
            "503": _STORAGE_DOWN,
            **_ERRORS,
        },
    },
}
_MEDIA = {"schema": {"type": "string", "format": "binary"}}
_PATHS["/v1/interviews/{interview_id}/recordings/{track}"] = {
    "get": {
        "summary": "one voice as Ogg Opus, or the video or all (combined) as WebM (Matroska"
        " when the video is H.264); remuxed, never transcoded; honours Range",
        "parameters": [_ID, _TRACK],
        "responses": {
            "200": {
                "description": "the file",
                "content": {"audio/ogg": _MEDIA, "video/webm": _MEDIA, "video/matroska": _MEDIA},
            },
            "206": {"description": "the range asked for"},
            "503": _STORAGE_DOWN,
            **_ERRORS,
            "404": {
                "description": "no such interview for this tenant (not_found), or nothing of"
                " that track uploaded (no_recording)",
                "content": _json(_ref("Error")),
            },
        },
    }
}

DOCUMENT: dict[str, Any] = {
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
        "schemas": _SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": _PATHS,
}
