"""What the signaling server talks to for one connection of a candidate: it forwards to the
interview's session while the connection is the session's current one (``InterviewSession``
decides that; a rejoining socket replaces a stale one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signaling.server import Answer, IceCandidate, SignalingChannel

if TYPE_CHECKING:
    from gateway.sessions.session import InterviewSession


class ConnectionHandler:
    """The signaling server's view of one connection; it forwards to the session while current."""

    def __init__(self, session: InterviewSession, channel: SignalingChannel) -> None:
        self.session = session
        self.channel = channel
        self._told_so_far = False

    @property
    def ice_servers(self) -> tuple[dict[str, Any], ...]:
        """What the welcome message tells the browser to use (its minted TURN credential)."""
        return self.session.ice_servers.browser

    @property
    def reconnect_secret(self) -> str:
        """What the welcome message gives the candidate to rejoin this session later."""
        return self.session.reconnect_secret

    async def on_offer(self, sdp: str, *, reconnect: bool) -> Answer:
        """``reconnect`` is the client's say; the session knows better (``offer``). With its
        first answer a socket is told the interview so far (a rejoin, a reloaded page)."""
        answer = await self.session.offer(sdp)
        if not self._told_so_far:
            self._told_so_far = True
            await self.session.tell_so_far(self.channel)
        return answer

    async def on_candidate(self, candidate: IceCandidate | None) -> None:
        await self.session.candidate(candidate)

    async def on_client_event(self, event: dict[str, Any]) -> None:
        self.session.client_event(event)

    async def on_close(self, reason: str) -> None:
        await self.session.detach(self, reason)
