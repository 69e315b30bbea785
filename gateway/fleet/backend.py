"""The one interface every worker backend implements, shaped after Fly's Machines API.

A worker is one ``interview-gateway serve --role worker`` process that serves one interview and
exits when it ends. The verbs are the Machines API's (create, start, wait, stop, destroy, list
by metadata) so that the ``local`` backend (processes on this machine) and a Machines-API
backend are interchangeable behind the front and the reaper, which only ever see this module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

#: The Machines API's states that a worker passes through (Fly's ``suspended`` and
#: ``replacing`` never happen to a worker: it is never suspended or updated in place).
WorkerState = Literal[
    "created", "starting", "started", "stopping", "stopped", "destroying", "destroyed"
]

#: The metadata key every fleet worker carries, so that ``list`` finds exactly the fleet's.
FLEET_KEY = "interview_gateway_fleet"


class BackendError(Exception):
    """A backend could not do what was asked; ``str()`` is one sentence for a log."""


class CapacityError(BackendError):
    """No room for another worker (in this region, on this machine): try elsewhere or later."""


class WorkerNotFound(BackendError):
    """The backend knows no worker by this id (destroyed, or never there)."""


class WaitTimeout(BackendError):
    """The worker did not reach the state waited for in time."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a new worker runs with: its metadata (tenant, interview, the fleet key) and the
    environment that makes it a worker of this front (database, secret, mode)."""

    metadata: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Worker:
    """A snapshot of one worker, as the backend last saw it."""

    id: str
    state: WorkerState
    metadata: Mapping[str, str]
    #: where the front reaches the worker's HTTP port once it is started ("" before)
    address: str = ""


class WorkerBackend(Protocol):
    """Workers on some substrate. Every call may raise :class:`BackendError`."""

    #: the name in ``--backend`` and in the claim record
    name: str
    #: workers seen gone since start, by why (a metric: ``gateway_fleet_worker_exits``)
    exits: Counter[str]

    async def create(self, spec: WorkerSpec, *, skip_launch: bool = False) -> Worker:
        """A new worker, started unless ``skip_launch`` (then it waits, stopped, for
        :meth:`start`)."""
        ...

    async def start(self, worker_id: str, metadata: Mapping[str, str] | None = None) -> None:
        """Start a created worker, tagged first with ``metadata`` (a pooled worker learns its
        tenant and interview when it is claimed)."""
        ...

    async def wait(self, worker_id: str, state: WorkerState, within: float) -> Worker:
        """The worker once it is in ``state``; :class:`WaitTimeout` after ``within`` s."""
        ...

    async def stop(self, worker_id: str) -> None:
        """Ask the worker to stop (SIGTERM: it drains, its interview ends as ``shutdown``)."""
        ...

    async def destroy(self, worker_id: str) -> None:
        """Remove the worker, stopping it by force if it still runs; a worker already gone is
        not an error."""
        ...

    async def list(self, metadata: Mapping[str, str]) -> list[Worker]:
        """The workers whose metadata holds every given key and value."""
        ...

    async def close(self) -> None:
        """Release the backend's own resources (not its workers: the reaper owns those)."""
        ...
