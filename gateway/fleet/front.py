"""The front: it owns the public signaling URL and hands each interview to a worker of its own.

A candidate's socket arrives at ``/v1/interviews/{id}/signal``. The front reads its hello and
checks the token itself (a worker costs a process, or a VM: nobody without a valid invitation
gets one), then finds the interview's worker: the one already claimed for it, or one it claims
and starts now (``storage.workers``: one INSERT that only one front wins, so two fronts never
give an interview two workers). Then it forwards the socket to the worker (``proxy``), hello
first. The worker does everything else, exactly as a standalone gateway would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from uuid import UUID

import aiohttp
from aiohttp import WSMsgType, web

from gateway.config import BOUNDS, Settings
from gateway.fleet import proxy, replay
from gateway.fleet.backend import FLEET_KEY, BackendError, CapacityError, WorkerBackend, WorkerSpec
from gateway.fleet.pool import WarmPool
from signaling import messages
from signaling.errors import SignalingError
from signaling.server import SIGNAL_PATH
from signaling.tokens import TokenVerifier
from storage import interviews, workers
from storage.database import Database

log = logging.getLogger(__name__)

#: How often a front polls for a worker that another front is starting (its progress is only
#: in the database), and retries a backend that had no room.
CLAIM_POLL = 0.1
CAPACITY_RETRY = 0.5
#: The close code that sends a candidate back for a replayed attempt (1012: service restart).
RECONNECT = 1012
#: Settings a worker must share with its front that are not bounded numbers.
_SHARED_ENV: dict[str, Callable[[Settings], str]] = {
    "GATEWAY_MODE": lambda s: s.mode,
    "GATEWAY_UPSTREAM": lambda s: s.upstream,
    "GATEWAY_ICE_ADDRESSES": lambda s: ",".join(s.ice_addresses),
    "GATEWAY_SIM_SCRIPT": lambda s: str(s.sim_script or ""),
    "GATEWAY_JWT_AUDIENCE": lambda s: s.jwt_audience or "",
    "GATEWAY_JWKS_URL": lambda s: s.jwks_url or "",
}
#: Bounded settings that are the front's own business, not a worker's.
_NOT_SHARED = {"port", "max_sessions", "max_workers", "worker_start_timeout", "worker_pool"}


def worker_env(settings: Settings, db: Database, secret: str) -> dict[str, str]:
    """The environment that makes a process a worker of this front: the same database, signing
    secret and session settings, one interview, no migrations (the front ran them)."""
    env = {
        variable: str(getattr(settings, name))
        for name, (variable, _, _) in BOUNDS.items()
        if name not in _NOT_SHARED
    }
    env.update({variable: value(settings) for variable, value in _SHARED_ENV.items()})
    env.update(
        DATABASE_URL=db.admin_conninfo,
        GATEWAY_JWT_SECRET=secret,
        GATEWAY_MIGRATE_ON_START="0",
        GATEWAY_MAX_SESSIONS="1",
        GATEWAY_ROLE="worker",
    )
    return env


class FleetStats:
    """What the front counts (claims, their latency to a ready worker, failures)."""

    #: upper bounds (seconds) of the claim latency histogram's buckets
    BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))

    def __init__(self) -> None:
        self.claims = 0
        self.claim_failures = 0
        #: seconds from claim to ready worker, most recent last (bounded), and the same for
        #: the claims that found a pooled worker (the rest created theirs: cold)
        self.claim_seconds: list[float] = []
        self.pooled_claim_seconds: list[float] = []
        self.cold_claim_seconds: list[float] = []
        self.claim_sum = 0.0
        self._bucket_counts = [0] * len(self.BUCKETS)

    def claimed(self, seconds: float, *, pooled: bool) -> None:
        self.claims += 1
        self.claim_sum += seconds
        self.claim_seconds = [*self.claim_seconds[-999:], seconds]
        if pooled:
            self.pooled_claim_seconds = [*self.pooled_claim_seconds[-999:], seconds]
        else:
            self.cold_claim_seconds = [*self.cold_claim_seconds[-999:], seconds]
        for index, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self._bucket_counts[index] += 1

    def claim_buckets(self) -> list[tuple[float, int]]:
        """Cumulative counts per upper bound, as a Prometheus histogram has them."""
        return list(zip(self.BUCKETS, self._bucket_counts, strict=True))


class Front:
    """Claims a worker per interview and routes the candidate's signaling to it."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        backend: WorkerBackend,
        verifier: TokenVerifier,
        front_id: UUID,
        env: Mapping[str, str],
        http: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.db = db
        self.backend = backend
        self.verifier = verifier
        self.front_id = front_id
        self.env = dict(env)
        self.http = http
        self.stats = FleetStats()
        #: started workers waiting for an interview (None: every claim starts one)
        self.pool: WarmPool | None = None
        #: interviews this front is starting a worker for: one start however many sockets ask
        self._starting: dict[UUID, asyncio.Future[str]] = {}

    def mount(self, app: web.Application) -> None:
        app.router.add_get(SIGNAL_PATH, self.handle)

    @property
    def replays(self) -> bool:
        """Whether candidates reach their worker by ``fly-replay`` rather than through us."""
        return self.backend.name == "fly" and self.settings.fly.routing == "replay"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        interview = request.match_info["interview_id"]
        if self.replays and (replayed := await self._replay(request, interview)) is not None:
            return replayed
        limit = self.settings.signal_max_message
        browser = web.WebSocketResponse(max_msg_size=limit * 4)
        await browser.prepare(request)
        try:
            first, hello = await self._hello(browser)
            claims = await self.verifier.confirm(self.verifier.verify(hello.token, interview))
            tenant_id, interview_id = UUID(claims.tenant_id), UUID(claims.interview_id)
            address = await self.worker_for(tenant_id, interview_id)
            if self.replays:
                # the worker is ready now, and the next attempt is replayed to it: Fly can
                # replay a request, not a socket already open (1012: service restart)
                await browser.close(code=RECONNECT, message=b"worker ready: connect again")
                return browser
            url = address.replace("http", "ws", 1) + request.path
            await proxy.forward(browser, self.http, url, first, max_message_size=limit * 4)
        except SignalingError as exc:
            await proxy.send_error(browser, exc)
        except proxy.WorkerUnreachable as exc:
            log.warning("interview %s: its worker is unreachable (%s)", interview, exc)
            await proxy.send_error(browser, SignalingError("worker_lost", "its worker is gone"))
        return browser

    async def _replay(self, request: web.Request, interview: str) -> web.Response | None:
        """A response that makes Fly's proxy replay the request on the interview's worker, if
        it has a ready one and the request was not replayed there already; else None (the
        socket is opened here: the hello is checked and a worker claimed)."""
        try:
            interview_id = UUID(interview)
        except ValueError:
            return None
        claim = await workers.get_claim(self.db, interview_id)
        if claim is None or claim.state != "ready" or claim.worker_id is None:
            return None
        header = replay.replay_to(
            claim.worker_id,
            app=self.settings.fly.app,
            replay_src=request.headers.get(replay.REPLAY_SRC),
        )
        if header is None:
            log.warning("interview %s: a replay to %s came back", interview, claim.worker_id)
            return None
        return web.Response(status=204, headers={replay.REPLAY: header})

    async def _hello(self, browser: web.WebSocketResponse) -> tuple[str, messages.Hello]:
        """The first frame, which must be a hello, within the hello timeout."""
        try:
            msg = await browser.receive(timeout=self.settings.hello_timeout)
        except TimeoutError:
            raise SignalingError("hello_timeout", "no hello arrived in time") from None
        if msg.type != WSMsgType.TEXT:
            raise SignalingError("hello_required", "the first message must be hello")
        hello = messages.parse_client_message(msg.data, max_size=self.settings.signal_max_message)
        if not isinstance(hello, messages.Hello):
            raise SignalingError("hello_required", "the first message must be hello")
        return str(msg.data), hello

    async def worker_for(self, tenant_id: UUID, interview_id: UUID) -> str:
        """The address of the interview's worker, claimed and started if it has none yet."""
        record = await interviews.get_session(self.db, tenant_id, interview_id)
        if record is None:
            raise SignalingError("interview_not_found", "no such interview")
        if record.status in ("ended", "failed"):
            raise SignalingError("interview_ended", "this interview has already ended")
        deadline = time.monotonic() + self.settings.worker_start_timeout
        while True:
            claim = await workers.get_claim(self.db, interview_id)
            if claim is not None and claim.tenant_id != tenant_id:
                raise SignalingError("interview_not_found", "no such interview")
            if claim is not None and claim.state == "ready":
                return claim.address
            starting = self._starting.get(interview_id)
            if starting is not None:
                return await asyncio.shield(starting)
            if claim is None and await workers.try_claim(
                self.db, tenant_id, interview_id, self.front_id, self.backend.name
            ):
                future = asyncio.ensure_future(self._start(tenant_id, interview_id, deadline))
                self._starting[interview_id] = future
                future.add_done_callback(lambda _: self._starting.pop(interview_id, None))
                return await asyncio.shield(future)
            if time.monotonic() >= deadline:  # another front's worker never became ready
                raise SignalingError("worker_unavailable", "the interview's worker did not start")
            await asyncio.sleep(CLAIM_POLL)

    async def _start(self, tenant_id: UUID, interview_id: UUID, deadline: float) -> str:
        """Creates and starts this front's worker for a claimed interview; on any failure the
        worker is destroyed and the claim given up, so a retry starts afresh."""
        began = time.monotonic()
        spec = WorkerSpec(
            metadata={
                FLEET_KEY: str(self.front_id),
                "tenant_id": str(tenant_id),
                "interview_id": str(interview_id),
            },
            env=self.env,
        )
        pooled = self.pool.take() if self.pool is not None else None
        worker_id: str | None = pooled.id if pooled is not None else None
        try:
            if pooled is not None:  # tagged with its interview; started if only created
                await workers.assign(self.db, interview_id, self.front_id, pooled.id)
                tags = {**spec.metadata, "pooled": "0"}
                new = {k: v for k, v in tags.items() if pooled.metadata.get(k) != v}
                await self.backend.start(pooled.id, metadata=new)
            while worker_id is None:
                try:
                    worker_id = (await self.backend.create(spec)).id
                except CapacityError:
                    if time.monotonic() + CAPACITY_RETRY >= deadline:
                        raise
                    await asyncio.sleep(CAPACITY_RETRY)  # a worker may exit meanwhile
                else:
                    await workers.assign(self.db, interview_id, self.front_id, worker_id)
            worker = await self.backend.wait(
                worker_id, "started", max(0.1, deadline - time.monotonic())
            )
            await workers.mark_ready(self.db, interview_id, self.front_id, worker.address)
        except BaseException as exc:
            self.stats.claim_failures += 1
            if worker_id is not None:
                try:
                    await self.backend.destroy(worker_id)
                except BackendError as lost:  # unclaimed now: the reaper destroys it later
                    log.warning(
                        "interview %s: worker %s not destroyed (%s)", interview_id, worker_id, lost
                    )
            await workers.drop_claim(self.db, interview_id)
            if isinstance(exc, BackendError):
                log.warning("interview %s: no worker (%s)", interview_id, exc)
                raise SignalingError("worker_unavailable", "no worker could be started") from exc
            raise
        self.stats.claimed(time.monotonic() - began, pooled=pooled is not None)
        return worker.address
