"""The ``fly`` backend: each worker is a Fly Machine, driven through Fly's Machines REST API.

A Machine is created with ``auto_destroy`` and restart policy ``no`` (so the gateway exiting at
the end of its interview removes it), tagged in ``metadata`` with the front, tenant and
interview, and with an HTTP check on ``/healthz``: Fly's ``started`` means the VM runs, not that
the gateway listens, so :meth:`FlyBackend.wait` for ``started`` also waits for the check to
pass. A warm pool is Machines created with ``skip_launch`` (``created``, image pulled, nothing
billed for CPU); claiming one is :meth:`FlyBackend.start` under a lease: lease, tag, start,
release.

Fly asks its callers to handle failures: a create that finds no capacity in a region is retried
in the next configured region; a 429 or 5xx answer (or a connection that fails) is retried with
exponential backoff, honouring ``Retry-After``, until ``api_deadline`` has passed; then the call
raises :class:`~gateway.fleet.backend.BackendError` (the front gives the candidate
``worker_unavailable``). The API token goes in one header and nowhere else: no log line, error
or Machine config carries it. Secrets the worker needs (database URL, signing secret, upstream
key) are the workers' app's Fly secrets, never in a Machine's config, which the API shows.

Relay media: Fly delivers UDP to a Machine only through a service with protocol ``udp`` whose
port is the same inside and out, on the app's dedicated IPv4, to a socket bound to
``fly-global-services`` (``networking/udp-and-tcp``). So with ``media_udp_port`` (the front's
``GATEWAY_ICE_UDP_PORT``, in relay and auto mode) a worker Machine gets that service and the
environment that makes its UDP mux bind there (``GATEWAY_ICE_UDP_PORT``,
``GATEWAY_ICE_BIND_ADDRESS=fly-global-services``), and the front's
``GATEWAY_ICE_PUBLIC_ADDRESSES`` (the dedicated IPv4 its candidates must name).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.config import FlySettings
from gateway.fleet.backend import (
    BackendError,
    CapacityError,
    WaitTimeout,
    Worker,
    WorkerNotFound,
    WorkerSpec,
    WorkerState,
)

log = logging.getLogger(__name__)

#: Environment a Machine's config must not carry (the API returns config to anyone with the
#: token): the workers' app's secrets provide them.
SECRET_ENV = frozenset({"DATABASE_URL", "GATEWAY_JWT_SECRET", "OPENAI_API_KEY", "FLY_API_TOKEN"})
#: The Machines API's longest ``wait`` (seconds); a longer wait is several calls.
MAX_WAIT = 60
#: How long a claim's lease lives if its holder dies before releasing it.
LEASE_TTL = 30
#: First and longest pause between retries of a 429/5xx answer.
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
#: How often a started Machine's checks are read until they pass.
CHECK_POLL = 0.05
#: The address a Machine's UDP sockets must bind for Fly to deliver UDP to them.
FLY_UDP_ADDRESS = "fly-global-services"
#: The check Fly runs on a worker, whose passing makes the Machine ready.
CHECK_NAME = "ready"
_STATES = {"created", "starting", "started", "stopping", "stopped", "destroying", "destroyed"}


class ApiError(BackendError):
    """The Machines API refused a call; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Machines API answered {status}: {message}")
        self.status = status
        self.message = message


def is_capacity(status: int, message: str) -> bool:
    """Whether an answer to a create means the region has no room (Fly answers 412 with an
    ``insufficient resources``/``capacity`` message): then another region may have some."""
    text = message.lower()
    return status in (409, 412, 422) and ("insufficient" in text or "capacity" in text)


def is_transient(status: int) -> bool:
    return status == 429 or status >= 500


class FlyBackend:
    """Workers as Fly Machines of ``settings.app``."""

    name = "fly"

    def __init__(
        self,
        settings: FlySettings,
        http: aiohttp.ClientSession,
        *,
        media_udp_port: int = 0,
        public_addresses: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.http = http
        #: the UDP port a worker's relay legs share (0: no UDP service, media by TURN or proxy)
        self.media_udp_port = media_udp_port
        self.public_addresses = public_addresses
        #: ``destroyed`` (by this front) and ``exited`` (found gone by a wait for it)
        self.exits: Counter[str] = Counter()
        self._base = f"{settings.api_url}/v1/apps/{settings.app}/machines"
        self._headers = {"Authorization": f"Bearer {settings.token}"}

    # -- the interface ----------------------------------------------------------------------

    async def create(self, spec: WorkerSpec, *, skip_launch: bool = False) -> Worker:
        """A Machine in the first configured region that has room (:class:`CapacityError`
        when none has)."""
        body = {"config": self._config(spec), "skip_launch": skip_launch}
        regions: tuple[str | None, ...] = self.settings.regions or (None,)
        refusals = []
        for region in regions:
            try:
                machine = await self._call(
                    "POST", "", json={**body, **({"region": region} if region else {})}
                )
            except ApiError as exc:
                if not is_capacity(exc.status, exc.message):
                    raise
                log.warning("no capacity for a worker in %s (%s)", region or "any region", exc)
                refusals.append(f"{region or 'default'}: {exc.message}")
                continue
            return self._worker(machine)
        raise CapacityError(f"no region had room for a worker ({'; '.join(refusals)})")

    async def start(self, worker_id: str, metadata: Mapping[str, str] | None = None) -> None:
        """Lease the Machine, tag it, start it, release the lease: nobody else changes it in
        between (another front's reaper, an operator's ``fly machine`` command)."""
        lease = await self._call("POST", f"/{worker_id}/lease", json={"ttl": LEASE_TTL})
        nonce = str((lease.get("data") or {}).get("nonce", ""))
        try:
            for key, value in (metadata or {}).items():
                await self._call(
                    "POST", f"/{worker_id}/metadata/{key}", json={"value": value}, nonce=nonce
                )
            await self._call("POST", f"/{worker_id}/start", nonce=nonce)
        finally:
            try:
                await self._call("DELETE", f"/{worker_id}/lease", nonce=nonce)
            except WorkerNotFound:
                pass  # gone already: so is its lease

    async def wait(self, worker_id: str, state: WorkerState, within: float) -> Worker:
        """``wait?state=`` until the Machine is in ``state``; for ``started``, then until its
        check passes (the gateway listens). A Machine destroyed meanwhile is
        :class:`WorkerNotFound`, unless ``destroyed`` was asked for."""
        deadline = time.monotonic() + within
        while True:
            try:
                machine = await self._call("GET", f"/{worker_id}")
            except WorkerNotFound:
                if state == "destroyed":
                    self.exits["exited"] += 1
                    return Worker(worker_id, "destroyed", {})
                raise
            current = str(machine.get("state", ""))
            if current == "destroyed" == state:
                self.exits["exited"] += 1  # its gateway exited (auto_destroy), or it was removed
                return self._worker(machine)
            if current == "destroyed" and state != "destroyed":
                raise WorkerNotFound(f"machine {worker_id} is destroyed")
            if current == state and (state != "started" or _checks_pass(machine)):
                return self._worker(machine)
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"machine {worker_id} was not {state} within {within:g} s")
            if current == state:  # started, its check not passing yet
                await asyncio.sleep(min(CHECK_POLL, left))
                continue
            params = {"state": state, "timeout": str(max(1, min(MAX_WAIT, int(left))))}
            if state == "stopped":
                params["instance_id"] = str(machine.get("instance_id", ""))
            try:
                await self._call("GET", f"/{worker_id}/wait", params=params, within=left + 5)
            except ApiError as exc:
                if exc.status != 408:  # 408: the wait's own timeout; look again
                    raise
            except TimeoutError:
                pass

    async def stop(self, worker_id: str) -> None:
        await self._call("POST", f"/{worker_id}/stop")

    async def destroy(self, worker_id: str) -> None:
        try:
            await self._call("DELETE", f"/{worker_id}", params={"force": "true"})
        except WorkerNotFound:
            return
        self.exits["destroyed"] += 1

    async def list(self, metadata: Mapping[str, str]) -> list[Worker]:
        params = {f"metadata.{key}": value for key, value in metadata.items()}
        machines = await self._call("GET", "", params=params)
        if not isinstance(machines, list):
            raise BackendError("Machines API listed something that is not a list")
        return [
            self._worker(m)
            for m in machines
            if m.get("state") != "destroyed"
            and all(
                (m.get("config", {}).get("metadata") or {}).get(k) == v for k, v in metadata.items()
            )
        ]

    async def close(self) -> None:
        """The HTTP session is the front's: nothing of its own to release."""

    # -- the API ----------------------------------------------------------------------------

    def _config(self, spec: WorkerSpec) -> dict[str, Any]:
        s = self.settings
        env = {k: v for k, v in spec.env.items() if k not in SECRET_ENV}
        env.update(GATEWAY_HOST="0.0.0.0", GATEWAY_PORT=str(s.worker_port))
        services: list[dict[str, Any]] = [
            {
                "protocol": "tcp",
                "internal_port": s.worker_port,
                "autostop": False,
                "autostart": False,
                "ports": [
                    {"port": 443, "handlers": ["tls", "http"]},
                    {"port": 80, "handlers": ["http"]},
                ],
            }
        ]
        if self.media_udp_port:  # Fly rewrites UDP addresses, never ports: same port in and out
            port = self.media_udp_port
            services.append({"protocol": "udp", "internal_port": port, "ports": [{"port": port}]})
            env.update(GATEWAY_ICE_UDP_PORT=str(port), GATEWAY_ICE_BIND_ADDRESS=FLY_UDP_ADDRESS)
            if self.public_addresses:
                env["GATEWAY_ICE_PUBLIC_ADDRESSES"] = ",".join(self.public_addresses)
        return {
            "image": s.image,
            "env": env,
            "guest": {"cpu_kind": s.cpu_kind, "cpus": s.cpus, "memory_mb": s.memory_mb},
            "metadata": dict(spec.metadata),
            "restart": {"policy": "no"},
            "auto_destroy": True,
            "init": {"cmd": ["interview-gateway", "serve", "--role", "worker", "--no-invite"]},
            "services": services,
            "checks": {
                CHECK_NAME: {
                    "type": "http",
                    "port": s.worker_port,
                    "method": "GET",
                    "path": "/healthz",
                    "interval": "1s",
                    "timeout": "2s",
                }
            },
        }

    def _worker(self, machine: Mapping[str, Any]) -> Worker:
        state = str(machine.get("state", ""))
        ip = str(machine.get("private_ip", ""))
        host = f"[{ip}]" if ":" in ip else ip
        return Worker(
            id=str(machine.get("id", "")),
            state=state if state in _STATES else "starting",  # type: ignore[arg-type]
            metadata=dict((machine.get("config") or {}).get("metadata") or {}),
            address=f"http://{host}:{self.settings.worker_port}" if ip else "",
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        nonce: str | None = None,
        within: float = 30.0,
    ) -> Any:
        """One API call, retried on 429/5xx and on connection failures until the deadline;
        the answer's JSON body (``{}`` when it has none). 404 is :class:`WorkerNotFound`."""
        headers = dict(self._headers)
        if nonce:
            headers["fly-machine-lease-nonce"] = nonce
        deadline = time.monotonic() + self.settings.api_deadline
        pause = BACKOFF_FIRST
        what = f"{method} {path or '/'}"
        while True:
            try:
                async with self.http.request(
                    method,
                    self._base + path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=within),
                ) as response:
                    body = await _body(response)
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, OSError) as exc:
                status, body, retry_after = (
                    0,
                    {"error": f"unreachable ({type(exc).__name__})"},
                    None,
                )
            if status < 400 and status != 0:
                return body
            message = (
                str(body.get("error") or body.get("message") or "")
                if isinstance(body, dict)
                else ""
            )
            if status == 404:
                raise WorkerNotFound(f"{what}: {message or 'not found'}")
            if status != 0 and not is_transient(status):
                raise ApiError(status, message or "no reason given")
            wait = _retry_after(retry_after, pause)
            if time.monotonic() + wait >= deadline:
                raise ApiError(
                    status,
                    f"{message or 'no answer'} (still failing after"
                    f" {self.settings.api_deadline:g} s of retries)",
                )
            log.info("Machines API %s: %s %s; retrying in %.2f s", what, status, message, wait)
            await asyncio.sleep(wait)
            pause = min(BACKOFF_MAX, pause * 2)


def _checks_pass(machine: Mapping[str, Any]) -> bool:
    checks = machine.get("checks") or []
    return bool(checks) and all(c.get("status") == "passing" for c in checks)


def _retry_after(header: str | None, pause: float) -> float:
    """The server's ``Retry-After`` (seconds) when it gives one, else ``pause`` with jitter."""
    if header is not None:
        try:
            return min(BACKOFF_MAX, max(0.0, float(header)))
        except ValueError:
            pass
    return pause * (0.5 + random.random() / 2)


async def _body(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    if not text:
        return {}
    try:
        return await response.json(content_type=None)
    except ValueError:
        return {"error": text[:200]}
