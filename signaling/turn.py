"""Short-lived TURN credentials, minted per session from a secret shared with the TURN server.

A browser behind a network that blocks UDP reaches the gateway only through a TURN relay, so it
needs TURN credentials; a long-lived TURN password on a page would be anyone's to reuse. The TURN
REST API scheme (draft-uberti-behave-turn-rest, what coturn's ``use-auth-secret`` with
``static-auth-secret`` implements) avoids that: the username is ``<expiry unix time>:<id>`` and
the password ``base64(HMAC-SHA1(secret, username))``. The TURN server recomputes the password
from the username with the same secret and refuses it once the time in it has passed, so what a
page learns is worth nothing after the TTL, and the gateway and the TURN server share only the
secret (no user database to keep in step).

Credentials for browsers, like ``tokens.py``'s invitations: the gateway's sessions mint one here
per interview, the ``welcome`` message carries it, and the relay's browser leg is handed the same
entry for its own relay candidates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

#: The W3C ``RTCIceServer`` dictionary, as JSON: ``urls``, optionally ``username``/``credential``.
IceServer = dict[str, Any]


@dataclass(frozen=True)
class TurnCredential:
    username: str
    credential: str
    #: Unix time after which the TURN server refuses ``username``.
    expires_at: int


def mint_credential(
    secret: str, user_id: str, *, ttl: int, now: float | None = None
) -> TurnCredential:
    """The TURN REST API credential for ``user_id``, valid for ``ttl`` seconds from ``now``."""
    expires_at = int(time.time() if now is None else now) + ttl
    username = f"{expires_at}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


@dataclass(frozen=True)
class SessionIceServers:
    """One session's ICE servers: what its browser is told, and what the gateway's browser
    leg uses. Both carry the same minted TURN entry; only the gateway's list holds the
    configured servers that have long-lived credentials."""

    browser: tuple[IceServer, ...] = ()
    gateway: tuple[IceServer, ...] = ()


@dataclass(frozen=True)
class IceServerMinter:
    """The gateway's TURN servers and their shared secret, and its configured ICE servers."""

    #: ``GATEWAY_ICE_SERVERS``: the gateway's own browser leg uses them all; the browser gets
    #: only those without credentials (STUN), since a configured credential is long-lived.
    configured: tuple[IceServer, ...] = ()
    #: ``turn:``/``turns:`` URLs of TURN servers that share ``secret`` (``use-auth-secret``).
    turn_urls: tuple[str, ...] = ()
    secret: str | None = None
    #: Seconds a minted credential is valid; it should cover an interview, reconnects included,
    #: because a TURN server refuses to refresh an allocation once the credential has expired.
    ttl: int = 3600

    def for_session(self, user_id: str, *, now: float | None = None) -> SessionIceServers:
        """Mint the session's TURN credential (if TURN is configured) and list its servers;
        the minted entry comes first, since aiortc uses only the first TURN server it finds."""
        minted: tuple[IceServer, ...] = ()
        if self.turn_urls and self.secret:
            credential = mint_credential(self.secret, user_id, ttl=self.ttl, now=now)
            minted = (
                {
                    "urls": list(self.turn_urls),
                    "username": credential.username,
                    "credential": credential.credential,
                },
            )
        return SessionIceServers(
            browser=minted + tuple(s for s in self.configured if not _has_credential(s)),
            gateway=minted + self.configured,
        )


def _has_credential(server: IceServer) -> bool:
    return "username" in server or "credential" in server
