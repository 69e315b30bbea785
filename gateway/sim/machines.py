"""A stand-in for Fly's Machines API, so the ``fly`` backend's real HTTP client runs end to end.

This is not Fly. It follows the published contract of the Machines REST API (``superfly/docs``,
``machines/api/machines-resource`` and ``machines/machine-states``, summed up in
``shared/reference/fly-machines.md``) as far as the ``fly`` backend uses it:

- paths ``/v1/apps/{app}/machines`` (GET with ``metadata.KEY=VALUE`` filters and
  ``include_deleted``, POST create with ``config``, ``region``, ``skip_launch``),
  ``.../{id}`` (GET, DELETE with ``force``), ``.../{id}/start``, ``.../{id}/stop``,
  ``.../{id}/wait?state=started|stopped|destroyed&timeout=S`` (``stopped`` needs
  ``instance_id``; 408 when the time runs out), ``.../{id}/lease`` (POST ``{"ttl"}`` answers
  201 with ``data.nonce``, GET, DELETE) and ``.../{id}/metadata/{key}`` (POST ``{"value"}``);
- ``Authorization: Bearer <token>``; mutations of a leased Machine need the lease's
  ``fly-machine-lease-nonce`` (409 otherwise);
- states ``created`` (``skip_launch``), ``starting``, ``started``, ``stopping``, ``stopped``,
  ``destroyed``; ``auto_destroy`` destroys a Machine whose process exited, else it is
  ``stopped``; its ``checks`` (``passing``/``critical``) report the HTTP check;
- errors as ``{"error": "..."}`` with the status Fly uses (401, 404, 409, 412 for a region
  without capacity or a delete of a running Machine without ``force``, 429, 5xx).

A Machine "boots" by starting a local worker process (:class:`gateway.fleet.local.LocalBackend`,
the ``local`` backend's process start) with the Machine's ``config.env``, the app's secrets (as
``fly secrets set`` would give every Machine) and Fly's runtime variables; each Machine gets a
loopback address of its own as ``private_ip`` and its gateway listens there on the one worker
port, as each Fly Machine has its own IP. Its check passes once the gateway listens.

For tests it injects failures: :meth:`MachinesApi.fail` answers the next N matching calls with a
status (429 with ``Retry-After``, 5xx), and :attr:`MachinesApi.full_regions` makes creates in
those regions fail for lack of capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.fleet.backend import BackendError, WorkerSpec
from gateway.fleet.local import LocalBackend

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: the region a create without one lands in
DEFAULT_REGION = "ams"
#: states a ``wait`` may ask for
_WAITABLE = {"started", "stopped", "suspended", "destroyed"}


@dataclass
class _Lease:
    nonce: str
    owner: str
    description: str
    expires_at: float

    def json(self) -> dict[str, Any]:
        return {
            "status": "success",
            "data": {
                "nonce": self.nonce,
                "expires_at": int(self.expires_at),
                "owner": self.owner,
                "description": self.description,
                "version": "1",
            },
        }


@dataclass
class Machine:
    id: str
    name: str
    region: str
    private_ip: str
    config: dict[str, Any]
    state: str = "created"
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())
    created_at: float = field(default_factory=time.time)
    check: str = "critical"
    lease: _Lease | None = None
    #: the worker process's id in the local backend, while one runs
    local_id: str | None = None

    def json(self) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at))
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "region": self.region,
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "config": self.config,
            "checks": [
                {"name": name, "status": self.check} for name in self.config.get("checks", {})
            ],
            "created_at": stamp,
            "updated_at": stamp,
            **({"nonce": self.lease.nonce} if self.lease else {}),
        }


@dataclass
class _Fault:
    status: int
    times: int
    method: str | None
    action: str | None
    retry_after: float | None


class MachinesApi:
    """The stand-in's state and its aiohttp application (:meth:`app`)."""

    def __init__(
        self,
        *,
        token: str,
        app_name: str,
        data_dir: Path,
        worker_port: int,
        app_secrets: Mapping[str, str] | None = None,
        max_machines: int = 100,
    ) -> None:
        self.token = token
        self.app_name = app_name
        self.worker_port = worker_port
        self.app_secrets = dict(app_secrets or {})
        self.local = LocalBackend(data_dir, max_workers=max_machines)
        self.machines: dict[str, Machine] = {}
        #: regions whose creates fail for lack of capacity
        self.full_regions: set[str] = set()
        #: every call as ``(method, action)``, for a test that counts retries
        self.calls: list[tuple[str, str]] = []
        self._faults: list[_Fault] = []
        self._ips = (f"127.0.{n // 250 + 1}.{n % 250 + 1}" for n in itertools.count())
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- for tests --------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        action: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` calls (of ``method``, to ``action``: ``create``, ``start``,
        ``wait``, ``get``, ``list``, ``lease``, ``metadata``, ``stop``, ``delete``) answer
        ``status``."""
        self._faults.append(_Fault(status, times, method, action, retry_after))

    def live(self) -> list[Machine]:
        """Machines not destroyed (what a bill would show)."""
        return [m for m in self.machines.values() if m.state != "destroyed"]

    def address(self, machine_id: str) -> str | None:
        """Where a started Machine's gateway listens (``http://<private_ip>:<worker port>``),
        as Fly's proxy reaches a Machine by its id; None for one not started or unknown."""
        machine = self.machines.get(machine_id)
        if machine is None or machine.state != "started":
            return None
        return f"http://{machine.private_ip}:{self.worker_port}"

    def pid(self, machine_id: str) -> int | None:
        """The process id of the Machine's worker while it runs (a test kills it)."""
        machine = self.machines.get(machine_id)
        return self.local.pid(machine.local_id) if machine and machine.local_id else None

    async def close(self) -> None:
        """Destroys every Machine (its worker process killed)."""
        for machine in list(self.machines.values()):
            if machine.local_id is not None:
                await self.local.destroy(machine.local_id)
        for task in list(self._tasks):
            await task

    # -- the API ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_and_faults])
        base = "/v1/apps/{app}/machines"
        one = base + "/{id}"
        app.router.add_get(base, self._list)
        app.router.add_post(base, self._create)
        app.router.add_get(one, self._get)
        app.router.add_delete(one, self._delete)
        app.router.add_post(one + "/start", self._start)
        app.router.add_post(one + "/stop", self._stop)
        app.router.add_get(one + "/wait", self._wait)
        app.router.add_post(one + "/lease", self._lease_create)
        app.router.add_get(one + "/lease", self._lease_get)
        app.router.add_delete(one + "/lease", self._lease_release)
        app.router.add_post(one + "/metadata/{key}", self._metadata_set)
        return app

    @web.middleware
    async def _auth_and_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized")
        if request.match_info.get("app") != self.app_name:
            return _error(404, "app not found")
        action = _action(request)
        self.calls.append((request.method, action))
        for fault in self._faults:
            if (
                fault.times > 0
                and fault.method in (None, request.method)
                and fault.action in (None, action)
            ):
                fault.times -= 1
                headers = (
                    {"Retry-After": f"{fault.retry_after:g}"}
                    if fault.retry_after is not None
                    else {}
                )
                return _error(fault.status, f"injected {fault.status}", headers)
        return await handler(request)

    async def _list(self, request: web.Request) -> web.Response:
        wanted = {
            k[len("metadata.") :]: v for k, v in request.query.items() if k.startswith("metadata.")
        }
        deleted = request.query.get("include_deleted") == "true"
        return web.json_response(
            [
                m.json()
                for m in self.machines.values()
                if (deleted or m.state != "destroyed")
                and all(m.config.get("metadata", {}).get(k) == v for k, v in wanted.items())
            ]
        )

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        config = body.get("config")
        if not isinstance(config, dict) or not config.get("image"):
            return _error(400, "config.image is required")
        region = str(body.get("region") or DEFAULT_REGION)
        if region in self.full_regions:
            return _error(
                412,
                f"could not reserve resource for machine in {region}: insufficient memory"
                " available to fulfill request",
            )
        machine_id = secrets.token_hex(7)
        machine = Machine(
            machine_id,
            str(body.get("name") or f"machine-{machine_id[:6]}"),
            region,
            next(self._ips),
            {**config, "metadata": dict(config.get("metadata") or {})},
        )
        self.machines[machine_id] = machine
        if not body.get("skip_launch"):
            failure = await self._boot(machine)
            if failure is not None:
                return failure
        return web.json_response(machine.json())

    async def _get(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        return web.json_response(machine.json())

    async def _delete(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if (refused := self._leased(request, machine)) is not None:
            return refused
        if machine.state in ("started", "starting") and request.query.get("force") != "true":
            return _error(412, "failed_precondition: machine still active, refusing to delete")
        if machine.local_id is not None:
            await self.local.destroy(machine.local_id)
        await self._set(machine, "destroyed")
        return web.json_response({"ok": True})

    async def _start(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if (refused := self._leased(request, machine)) is not None:
            return refused
        previous = machine.state
        if machine.state in ("created", "stopped"):
            failure = await self._boot(machine)
            if failure is not None:
                return failure
        return web.json_response({"previous_state": previous, "migrated": False, "new_host": ""})

    async def _stop(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if (refused := self._leased(request, machine)) is not None:
            return refused
        if machine.local_id is not None and machine.state == "started":
            await self._set(machine, "stopping")
            await self.local.stop(machine.local_id)
        return web.json_response({"ok": True})

    async def _wait(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        state = request.query.get("state", "started")
        if state not in _WAITABLE:
            return _error(400, f"invalid state {state!r}")
        if state == "stopped" and not request.query.get("instance_id"):
            return _error(400, "instance_id is required to wait for stopped")
        try:
            timeout = int(request.query.get("timeout", "60"))
        except ValueError:
            return _error(400, "timeout must be a whole number of seconds")
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: machine.state in (state, "destroyed"))
        except TimeoutError:
            return _error(408, f"deadline_exceeded: machine was not {state} within {timeout} s")
        if machine.state != state:
            return _error(400, f"machine {machine.id} is destroyed")
        return web.json_response({"ok": True})

    async def _lease_create(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body = await request.json() if request.can_read_body else {}
        held = machine.lease
        if held is not None and held.expires_at > time.time():
            if request.headers.get("fly-machine-lease-nonce") != held.nonce:
                return _error(409, f"lease currently held by {held.owner}")
        ttl = int(body.get("ttl") or 30)
        machine.lease = _Lease(
            secrets.token_hex(8),
            "token-holder",
            str(body.get("description", "")),
            time.time() + ttl,
        )
        return web.json_response(machine.lease.json(), status=201)

    async def _lease_get(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if machine.lease is None or machine.lease.expires_at <= time.time():
            return _error(404, "no active lease")
        return web.json_response(machine.lease.json())

    async def _lease_release(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        held = machine.lease
        if held is not None and request.headers.get("fly-machine-lease-nonce") != held.nonce:
            return _error(400, "the lease nonce does not match")
        machine.lease = None
        return web.json_response({"ok": True})

    async def _metadata_set(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        if (refused := self._leased(request, machine)) is not None:
            return refused
        body = await request.json()
        machine.config["metadata"][request.match_info["key"]] = str(body.get("value", ""))
        return web.Response(status=204)

    # -- Machines and their processes -------------------------------------------------------

    def _machine(self, request: web.Request) -> Machine:
        machine = self.machines.get(request.match_info["id"])
        if machine is None:
            raise web.HTTPNotFound(
                text='{"error": "machine not found"}', content_type="application/json"
            )
        return machine

    def _leased(self, request: web.Request, machine: Machine) -> web.Response | None:
        held = machine.lease
        if held is None or held.expires_at <= time.time():
            return None
        if request.headers.get("fly-machine-lease-nonce") == held.nonce:
            return None
        return _error(409, f"machine {machine.id} lease currently held by {held.owner}")

    async def _boot(self, machine: Machine) -> web.Response | None:
        """Starts the Machine's worker process; ``started`` at once (the VM runs), its check
        passing once the gateway listens, ``destroyed`` (or ``stopped``) once it exits."""
        env = {
            **{str(k): str(v) for k, v in (machine.config.get("env") or {}).items()},
            **self.app_secrets,
            "GATEWAY_HOST": machine.private_ip,
            "GATEWAY_PORT": str(self.worker_port),
            "FLY_APP_NAME": self.app_name,
            "FLY_MACHINE_ID": machine.id,
            "FLY_REGION": machine.region,
            "FLY_PRIVATE_IP": machine.private_ip,
        }
        await self._set(machine, "starting")
        try:
            worker = await self.local.create(WorkerSpec(metadata={"machine": machine.id}, env=env))
        except BackendError as exc:
            await self._set(machine, "stopped")
            return _error(412, f"insufficient resources: {exc}")
        machine.local_id, machine.check = worker.id, "critical"
        await self._set(machine, "started")
        task = asyncio.create_task(self._watch(machine, worker.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def _watch(self, machine: Machine, local_id: str) -> None:
        try:
            await self.local.wait(local_id, "started", 3600)
            machine.check = "passing"
            await self._set(machine, machine.state)
        except BackendError:
            pass  # it exited before it listened
        await self.local.wait(local_id, "destroyed", 365 * 86400)
        if machine.local_id == local_id:
            machine.local_id, machine.check = None, "critical"
            if machine.state != "destroyed":
                done = "destroyed" if machine.config.get("auto_destroy") else "stopped"
                await self._set(machine, done)

    async def _set(self, machine: Machine, state: str) -> None:
        machine.state = state
        async with self._changed:
            self._changed.notify_all()


@dataclass(frozen=True)
class Served:
    """A stand-in listening on loopback: its state and its base URL."""

    api: MachinesApi
    url: str


@contextlib.asynccontextmanager
async def serve(
    *, token: str, app_name: str, data_dir: Path, **options: Any
) -> AsyncIterator[Served]:
    """The stand-in on ``127.0.0.1`` (a port of the system's choosing), its Machines on a worker
    port nobody uses; every Machine is destroyed and the server stopped on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        worker_port = int(probe.getsockname()[1])
    api = MachinesApi(
        token=token, app_name=app_name, data_dir=data_dir, worker_port=worker_port, **options
    )
    runner = web.AppRunner(api.app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield Served(api, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await api.close()
        await runner.cleanup()


def _action(request: web.Request) -> str:
    """What a call does, for fault matching: the last path segment's verb."""
    parts = request.path.rstrip("/").split("/")
    if parts[-1] == "machines":
        return "create" if request.method == "POST" else "list"
    if len(parts) >= 2 and parts[-2] == "metadata":
        return "metadata"
    if parts[-2] == "machines":
        return {"GET": "get", "DELETE": "delete"}.get(request.method, "update")
    return parts[-1]


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
