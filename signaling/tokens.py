"""Tokens: the credential a browser presents in ``hello``, and the admin's bearer token.

Browsers cannot set headers on a WebSocket, so the interview token travels in ``hello``. Two
kinds of signature are accepted:

* **HS256** with a shared secret: the gateway's own, or a Supabase project's JWT secret (the
  same HMAC over the same bytes, so either side may issue);
* **RS256 / ES256** from a JWKS URL (an identity provider's public keys), cached, and fetched
  again when a token names a ``kid`` the cache lacks, at most once per ``min_refresh_interval``.

The sans-I/O signaling session verifies synchronously, so :meth:`TokenVerifier.verify` never
does I/O: a token whose key is not cached yet comes back *unverified* (``claims.verified`` is
False) and the gateway's asynchronous admission must call :meth:`TokenVerifier.confirm`, which
fetches the key and checks the signature, before it admits anyone. Every refusal has its own
code (see ``signaling/errors.py``); messages never include a token or a secret.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from signaling.errors import SignalingError

#: The roles an interview token may carry.
ROLES = frozenset({"candidate", "interviewer", "observer"})
#: The roles that join an interview read-only, as observers (``gateway.sessions.observers``).
OBSERVER_ROLES = frozenset({"interviewer", "observer"})
#: Asymmetric algorithms accepted from a JWKS; the shared secret signs HS256 only.
JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})
HS256 = "HS256"
#: The longest ``jti`` an invitation may carry: the gateway records used invitations by it, and
#: its database refuses longer ones (refusing here makes that ``token_invalid``, not a fault).
MAX_JTI_CHARS = 200


@dataclass(frozen=True)
class TokenClaims:
    """An interview token's claims. ``single_use``: a candidate invitation that admits once
    (plus reconnects to its live session); candidate tokens are single-use unless they say
    ``"single_use": false``."""

    tenant_id: str
    interview_id: str
    role: str
    exp: int
    jti: str | None
    single_use: bool = False
    #: Who holds the token (``sub``), e.g. the interviewer an observer token was minted for.
    subject: str | None = None
    #: Set while the signature is unchecked (its key was not cached); see ``confirm``.
    unverified_token: str | None = field(default=None, repr=False, compare=False)

    @property
    def verified(self) -> bool:
        return self.unverified_token is None


@dataclass(frozen=True)
class AdminClaims:
    """An admin bearer token's claims: whose data it may touch, and who holds it."""

    tenant_id: str
    role: str
    subject: str | None
    exp: int


class TokenError(SignalingError):
    """A token that does not admit its bearer; always fatal. Codes: ``token_missing``,
    ``token_invalid`` (malformed or forged), ``token_expired``, ``token_not_yet_valid``,
    ``wrong_audience``, ``wrong_interview``, ``keys_unavailable``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, fatal=True)


class JwksKeySet:
    """An identity provider's public keys, fetched from ``url`` and cached by ``kid``.

    A token naming an unknown ``kid`` (the provider rotated its keys) triggers one refresh;
    refreshes are single-flight and at most one per ``min_refresh_interval`` seconds, so a
    stream of tokens with made-up ``kid`` values cannot turn the gateway against the provider.
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._clock = clock
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        #: How many times the set was fetched (for tests and metrics).
        self.fetches = 0
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._last_fetch: float | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JwksKeySet({self.url!r}, keys={len(self._keys)})"

    def cached(self, kid: str | None) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid``, refreshing the set once if it is unknown and a refresh is due."""
        if (found := self.cached(kid)) is not None:
            return found
        async with self._lock:  # single flight: waiters find the fresh set when it is their turn
            if (found := self.cached(kid)) is not None:
                return found
            due = self._last_fetch is None or (
                self._clock() - self._last_fetch >= self.min_refresh_interval
            )
            if due:
                await self._fetch()
            return self.cached(kid)

    async def refresh(self) -> None:
        """Fetch the set now (start-up, or a periodic refresh)."""
        async with self._lock:
            await self._fetch()

    async def _fetch(self) -> None:
        self._last_fetch = self._clock()
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.get(self.url) as response:
                    response.raise_for_status()
                    document = await response.json(content_type=None)
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            raise TokenError(
                "keys_unavailable", f"the signing keys could not be fetched ({type(exc).__name__})"
            ) from None
        self._keys = {k.key_id: k for k in keys if k.algorithm_name in JWKS_ALGORITHMS}


class TokenVerifier:
    """Checks signature, expiry and not-before (with ``leeway`` seconds of clock skew),
    audience, and scope. Give it a ``secret`` (HS256), a ``jwks`` key set, or both."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        jwks: JwksKeySet | None = None,
        audience: str | None = None,
        leeway: float = 0,
        admin_roles: frozenset[str] = frozenset({"admin"}),
    ) -> None:
        if not secret and jwks is None:
            raise ValueError("the token secret must not be empty (or give a JWKS)")
        self._secret = secret or None
        self._jwks = jwks
        self._audience = audience
        self._leeway = leeway
        self._admin_roles = admin_roles

    def __repr__(self) -> str:  # the secret must not reach a log through repr()
        return (
            f"TokenVerifier(hs256={self._secret is not None}, jwks={self._jwks!r}, "
            f"audience={self._audience!r}, leeway={self._leeway})"
        )

    # -- interview tokens ------------------------------------------------------------------

    def verify(self, token: str | None, interview_id: str) -> TokenClaims:
        """Without I/O. When the token's JWKS key is not cached the claims come back
        unverified, checked for shape and scope only; ``confirm`` finishes the job."""
        algorithm, kid = self._header(token)
        assert token is not None
        if algorithm == HS256:
            return _interview_claims(self._decode(token, self._secret, algorithm), interview_id)
        assert self._jwks is not None
        key = self._jwks.cached(kid)
        if key is not None:
            return _interview_claims(self._decode(token, key, algorithm), interview_id)
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token does not decode") from None
        claims = _interview_claims(unverified, interview_id)
        return TokenClaims(**{**claims.__dict__, "unverified_token": token})

    async def confirm(self, claims: TokenClaims) -> TokenClaims:
        """Verified claims: ``claims`` itself, or, for unverified ones, the result of a full
        verification with the key fetched from the JWKS."""
        if claims.unverified_token is None:
            return claims
        return await self.verify_async(claims.unverified_token, claims.interview_id)

    async def verify_async(self, token: str | None, interview_id: str) -> TokenClaims:
        algorithm, key = await self._key(token)
        assert token is not None
        return _interview_claims(self._decode(token, key, algorithm), interview_id)

    # -- admin tokens ----------------------------------------------------------------------

    async def verify_admin(self, token: str | None) -> AdminClaims:
        """An admin bearer token: a role in ``admin_roles`` and a tenant, as ``tenant_id`` or
        (Supabase custom claims) ``app_metadata.tenant_id``."""
        algorithm, key = await self._key(token)
        assert token is not None
        payload = self._decode(token, key, algorithm, required=("exp", "role"))
        metadata = payload.get("app_metadata")
        tenant = payload.get("tenant_id") or (
            metadata.get("tenant_id") if isinstance(metadata, Mapping) else None
        )
        role, subject = payload.get("role"), payload.get("sub")
        if not isinstance(tenant, str) or not tenant:
            raise TokenError("token_invalid", "the token names no tenant")
        if not isinstance(role, str):
            raise TokenError("token_invalid", "the token's role must be a string")
        if role not in self._admin_roles:
            raise TokenError("token_invalid", "the token's role may not use the admin API")
        return AdminClaims(
            tenant_id=tenant,
            role=role,
            subject=subject if isinstance(subject, str) else None,
            exp=int(payload["exp"]),
        )

    # -- shared ----------------------------------------------------------------------------

    def _header(self, token: str | None) -> tuple[str, str | None]:
        if not token:
            raise TokenError("token_missing", "hello must carry the interview token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("token_invalid", "the token is not a JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm == HS256 and self._secret is not None:
            return algorithm, None
        if algorithm in JWKS_ALGORITHMS and self._jwks is not None:
            return algorithm, kid if isinstance(kid, str) else None
        raise TokenError("token_invalid", f"tokens signed with {algorithm!r} are not accepted")

    async def _key(self, token: str | None) -> tuple[str, Any]:
        algorithm, kid = self._header(token)
        if algorithm == HS256:
            return algorithm, self._secret
        assert self._jwks is not None
        key = await self._jwks.key(kid)
        if key is None:
            raise TokenError("token_invalid", "the token's signing key is unknown")
        return algorithm, key

    def _decode(
        self,
        token: str,
        key: Any,
        algorithm: str,
        required: tuple[str, ...] = ("exp", "tenant_id", "interview_id", "role"),
    ) -> dict[str, Any]:
        if isinstance(key, jwt.PyJWK):
            if key.algorithm_name != algorithm:
                raise TokenError("token_invalid", "the token's algorithm does not match its key")
            key = key.key
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": list(required), "verify_aud": bool(self._audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token_not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience", "the token is meant for another service") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise TokenError("wrong_audience", "the token names no audience") from None
            raise TokenError("token_invalid", f"the token was refused: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError("token_invalid", f"the token was refused: {exc}") from None


def _interview_claims(payload: dict[str, Any], interview_id: str) -> TokenClaims:
    values = {name: payload.get(name) for name in ("tenant_id", "interview_id", "role")}
    if not all(isinstance(v, str) and v for v in values.values()):
        raise TokenError("token_invalid", "tenant_id, interview_id and role must be strings")
    jti, exp, single_use = payload.get("jti"), payload.get("exp"), payload.get("single_use")
    if (jti is not None and not isinstance(jti, str)) or not isinstance(exp, int | float):
        raise TokenError("token_invalid", "jti must be a string and exp a number")
    if jti is not None and len(jti) > MAX_JTI_CHARS:
        raise TokenError("token_invalid", f"jti must be at most {MAX_JTI_CHARS} characters")
    if values["role"] not in ROLES:
        raise TokenError("token_invalid", f"role must be one of {', '.join(sorted(ROLES))}")
    if single_use is not None and not isinstance(single_use, bool):
        raise TokenError("token_invalid", "single_use must be true or false")
    subject = payload.get("sub")
    if subject is not None and not (isinstance(subject, str) and len(subject) <= MAX_JTI_CHARS):
        raise TokenError("token_invalid", f"sub must be a string of at most {MAX_JTI_CHARS}")
    if values["interview_id"] != interview_id:
        raise TokenError("wrong_interview", "the token is for another interview")
    once = values["role"] == "candidate" and single_use is not False
    if once and not jti:
        raise TokenError("token_invalid", "a single-use invitation needs a jti")
    return TokenClaims(
        tenant_id=str(values["tenant_id"]),
        interview_id=str(values["interview_id"]),
        role=str(values["role"]),
        exp=int(exp),
        jti=jti,
        single_use=once,
        subject=subject,
    )


def issue_token(
    secret: str,
    *,
    tenant_id: str,
    interview_id: str,
    role: str = "candidate",
    ttl: float = 3600,
    jti: str | None = None,
    audience: str | None = None,
    single_use: bool | None = None,
    subject: str | None = None,
) -> str:
    """Sign an interview token; ``jti`` defaults to a fresh UUID (the single-use record);
    ``subject`` (``sub``) names its holder (an observer's audit rows say who watched)."""
    now = int(time.time())
    payload: dict[str, object] = {
        "tenant_id": tenant_id,
        "interview_id": interview_id,
        "role": role,
        "iat": now,
        "exp": now + int(ttl),
        "jti": jti or uuid.uuid4().hex,
    }
    if audience is not None:
        payload["aud"] = audience
    if single_use is not None:
        payload["single_use"] = single_use
    if subject is not None:
        payload["sub"] = subject
    return jwt.encode(payload, secret, algorithm=HS256)


def issue_admin_token(
    secret: str,
    *,
    tenant_id: str,
    subject: str | None = None,
    role: str = "admin",
    ttl: float = 3600,
    audience: str | None = None,
) -> str:
    """Sign an admin bearer token for one tenant's data (HS256)."""
    now = int(time.time())
    payload: dict[str, object] = {
        "tenant_id": tenant_id,
        "role": role,
        "iat": now,
        "exp": now + int(ttl),
    }
    if subject is not None:
        payload["sub"] = subject
    if audience is not None:
        payload["aud"] = audience
    return jwt.encode(payload, secret, algorithm=HS256)
