"""The served ``/openapi.json`` and the API's request checking agree on every limit.

The cases are read out of the document the gateway serves, not written here: for each field of
``NewInterview`` and each query parameter, its bounds, lengths, pattern, choices, default and
nullability become requests just inside and just outside them, sent to the real API. A limit
changed in the validator but not in the document (or the reverse) fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from gateway.app import JWT_SECRET
from signaling.tokens import TokenVerifier

from .conftest import ApiTenant, GatewayFactory, make_tenant


@dataclass
class Case:
    why: str
    body: dict[str, Any]
    accepted: bool


def nested(path: list[str], value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for the path ``["a", "b"]``."""
    body: Any = value
    for name in reversed(path):
        body = {name: body}
    return dict(body)


def ecma_matches(pattern: str, text: str) -> bool:
    """JSON Schema's (ECMA-262) reading of a pattern: unanchored search, and ``$`` without the
    multiline flag is the very end (Python's ``$`` also matches before a final newline)."""
    return re.search(pattern.replace("$", r"\Z"), text) is not None


def value_cases(schema: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(why, value, accepted) for one property's schema."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    enum = schema.get("enum", [])
    for choice in enum:
        yield f"enum {choice!r}", choice, True
    if enum:
        yield "not in the enum", "telepathy", False
    yield "null", None, "null" in types or None in enum
    if "integer" in types:
        low, high = schema["minimum"], schema["maximum"]
        yield from [("minimum", low, True), ("maximum", high, True)]
        yield from [("below minimum", low - 1, False), ("above maximum", high + 1, False)]
        yield from [("a float", low + 0.5, False), ("a numeric string", str(low), False)]
        yield "a boolean", True, False
    if "string" in types:
        low, high = schema.get("minLength", 0), schema["maxLength"]
        pattern = schema.get("pattern")
        samples = ["a" * low, "a" * high, "a" * (high + 1), "Alloy", "al loy", "alloy\n", "é"]
        samples += ["a" * (low - 1)] if low > 0 else []
        for text in samples:
            fits = low <= len(text) <= high and (pattern is None or ecma_matches(pattern, text))
            yield f"string of {len(text)}: {text[:8]!r}", text, fits
        yield "a number", 5, False
    if "boolean" in types:
        yield from [("true", True, True), ("false", False, True), ("a string", "true", False)]
        yield "a number", 1, False
    if "object" in types:
        yield "an empty object", {}, True
        yield from [("a list", [], False), ("a string", "x", False)]


def body_cases(schema: dict[str, Any], path: list[str]) -> Iterator[Case]:
    for name, prop in schema["properties"].items():
        for why, value, accepted in value_cases(prop):
            yield Case(f"{'.'.join([*path, name])}: {why}", nested([*path, name], value), accepted)
        if "properties" in prop:
            yield from body_cases(prop, [*path, name])
    yield Case(f"{'.'.join(path) or 'body'}: unknown field", nested([*path, "surprise"], 1), False)


def depth_cases(max_depth: int) -> Iterator[Case]:
    """``metadata`` is the body's level 1; a value at ``max_depth`` fits, one deeper does not."""
    for levels, accepted in ((max_depth, True), (max_depth + 1, False)):
        value: Any = 1
        for _ in range(levels - 1):
            value = {"a": value}
        yield Case(f"a value at level {levels}", {"metadata": value}, accepted)


async def served_document(tenant: ApiTenant) -> dict[str, Any]:
    async with tenant.http.get(tenant.url("/openapi.json")) as response:
        assert response.status == 200
        return dict(await response.json())


async def test_every_body_limit_in_the_document_is_the_one_enforced(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(rate_api_per_ip=0, rate_api_per_tenant=0)
    acme = await make_tenant(gateway, http, "acme")
    document = await served_document(acme)
    schema = document["components"]["schemas"]["NewInterview"]
    cases = [*body_cases(schema, []), *depth_cases(schema["x-max-depth"])]
    wrong = []
    for case in cases:
        raw = json.dumps(case.body)
        headers = {"Content-Type": "application/json"}
        async with await acme.request("POST", "/v1/interviews", data=raw, headers=headers) as r:
            if (r.status == 201) != case.accepted or r.status not in (201, 400):
                wrong.append((case.why, r.status, await r.text()))
    assert wrong == [], wrong
    assert sum(c.accepted for c in cases) >= 20 and sum(not c.accepted for c in cases) >= 30

    defaults = {n: p["default"] for n, p in schema["properties"].items() if "default" in p}
    assert defaults.keys() == {"mode", "expires_in", "single_use"}
    created = await acme.create()
    assert created["mode"] == defaults["mode"]
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert abs(lifetime.total_seconds() - defaults["expires_in"]) < 60
    claims = TokenVerifier(gateway.app[JWT_SECRET]).verify(created["token"], created["id"])
    assert claims.single_use is defaults["single_use"]


async def test_every_query_limit_in_the_document_is_the_one_enforced(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(rate_api_per_ip=0, rate_api_per_tenant=0)
    acme = await make_tenant(gateway, http, "acme")
    interview = await acme.create()
    document = await served_document(acme)
    paths = {
        "/v1/interviews": "/v1/interviews",
        "/v1/interviews/{interview_id}/transcript": f"/v1/interviews/{interview['id']}/transcript",
    }
    checked = []
    for template, path in paths.items():
        for parameter in document["paths"][template]["get"]["parameters"]:
            if parameter["in"] != "query":
                continue
            name, schema = parameter["name"], parameter["schema"]
            values: list[tuple[Any, bool]] = [(choice, True) for choice in schema.get("enum", [])]
            values += [("pdf", False)] if "enum" in schema else []
            if schema.get("type") == "integer":
                low, high = schema["minimum"], schema["maximum"]
                values += [(low, True), (high, True), (low - 1, False), (high + 1, False)]
                values += [("two", False)]
            for value, accepted in values:
                async with await acme.request("GET", path, params={name: str(value)}) as r:
                    assert (r.status == 200) == accepted, (name, value, r.status)
                    assert r.status in (200, 400)
                    if accepted and schema.get("type") == "integer":
                        assert (await r.json())[name] == value
            async with await acme.request("GET", path) as r:  # absent: the default
                assert r.status == 200
                if schema.get("type") == "integer":
                    assert (await r.json())[name] == schema["default"]
                else:
                    assert r.content_type == "application/json" and schema["default"] == "json"
            checked.append(name)
    assert sorted(checked) == ["format", "limit", "offset"]
