"""Invitations: an interview row plus a candidate token, and the link that carries both; and
observer tokens, which watch an existing interview read-only (``sessions.observers``).

The admin API and the ``invite`` command create them; ``serve`` uses them to print a
ready-to-use link, and ``simulate`` to set up its interviews.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from gateway.http.urls import websocket_url
from signaling.tokens import issue_token
from storage import interviews, tenants
from storage.database import Database


@dataclass(frozen=True, slots=True)
class Invitation:
    tenant_id: UUID
    interview_id: UUID
    token: str
    expires_at: datetime | None = None

    def room_url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/interview/{self.interview_id}#token={self.token}"

    def signal_url(self, base_url: str) -> str:
        return f"{websocket_url(base_url.rstrip('/'))}/v1/interviews/{self.interview_id}/signal"


async def invite(
    db: Database,
    secret: str,
    tenant_id: UUID,
    *,
    mode: str = "auto",
    candidate_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    ttl: float = 24 * 3600,
    audience: str | None = None,
    single_use: bool = True,
    max_duration: int | None = None,
    upstream_session: dict[str, Any] | None = None,
    recording: Literal["off", "audio"] | None = None,
) -> Invitation:
    """Create an interview for ``tenant_id`` and a candidate token for it, valid ``ttl`` s."""
    interview_id = await interviews.create_session(
        db, tenant_id, requested_mode=mode, candidate_ref=candidate_ref, metadata=metadata
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    await interviews.set_interview_options(
        db,
        tenant_id,
        interview_id,
        expires_at=expires_at,
        max_duration_s=max_duration,
        upstream_session=upstream_session,
        recording=recording,
    )
    token = issue_token(
        secret,
        tenant_id=str(tenant_id),
        interview_id=str(interview_id),
        role="candidate",
        ttl=ttl,
        audience=audience,
        single_use=None if single_use else False,
    )
    return Invitation(tenant_id, interview_id, token, expires_at)


def observer_token(
    secret: str,
    tenant_id: UUID,
    interview_id: UUID,
    *,
    role: str = "observer",
    subject: str | None = None,
    ttl: float = 4 * 3600,
    audience: str | None = None,
) -> tuple[str, datetime]:
    """A token for ``role`` (``observer`` or ``interviewer``) that watches ``interview_id``
    (reusable until it expires: an observer may come back), and when it expires. ``subject``
    is who the audit rows will say watched."""
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    token = issue_token(
        secret,
        tenant_id=str(tenant_id),
        interview_id=str(interview_id),
        role=role,
        ttl=ttl,
        audience=audience,
        subject=subject,
    )
    return token, expires_at


async def default_tenant(db: Database, data_dir: Path) -> UUID:
    """The tenant that ``serve`` invites into when nobody configured one; kept across runs."""
    path = data_dir / "default-tenant"
    if path.exists():
        tenant_id = UUID(path.read_text().strip())
        if await tenants.tenant_exists(db, tenant_id):
            return tenant_id
    tenant_id = await tenants.create_tenant(db, "default")
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(str(tenant_id))
    return tenant_id
