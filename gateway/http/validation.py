"""What the admin API accepts, defined once: each field's spec checks a request *and* writes its
part of ``/openapi.json`` (:mod:`gateway.http.openapi` reads the same objects), so a limit such
as the page size or the longest TTL cannot say one thing in the contract and do another.

Refusals are :class:`~gateway.http.errors.InvalidRequest` (``400``) whose message names the
field. Bodies are JSON objects that PostgreSQL can store: no NUL characters, no lone surrogates,
nested no deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config import MODES
from gateway.http.errors import InvalidRequest, api_error
from gateway.http.transcript_formats import FORMATS

MAX_PAGE = 100
DEFAULT_TTL = 24 * 3600
MAX_TTL = 30 * 24 * 3600
#: Levels of nesting a body may hold below itself: its own fields are level 1.
MAX_DEPTH = 16


@dataclass(frozen=True)
class Integer:
    """An integer from ``low`` to ``high``; ``nullable``: JSON ``null`` counts as absent."""

    low: int
    high: int
    default: int | None = None
    nullable: bool = False

    def check(self, name: str, value: Any) -> int | None:
        if value is None and self.nullable:
            return self.default
        integer = isinstance(value, int) and not isinstance(value, bool)
        if not integer or not self.low <= value <= self.high:
            raise InvalidRequest(f"{name} must be an integer from {self.low} to {self.high}")
        return value

    def parse(self, name: str, raw: str | None) -> int:
        """The query-string form: absent means the default (required without one)."""
        if raw is None:
            if self.default is None:
                raise InvalidRequest(f"{name} is required")
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer") from None
        if not self.low <= value <= self.high:
            raise InvalidRequest(f"{name} must be from {self.low} to {self.high}")
        return value

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": ["integer", "null"] if self.nullable else "integer",
            "minimum": self.low,
            "maximum": self.high,
        }
        return schema | ({"default": self.default} if self.default is not None else {})

    def absent(self) -> int | None:
        return self.default


@dataclass(frozen=True)
class Text:
    """A string of ``min_length`` to ``max_length`` characters, matching ``pattern`` (whole)."""

    max_length: int
    min_length: int = 0
    pattern: str | None = None
    #: what the refusal says the string must be, when a pattern makes "a string" too vague
    hint: str | None = None
    nullable: bool = False

    def check(self, name: str, value: Any) -> str | None:
        if value is None and self.nullable:
            return None
        if (
            not isinstance(value, str)
            or not self.min_length <= len(value) <= self.max_length
            or (self.pattern is not None and not re.fullmatch(self.pattern, value))
        ):
            raise InvalidRequest(f"{name} must be {self.hint or self._length()}")
        return value

    def _length(self) -> str:
        if self.min_length == 0:
            return f"a string of at most {self.max_length} characters"
        return f"a string of {self.min_length} to {self.max_length} characters"

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": ["string", "null"] if self.nullable else "string"}
        if self.min_length:
            schema["minLength"] = self.min_length
        schema["maxLength"] = self.max_length
        if self.pattern is not None:  # JSON Schema patterns are unanchored; ours match whole
            schema["pattern"] = f"^{self.pattern}$"
        return schema

    def absent(self) -> None:
        return None


@dataclass(frozen=True)
class Choice:
    """One of a few words (or, when ``nullable``, null: the same as leaving it out)."""

    choices: tuple[str, ...]
    default: str | None
    nullable: bool = False

    def check(self, name: str, value: Any) -> str | None:
        if value is None and self.nullable:
            return self.default
        if value not in self.choices:
            raise InvalidRequest(f"{name} must be one of {', '.join(self.choices)}")
        return str(value)

    def parse(self, name: str, raw: str | None) -> str | None:
        """The query-string form: absent means the default."""
        return self.check(name, self.default if raw is None else raw)

    def schema(self) -> dict[str, Any]:
        """The enum (with null when nullable), and the default unless it is null."""
        schema: dict[str, Any] = {"enum": [*self.choices, *([None] if self.nullable else [])]}
        return schema | ({"default": self.default} if self.default is not None else {})

    def absent(self) -> str | None:
        return self.default


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``."""

    default: bool

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidRequest(f"{name} must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean", "default": self.default}

    def absent(self) -> bool:
        return self.default


@dataclass(frozen=True)
class Object:
    """A JSON object: anything (``fields`` None), or only the named fields, each checked."""

    fields: dict[str, Field] | None = None

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if self.fields is None:
            if not isinstance(value, dict):
                raise InvalidRequest(f"{name} must be an object")
            return value
        if not isinstance(value, dict) or set(value) - set(self.fields):
            raise InvalidRequest(f"{name} must be an object with only {_names(self.fields)}")
        for key, item in value.items():
            self.fields[key].check(f"{name}.{key}", item)
        return value

    def schema(self) -> dict[str, Any]:
        if self.fields is None:
            return {"type": "object"}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: spec.schema() for key, spec in self.fields.items()},
        }

    def absent(self) -> dict[str, Any]:
        return {}


Field = Integer | Text | Choice | Flag | Object


def _names(fields: dict[str, Field]) -> str:
    names = list(fields)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


#: The body of ``POST /v1/interviews``: every field optional, nothing else allowed.
NEW_INTERVIEW: dict[str, Field] = {
    "mode": Choice(MODES, "auto"),
    "expires_in": Integer(60, MAX_TTL, default=DEFAULT_TTL, nullable=True),
    "max_duration": Integer(30, 24 * 3600, nullable=True),
    "candidate_ref": Text(200, min_length=1, nullable=True),
    "metadata": Object(),
    "single_use": Flag(True),
    #: null: the deployment's GATEWAY_RECORDING decides (see gateway.recording)
    "recording": Choice(("off", "audio"), None, nullable=True),
    "session": Object(
        {
            "instructions": Text(20_000, nullable=True),
            "voice": Text(
                32,
                min_length=1,
                pattern=r"[a-z0-9_-]+",
                hint="a voice name such as 'alloy'",
                nullable=True,
            ),
        }
    ),
}

#: The query parameters of the two GETs that take any.
PAGE_LIMIT = Integer(1, MAX_PAGE, default=50)
PAGE_OFFSET = Integer(0, 10**9, default=0)
TRANSCRIPT_FORMAT = Choice(FORMATS, "json")


@dataclass(frozen=True)
class NewInterview:
    """A checked ``POST /v1/interviews`` body, defaults filled in."""

    mode: str
    expires_in: int
    max_duration: int | None
    candidate_ref: str | None
    metadata: dict[str, Any]
    single_use: bool
    recording: str | None
    session: dict[str, Any]


#: The body of ``POST /v1/interviews/{id}/observer-tokens``: every field optional.
NEW_OBSERVER_TOKEN: dict[str, Field] = {
    "role": Choice(("observer", "interviewer"), "observer"),
    "subject": Text(200, min_length=1, nullable=True),
    "expires_in": Integer(60, MAX_TTL, default=4 * 3600, nullable=True),
}


@dataclass(frozen=True)
class NewObserverToken:
    """A checked ``POST /v1/interviews/{id}/observer-tokens`` body, defaults filled in."""

    role: str
    subject: str | None
    expires_in: int


def new_interview(body: dict[str, Any]) -> NewInterview:
    """Check a body against :data:`NEW_INTERVIEW`."""
    return NewInterview(**_checked(body, NEW_INTERVIEW))


def new_observer_token(body: dict[str, Any]) -> NewObserverToken:
    """Check a body against :data:`NEW_OBSERVER_TOKEN`."""
    return NewObserverToken(**_checked(body, NEW_OBSERVER_TOKEN))


def _checked(body: dict[str, Any], specs: dict[str, Field]) -> dict[str, Any]:
    """Each field of ``specs`` checked (or its default), and nothing else allowed."""
    unknown = set(body) - set(specs)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    return {
        name: spec.check(name, body[name]) if name in body else spec.absent()
        for name, spec in specs.items()
    }


def check_storable(value: Any, depth: int = 0) -> None:
    """PostgreSQL refuses NUL characters and lone surrogates; refuse them first, clearly. A
    deeply nested body is refused before it costs anything (``depth`` of ``value`` itself)."""
    if depth > MAX_DEPTH:
        raise InvalidRequest(f"the body nests deeper than {MAX_DEPTH} levels")
    items: list[Any] = []
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest("strings may not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("strings must be valid Unicode (no lone surrogates)") from None
    for item in items:
        check_storable(item, depth + 1)


async def json_object(request: web.Request, limit: int, seconds: float) -> dict[str, Any]:
    """The request's body as a storable JSON object of at most ``limit`` bytes, sent within
    ``seconds`` (else ``408 body_timeout``: a client trickling its body holds nothing
    for long); a body that lies about its length is cut off at ``limit + 1`` bytes, never read
    whole."""
    if request.content_type != "application/json":
        raise api_error(415, "unsupported_media_type", "send Content-Type: application/json")
    too_large = api_error(413, "body_too_large", f"bodies are limited to {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.read(limit + 1 - len(raw)):
                raw += chunk
                if len(raw) > limit:
                    raise too_large
    except TimeoutError:
        raise api_error(
            408, "body_timeout", f"the body did not arrive within {seconds:g} s"
        ) from None
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise InvalidRequest("the body is not valid JSON", "bad_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    check_storable(body)
    return body


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
