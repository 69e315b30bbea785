"""Interview tokens: the credential a browser presents in its first signaling message.

Browsers cannot set headers on a WebSocket, so the token travels in ``hello``. For now it is an
HS256 JWT signed with a shared secret and scoped to one interview; the verifier is pure (no
I/O), so the sans-I/O session can call it directly. Error messages never include the token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from signaling.errors import SignalingError

_ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ("exp", "tenant_id", "interview_id", "role")


@dataclass(frozen=True)
class TokenClaims:
    tenant_id: str
    interview_id: str
    role: str
    exp: int
    jti: str | None


class TokenError(SignalingError):
    """A token that does not admit its bearer: ``token_missing``, ``token_invalid``,
    ``token_expired`` or ``wrong_interview``; always fatal."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, fatal=True)


class TokenVerifier:
    """Checks signature, expiry (with ``leeway`` seconds of clock skew), audience and scope."""

    def __init__(self, secret: str, *, audience: str | None = None, leeway: float = 0) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._secret = secret
        self._audience = audience
        self._leeway = leeway

    def __repr__(self) -> str:  # the secret must not reach a log through repr()
        return f"TokenVerifier(audience={self._audience!r}, leeway={self._leeway})"

    def verify(self, token: str | None, interview_id: str) -> TokenClaims:
        if not token:
            raise TokenError("token_missing", "hello must carry the interview token")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": list(_REQUIRED_CLAIMS), "verify_aud": bool(self._audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError("token_invalid", f"the token was refused: {exc}") from None
        claims = _claims(payload)
        if claims.interview_id != interview_id:
            raise TokenError("wrong_interview", "the token is for another interview")
        return claims


def _claims(payload: dict[str, object]) -> TokenClaims:
    values = {name: payload.get(name) for name in ("tenant_id", "interview_id", "role")}
    if not all(isinstance(v, str) and v for v in values.values()):
        raise TokenError("token_invalid", "tenant_id, interview_id and role must be strings")
    jti = payload.get("jti")
    exp = payload["exp"]
    if (jti is not None and not isinstance(jti, str)) or not isinstance(exp, int | float):
        raise TokenError("token_invalid", "jti must be a string and exp a number")
    return TokenClaims(
        tenant_id=str(values["tenant_id"]),
        interview_id=str(values["interview_id"]),
        role=str(values["role"]),
        exp=int(exp),
        jti=jti,
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
) -> str:
    """Sign a token for one interview; ``jti`` defaults to a fresh UUID (for revocation lists)."""
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
    return jwt.encode(payload, secret, algorithm=_ALGORITHM)
