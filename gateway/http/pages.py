"""The pages the gateway serves to candidates: the interview room and its static files.

The room is one static HTML file for every interview: the interview id is in the path and the
candidate's token in the URL fragment (``#token=...``), which browsers never send to a server,
so the page itself needs no templating and no inline script. The files under ``static/`` are
the dependency-free browser client (``interview-client.js``), which any web app may import, and
the room's own script and style.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
ROOM_PAGE = STATIC_DIR / "room.html"


def add_routes(app: web.Application) -> None:
    """Serve ``/static/...`` and the interview room at ``/interview/{interview_id}``."""
    app.router.add_get("/interview/{interview_id}", _room)
    app.router.add_static("/static/", STATIC_DIR, name="static")


async def _room(request: web.Request) -> web.StreamResponse:
    try:
        UUID(request.match_info["interview_id"])
    except ValueError:
        raise web.HTTPNotFound(
            text="No interview at this address; check your invitation link."
        ) from None
    # no-store: the page is tiny, and a cached copy must never outlive a gateway upgrade.
    return web.FileResponse(
        ROOM_PAGE,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
