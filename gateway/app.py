"""The aiohttp application: routes, and the start-up and shutdown of shared resources.

Shared resources live in ``cleanup_ctx`` generators, created in order and closed in reverse:
database -> transcript writer -> HTTP client -> upstream -> sessions. Shutdown therefore ends
every session (recorded as such) before the writer flushes and before the database goes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.config import Settings
from gateway.fleet.metrics import FleetCollector
from gateway.fleet.runtime import Fleet, running_front
from gateway.http import api, metrics, pages, security
from gateway.http.recordings import RecordingsApi
from gateway.http.reports import ReportsApi
from gateway.media.forwarding import MediaStats
from gateway.media.host_sockets import open_host_sockets
from gateway.media.relay import Relay, RelayOptions
from gateway.recording.recorder import RecordingOptions, Recordings
from gateway.recording.storage import segment_storage
from gateway.sessions.admission import Admission
from gateway.sessions.manager import SessionManager
from gateway.sessions.reconciler import Reconciler
from gateway.upstream.call import Call, CallListener, CallMode
from gateway.upstream.integrity import ClientEventPolicy
from gateway.upstream.live import LiveUpstream
from gateway.upstream.openai import (
    RealtimeUpstream,
    UpstreamClient,
    api_key_from_env,
    merge_session,
)
from gateway.upstream.proxy import ProxyCall
from signaling.server import SIGNAL_PATH, SignalingChannel, SignalingHandler, signaling_handler
from signaling.tokens import JwksKeySet, TokenClaims, TokenVerifier
from storage.database import Database, open_database
from storage.session_state import StateWriter
from storage.transcripts import TranscriptWriter

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
WRITER = web.AppKey("writer", TranscriptWriter)
UPSTREAM = web.AppKey("upstream", UpstreamClient)
SESSIONS = web.AppKey("sessions", SessionManager)
RECONCILER = web.AppKey("reconciler", Reconciler)
JWT_SECRET = web.AppKey("jwt_secret", str)
METRICS = web.AppKey("metrics", CollectorRegistry)
#: the in-process simulated upstream, when that is the upstream (tests look at its calls)
SIMULATED_UPSTREAM = web.AppKey("simulated_upstream", object)
#: a front's workers (``serve --role front``): the front routes signaling to them
FLEET = web.AppKey("fleet", Fleet)
VERIFIER = web.AppKey("verifier", TokenVerifier)


def jwt_secret(settings: Settings) -> str:
    """The configured signing secret, or one made up once and kept in the data directory."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.data_dir / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True)
class Calls:
    """The call factory the sessions use: relay calls from ``gateway.media``, proxy calls from
    ``gateway.upstream``, both over this gateway's one upstream client (either contract)."""

    upstream: UpstreamClient
    relay_options: RelayOptions
    #: where relayed interviews are recorded (None: they are not)...
    recordings: Recordings | None = None
    #: ...and whether one that asks nothing is (``GATEWAY_RECORDING=audio``; ``requested``:
    #: only interviews created with ``recording: audio``)
    record_by_default: bool = False

    @property
    def upstream_kind(self) -> str:
        return self.upstream.kind

    def create(
        self,
        mode: CallMode,
        listener: CallListener,
        upstream_session: dict[str, Any] | None,
        *,
        tenant_id: UUID,
        interview_id: UUID,
        browser_ice_servers: Sequence[dict[str, Any]] = (),
        recording: str | None = None,
    ) -> Call:
        asked = self.record_by_default if recording is None else recording == "audio"
        recordings = self.recordings if asked else None
        if recordings is not None and isinstance(self.upstream, LiveUpstream):
            # the upstream keeps its own recording too, downloaded once the interview ends
            upstream_session = merge_session(upstream_session, self.upstream.storing())
        if mode == "relay":
            return Relay(
                self.upstream,
                listener,
                options=replace(self.relay_options, browser_ice_servers=browser_ice_servers),
                session=upstream_session,
                recording=recordings.start(tenant_id, interview_id) if recordings else None,
            )
        return ProxyCall(
            self.upstream,
            listener,
            session=upstream_session,
            client_events=self.relay_options.client_events,  # the one policy, in either mode
        )

    def ended(
        self,
        tenant_id: UUID,
        interview_id: UUID,
        session_ids: Sequence[str],
        recording: str | None = None,
    ) -> asyncio.Task[None] | None:
        """The interview is over: on GPT-Live, when it was recorded, the upstream's own
        recording of its sessions is fetched in the background (``recording.content``)."""
        asked = self.record_by_default if recording is None else recording == "audio"
        if not (asked and session_ids and self.recordings is not None):
            return None
        if not isinstance(self.upstream, LiveUpstream):
            return None
        return self.recordings.fetch_content(
            tenant_id, interview_id, session_ids, self.upstream.download_recording
        )


def create_app(settings: Settings) -> web.Application:
    """The gateway as an aiohttp application; nothing starts until the app does.

    The process must have called ``gateway.media.install()`` (``serve`` does, at start).
    """
    # A connection's request must arrive within the header timeout (aiohttp's keep-alive
    # timeout runs from the connection's start too): gateway.http.connections.
    app = web.Application(
        client_max_size=1024 * 1024,
        handler_args={"keepalive_timeout": settings.http_header_timeout},
    )
    app[SETTINGS] = settings
    app[JWT_SECRET] = jwt_secret(settings)
    app.cleanup_ctx.extend([_database, _writer, _upstream, _sessions])
    verifier = app[VERIFIER] = TokenVerifier(
        app[JWT_SECRET],
        jwks=JwksKeySet(settings.jwks_url, min_refresh_interval=settings.jwks_min_refresh)
        if settings.jwks_url
        else None,
        audience=settings.jwt_audience,
        admin_roles=frozenset(settings.admin_roles),
    )
    limits = security.Limits.from_settings(settings)
    security.Security(settings, limits).install(app)
    admission = Admission(verifier, limits.signal_tenant)

    async def connect(claims: TokenClaims, channel: SignalingChannel) -> SignalingHandler:
        return await admission.connect(claims, channel, app[DATABASE], app[SESSIONS])

    if settings.role == "front":  # the interview's worker serves its signaling
        app.cleanup_ctx.append(_fleet)

        async def route(request: web.Request) -> web.StreamResponse:
            return await app[FLEET].front.handle(request)

        app.router.add_get(SIGNAL_PATH, route)
    else:
        signaling_handler(
            connect,
            verifier,
            hello_timeout=settings.hello_timeout,
            ping_interval=settings.ping_interval,
            max_message_size=settings.signal_max_message,
            allow_remote_candidates=settings.allowed_remote_candidates,
            max_remote_candidates=settings.ice_max_remote_candidates,
        ).mount(app)
    admin = api.AdminApi(
        settings,
        verifier=verifier,
        secret=app[JWT_SECRET],
        limiter=limits.api_tenant,
        database=lambda: app[DATABASE],
        sessions=lambda: app[SESSIONS],
    )
    admin.mount(app)
    ReportsApi(admin, lambda: app[DATABASE]).mount(app)
    RecordingsApi(
        admin.tenant,
        database=lambda: app[DATABASE],
        sessions=lambda: app[SESSIONS],
        storage=segment_storage(settings),
        scratch_dir=settings.data_dir / "recording-exports",
    ).mount(app)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    pages.add_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DATABASE] = await open_database(
        settings.database_url,
        data_dir=settings.data_dir,
        migrate=settings.migrate_on_start,
        app_password=settings.db_app_password,
    )
    yield
    await app[DATABASE].close()


async def _writer(app: web.Application) -> AsyncIterator[None]:
    writer = TranscriptWriter(app[DATABASE], journal_dir=app[SETTINGS].data_dir / "journal")
    await writer.start()
    app[WRITER] = writer
    yield
    await writer.close()


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    """The configured upstream; ``sim``/``sim-live``: an in-process simulated one on loopback
    (it serves both contracts; the client chosen speaks one)."""
    settings = app[SETTINGS]
    client = LiveUpstream if settings.upstream.endswith("-live") else RealtimeUpstream
    async with aiohttp.ClientSession() as http:
        if settings.upstream.startswith("openai"):
            key = api_key_from_env()
            if key is None:
                raise RuntimeError(f"GATEWAY_UPSTREAM={settings.upstream} needs OPENAI_API_KEY")
            app[UPSTREAM] = client(
                kind=settings.upstream,
                base_url=settings.upstream_base_url,
                api_key=key,
                http=http,
                auth_header=settings.upstream_auth,
                session=settings.upstream_session,
            )
            yield
            return
        from gateway.sim.script import Script
        from gateway.sim.upstream import SimulatedUpstream

        key = "sk-sim-" + secrets.token_urlsafe(16)
        script = Script.load(settings.sim_script) if settings.sim_script else Script.default()
        # the scripted closing line ends the interview, unless the deployment names other words
        app[SETTINGS] = replace(settings, end_phrase=settings.end_phrase or script.closing)
        sim = SimulatedUpstream(
            script=script,
            api_key=key,
            ice_addresses=settings.ice_addresses or ("127.0.0.1",),
            words_per_second=settings.sim_words_per_second,
        )
        base_url = await sim.start("127.0.0.1", 0)
        app[SIMULATED_UPSTREAM] = sim
        app[UPSTREAM] = client(
            kind=settings.upstream,
            base_url=base_url,
            api_key=key,
            http=http,
            session=settings.upstream_session,
        )
        try:
            yield
        finally:
            await sim.close()


async def _sessions(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    media_stats = MediaStats()
    ice_sockets = await open_host_sockets(
        udp_port=settings.ice_udp_port,
        bind_addresses=settings.ice_bind_addresses,
        gather_addresses=settings.ice_addresses,
        ports=settings.ice_udp_ports,
        public=settings.ice_public_addresses,
    )
    relay_options = RelayOptions(
        upstream_ice_servers=settings.upstream_ice_servers,
        ice_addresses=settings.ice_addresses,
        ice_sockets=ice_sockets,
        connect_timeout=settings.upstream_connect_timeout,
        peer_timeout=settings.peer_timeout,
        upstream_timeout=settings.upstream_timeout,
        client_events=ClientEventPolicy(settings.client_events),
        stats=media_stats,
    )
    recordings = (
        Recordings(
            RecordingOptions(
                db=app[DATABASE],
                storage=segment_storage(settings),
                spool_dir=settings.data_dir / "recording-spool",
                segment_seconds=settings.recording_segment_seconds,
                retry_seconds=settings.recording_retry_seconds,
                retention_days=settings.recording_retention_days,
            )
        )
        if settings.recording != "off"
        else None
    )
    # An earlier run's journaled state changes land first: the claims they give up are not
    # the reconciler's to finalize.
    state = StateWriter(app[DATABASE], settings.data_dir / "state-journal")
    await state.start()
    if recordings is not None:
        recordings.recover()
    reconciler = Reconciler(
        app[DATABASE],
        lost_after=settings.lost_after,
        kind="worker" if settings.role == "worker" else "gateway",
    )
    await reconciler.start()
    app[RECONCILER] = reconciler
    app[SESSIONS] = SessionManager(
        settings,
        db=app[DATABASE],
        writer=app[WRITER],
        state=state,
        calls=Calls(app[UPSTREAM], relay_options, recordings, settings.recording == "audio"),
        gateway_id=reconciler.gateway_id,
    )
    mux = ice_sockets.mux if ice_sockets is not None else None
    app[METRICS] = metrics.registry_for(app[SESSIONS], app[WRITER], media_stats, mux)
    yield
    await app[SESSIONS].close()
    if recordings is not None:
        await recordings.close()
    await state.close()  # first: the claims it gives up let the reconciler retire this process
    await reconciler.close()
    if mux is not None:
        await mux.close()


async def _fleet(app: web.Application) -> AsyncIterator[None]:
    async with running_front(
        app[SETTINGS],
        db=app[DATABASE],
        secret=app[JWT_SECRET],
        verifier=app[VERIFIER],
        front_id=app[RECONCILER].gateway_id,
    ) as fleet:
        app[FLEET] = fleet
        app[METRICS].register(FleetCollector(fleet))
        yield


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready when the database answers, an upstream is configured and a session fits."""
    app = request.app
    reasons = []
    try:
        async with app[DATABASE].pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception:
        reasons.append("database unreachable")
    if UPSTREAM not in app:
        reasons.append("no upstream configured")
    manager = app[SESSIONS]
    if manager.draining:
        reasons.append("draining")
    if manager.session_capacity_left() == 0:
        reasons.append("no session capacity left")
    if manager.settings.mode == "relay" and manager.relay_capacity_left() == 0:
        reasons.append("no relay capacity left")
    body = {
        "status": "ready" if not reasons else "not ready",
        "reasons": reasons,
        "sessions": len(manager),
        "relay_capacity_left": manager.relay_capacity_left(),
        "session_capacity_left": manager.session_capacity_left(),
    }
    return web.json_response(body, status=200 if not reasons else 503)


async def _metrics(request: web.Request) -> web.Response:
    security.require_bearer(request, request.app[SETTINGS].metrics_token)
    return web.Response(
        body=generate_latest(request.app[METRICS]), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
