"""What every HTTP exchange passes through: rate limits, CORS, and the security headers.

* **Rate limits** are token buckets keyed by client address (checked here, before any work) and
  by tenant (checked where the tenant becomes known: the admin API's authentication and the
  signaling admission). A refusal is ``429`` with ``Retry-After``; on a signaling socket whose
  tenant is over its limit, the ``rate_limited`` error.
* **CORS** answers only origins on the allowlist, by name. Credentials are never allowed: the
  API takes bearer tokens, never cookies, so no origin can ride on a browser's ambient login.
  A WebSocket upgrade from a foreign origin is refused the same way.
* **Headers**: ``nosniff`` and a referrer policy on everything; on HTML pages a CSP with no
  inline script, ``frame-ancestors 'none'`` and ``X-Frame-Options`` for older browsers.
  ``Cache-Control: no-store`` on the admin API (its answers carry invitation tokens and
  transcripts) and ``/metrics``; HSTS when the browser came over TLS (as the request says, or a
  trusted proxy for it: ``PublicUrls.scheme``); a ``Server`` header without versions.
* **/metrics** answers only its bearer token when ``GATEWAY_METRICS_TOKEN`` is set.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.config import Settings
from gateway.http.errors import api_error, error_body
from gateway.http.urls import PublicUrls, origin_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The room page's policy: scripts and styles only from this origin, media and sockets too.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; media-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: Everything else (JSON, plain text) is never meant to render or be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
API_PREFIX = "/v1/"
#: Sent over TLS only, so a browser that once reached the gateway securely never goes back.
HSTS = "max-age=31536000"
#: What the ``Server`` header says instead of aiohttp's "Python/3.x aiohttp/3.x" banner.
SERVER = "interview-gateway"
CORS_MAX_AGE = 600
#: Buckets idle this long are full again and are dropped to bound memory.
_PRUNE_AFTER_KEYS = 10_000


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests as a burst, refilled evenly.

    ``take(key)`` spends one token and returns 0, or returns how many seconds until one is
    available (and spends nothing). ``per_minute <= 0`` means unlimited.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, key: str) -> float:
        if self.capacity <= 0:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > _PRUNE_AFTER_KEYS:
                self._prune(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


@dataclass(frozen=True)
class Limits:
    """The gateway's four limiters."""

    api_ip: RateLimiter
    api_tenant: RateLimiter
    signal_ip: RateLimiter
    signal_tenant: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            api_ip=RateLimiter(settings.rate_api_per_ip),
            api_tenant=RateLimiter(settings.rate_api_per_tenant),
            signal_ip=RateLimiter(settings.rate_signal_per_ip),
            signal_tenant=RateLimiter(settings.rate_signal_per_tenant),
        )


def too_many_requests(wait: float, what: str) -> web.HTTPTooManyRequests:
    seconds = max(1, math.ceil(wait))
    return web.HTTPTooManyRequests(
        headers={"Retry-After": str(seconds)},
        text=error_body("rate_limited", f"too many {what}; retry in {seconds} s"),
        content_type="application/json",
    )


def _is_signal(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIX) and request.path.endswith("/signal")


class Security:
    """Installs the rate-limit, CORS and header policies on an application."""

    def __init__(self, settings: Settings, limits: Limits) -> None:
        self.limits = limits
        self.allowed = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)
        self.public_origin = origin_of(settings.public_url) if settings.public_url else None
        self.urls = PublicUrls.from_settings(settings)

    def install(self, app: web.Application) -> None:
        app.middlewares.extend([self.rate_limit, self.cors])
        app.on_response_prepare.append(self.headers)

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed or origin.lower() in self.allowed

    def same_origin(self, request: web.Request, page_origin: str) -> bool:
        """Whether a page at ``page_origin`` is the gateway's own: its host is the one the
        request addressed (as a trusted proxy reports it), or it is ``GATEWAY_PUBLIC_URL``'s."""
        if urlsplit(page_origin).netloc.lower() == self.urls.host(request).lower():
            return True
        return origin_of(page_origin) == self.public_origin

    @web.middleware
    async def rate_limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX) and request.method != "OPTIONS":
            signal = _is_signal(request)
            limiter = self.limits.signal_ip if signal else self.limits.api_ip
            wait = limiter.take(request.remote or "unknown")
            if wait > 0:
                raise too_many_requests(wait, "connections" if signal else "requests")
        return await handler(request)

    @web.middleware
    async def cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        # /static/: the browser client is imported cross-origin by the allowed web apps
        api = request.path.startswith((API_PREFIX, "/static/")) or request.path == "/openapi.json"
        if origin is None or not api:
            return await handler(request)
        if _is_signal(request):  # a socket from a page of a foreign origin
            if not (self.same_origin(request, origin) or self.origin_allowed(origin)):
                raise api_error(403, "origin_not_allowed", "this origin may not connect")
            return await handler(request)
        allowed = self.origin_allowed(origin)
        if request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            if not allowed:
                raise api_error(403, "origin_not_allowed", "this origin may not call the API")
            return web.Response(status=204, headers=self._preflight_headers(origin))
        response = await handler(request)
        if allowed:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = (
                "*" if "*" in self.allowed else origin
            )
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "Retry-After"
            response.headers.add(hdrs.VARY, "Origin")
        return response

    def _preflight_headers(self, origin: str) -> dict[str, str]:
        return {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*" if "*" in self.allowed else origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, POST, OPTIONS",
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Authorization, Content-Type",
            hdrs.ACCESS_CONTROL_MAX_AGE: str(CORS_MAX_AGE),
            hdrs.VARY: "Origin",
        }

    async def headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: also reaches static files and error pages."""
        headers = response.headers
        headers[hdrs.SERVER] = SERVER
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith(API_PREFIX) or request.path == "/metrics":
            headers[hdrs.CACHE_CONTROL] = "no-store"
        if self.urls.scheme(request) == "https":
            headers["Strict-Transport-Security"] = HSTS
        if response.content_type == "text/html":
            headers["Content-Security-Policy"] = PAGE_CSP
            headers["X-Frame-Options"] = "DENY"
        else:
            headers.setdefault("Content-Security-Policy", API_CSP)


def require_bearer(request: web.Request, token: str | None) -> None:
    """Nothing when ``token`` is None; otherwise ``401`` unless the request presents it as
    ``Authorization: Bearer <token>`` (compared in constant time)."""
    if token is None:
        return
    scheme, _, presented = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        raise api_error(
            401, "unauthorized", "this needs its bearer token", {"WWW-Authenticate": "Bearer"}
        )
