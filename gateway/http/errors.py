"""The HTTP surface's one error shape: ``{"error": {"code", "message"}}`` with a fitting status.

Kept apart so that the admin API, request validation and the security middlewares all refuse
in the same words without importing each other.
"""

from __future__ import annotations

import json

from aiohttp import web

_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    408: web.HTTPRequestTimeout,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    503: web.HTTPServiceUnavailable,
}


def error_body(code: str, message: str) -> str:
    """The JSON text of an error object."""
    return json.dumps({"error": {"code": code, "message": message}})


def api_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An HTTP error whose body is the API's JSON error object."""
    body = error_body(code, message)
    if status == 413:  # its constructor wants the size limit first
        return web.HTTPRequestEntityTooLarge(
            0, text=body, content_type="application/json", headers=headers
        )
    return _STATUS[status](text=body, content_type="application/json", headers=headers)


class InvalidRequest(web.HTTPBadRequest):
    """A body or query parameter that does not fit the API's definitions: ``400`` whose message
    names the field. Raised by :mod:`gateway.http.validation`, answered as is by aiohttp."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(text=error_body(code, message), content_type="application/json")
        self.code = code
        self.message = message
