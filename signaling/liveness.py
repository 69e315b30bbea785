"""How long each end of a signaling socket waits before it counts the other as gone: the one
rule the server's keepalive, the clients and the session's grace follow.

With ``P`` the ping interval (``GATEWAY_PING_INTERVAL``) and ``G`` the reconnect grace
(``GATEWAY_RECONNECT_GRACE``), as ``docs/signaling.md`` ("Liveness and grace") writes them out:

- the server pings every ``P`` and drops a client it heard nothing from since its previous ping
  (``ServerProtocol.keepalive_due``): ``P`` to ``2 P`` after the client's last frame;
- a client hears the server at least every ``P`` (its pings), so ``CLIENT_SILENCE_INTERVALS``
  of silence is a dead path, not a slow one; ``welcome`` tells the client the figure
  (``silence_timeout``) and the client reconnects at once;
- the gateway's grace (one timer per session, ``gateway.sessions.session``) runs from the
  first loss (the socket or the media) until nothing is lost. A client whose path died is back
  in time when ``G >= (CLIENT_SILENCE_INTERVALS - 1) P + R``, ``R`` its reconnect (a new socket
  and peer connection): the defaults, ``P = G = 10 s``, leave it 5 s.

Before, the browser waited 2.5 intervals (25 s), long after the gateway's grace had run out.
"""

from __future__ import annotations

#: Ping intervals without a frame from the server after which a client counts the socket dead.
CLIENT_SILENCE_INTERVALS = 1.5


def client_silence(ping_interval: float) -> float:
    """Seconds of silence from the server after which a client counts the socket dead."""
    return CLIENT_SILENCE_INTERVALS * ping_interval
