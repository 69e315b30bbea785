"""The pages the gateway serves: the interview room, the report and dashboard shells, and
their static files.

The room is one static HTML file for every interview: the interview id is in the path and the
candidate's token in the URL fragment (``#token=...``), which browsers never send to a server,
so the page itself needs no templating and no inline script. The files under ``static/`` are
the dependency-free browser client (``interview-client.js``), which any web app may import, and
the room's own script and style.

The report (``/interview/{id}/report``) and the tenant dashboard (``/dashboard``) are shells
the same way: they hold no data, and their script (``report.js``) fetches the content from
the API with the viewer's bearer credential (``gateway.http.reports``), which it takes from
the fragment (``#token=...``) or a form and keeps in the tab's ``sessionStorage`` only.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
ROOM_PAGE = STATIC_DIR / "room.html"
REPORT_PAGE = STATIC_DIR / "report.html"
DASHBOARD_PAGE = STATIC_DIR / "dashboard.html"


def add_routes(app: web.Application) -> None:
    """Serve ``/static/...``, the interview room at ``/interview/{interview_id}``, its report
    at ``/interview/{interview_id}/report`` and the tenant dashboard at ``/dashboard``."""
    app.router.add_get("/interview/{interview_id}", _room)
    app.router.add_get("/interview/{interview_id}/report", _report)
    app.router.add_get("/dashboard", _dashboard)
    app.router.add_static("/static/", STATIC_DIR, name="static")


def _check_interview_id(request: web.Request) -> None:
    try:
        UUID(request.match_info["interview_id"])
    except ValueError:
        raise web.HTTPNotFound(
            text="No interview at this address; check your invitation link."
        ) from None


async def _room(request: web.Request) -> web.StreamResponse:
    _check_interview_id(request)
    return _page(ROOM_PAGE)


async def _report(request: web.Request) -> web.StreamResponse:
    _check_interview_id(request)
    return _page(REPORT_PAGE)


async def _dashboard(request: web.Request) -> web.StreamResponse:
    return _page(DASHBOARD_PAGE)


def _page(path: Path) -> web.FileResponse:
    # no-store: the page is tiny, and a cached copy must never outlive a gateway upgrade.
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
