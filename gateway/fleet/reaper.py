"""The fleet reaper: no worker runs, and no claim stays, for an interview nobody is in.

Interviews whose worker died are finalized by the one liveness mechanism there is
(``gateway.sessions.reconciler``: a worker registers as kind ``worker``, and its lapsed claims
end as ``failed``/``worker_lost``). What is left to this reaper is the workers and claims
themselves, at a front's start and then on a timer:

- a claim whose interview is over: its worker is destroyed (if it still runs) and the claim
  dropped;
- a claim still ``claiming`` whose front is dead, or older than twice the start timeout: the
  start was abandoned; the same;
- a worker of this front's that no claim names and that is not in its warm pool, seen so for
  the start timeout: never claimed (its claim was given up), so destroyed;
- a ready claim of this front's whose worker is gone before its candidate joined (the worker
  idled out): the claim is dropped, so the candidate's next attempt gets a new worker.

It never destroys the worker of a claim whose interview is live: a ready claim goes only once
its interview's row is final. Two fronts may reap at once: every step is idempotent (destroying
a gone worker and dropping a dropped claim do nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from gateway.fleet.backend import FLEET_KEY, WorkerBackend
from gateway.periodic import Periodic
from storage import interviews, workers
from storage.database import Database
from storage.workers import WorkerClaim

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        db: Database,
        backend: WorkerBackend,
        *,
        front_id: UUID,
        lost_after: float,
        start_timeout: float,
        spare: Callable[[], set[str]] = set,
    ) -> None:
        self.db = db
        self.backend = backend
        self.front_id = front_id
        self.lost_after = lost_after
        self.start_timeout = start_timeout
        #: this front's unclaimed workers that are meant to be (its warm pool)
        self.spare = spare
        #: workers destroyed and claims dropped, since start
        self.reaped = 0
        #: when this front first saw each unclaimed worker of its own
        self._unclaimed_since: dict[str, float] = {}
        #: a pass per ``lost_after``: the bound within which the reconciler finalizes a vanished
        #: worker's interview, after which a pass removes its claim
        self._periodic = Periodic(lost_after, self.reap, "fleet reaper")

    async def start(self) -> None:
        await self.reap()
        self._periodic.start()

    async def reap(self) -> int:
        """One pass; how many claims and workers it removed."""
        done = 0
        claims = await workers.all_claims(self.db, self.backend.name, self.lost_after)
        kept = []
        for claim in claims:
            if await self._abandoned(claim):
                if claim.worker_id is not None:
                    await self.backend.destroy(claim.worker_id)
                await workers.drop_claim(self.db, claim.interview_id, claim.worker_id)
                done += 1
            else:
                kept.append(claim)
        claimed = {c.worker_id for c in claims} | self.spare()
        now = time.monotonic()
        mine = await self.backend.list({FLEET_KEY: str(self.front_id)})
        running = {w.id for w in mine}
        for claim in kept:
            if await self._vanished_unjoined(claim, running):
                log.info("interview %s: its worker %s is gone", claim.interview_id, claim.worker_id)
                await workers.drop_claim(self.db, claim.interview_id, claim.worker_id)
                done += 1
        self._unclaimed_since = {
            w.id: self._unclaimed_since.get(w.id, now) for w in mine if w.id not in claimed
        }
        for worker_id, since in list(self._unclaimed_since.items()):
            if now - since >= self.start_timeout:
                log.warning("destroying worker %s: no interview claims it", worker_id)
                await self.backend.destroy(worker_id)
                del self._unclaimed_since[worker_id]
                done += 1
        self.reaped += done
        return done

    async def _vanished_unjoined(self, claim: WorkerClaim, running: set[str]) -> bool:
        """A ready claim of this front whose worker is gone before its candidate joined (it
        idled out): the next attempt must get a new worker, not the dead one's address."""
        if claim.state != "ready" or claim.front_id != self.front_id or claim.worker_id in running:
            return False
        record = await interviews.get_session(self.db, claim.tenant_id, claim.interview_id)
        return record is not None and record.status in ("created", "waiting")

    async def _abandoned(self, claim: WorkerClaim) -> bool:
        record = await interviews.get_session(self.db, claim.tenant_id, claim.interview_id)
        if record is None or record.status in ("ended", "failed"):
            return True
        if claim.state == "ready":
            return False
        age = (datetime.now(UTC) - claim.claimed_at).total_seconds()
        return claim.front_lost or age > 2 * self.start_timeout

    async def close(self) -> None:
        await self._periodic.close()
