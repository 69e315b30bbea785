"""Every session row reaches a final state, even when the process that served it died.

Each gateway process has an id and a heartbeat in Postgres, and claims every interview it
serves (``storage.gateways``). The reconciler, at start and then on a timer, finds the claims
of processes whose heartbeat lapsed (``lost_after``) and finalizes those interviews as
``failed`` with the reason of the process's kind (``gateway_lost``; ``worker_lost`` for a
worker of ``gateway.fleet``, which serves one interview for a front), each inside its tenant's
transaction, then releases the claim.
Two live processes on one database never finalize each other's interviews: a live process's
heartbeat never lapses for longer than the bound unless it cannot reach the database at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from uuid import UUID, uuid4

from gateway.periodic import Periodic
from storage import gateways, interviews
from storage.database import Database
from storage.gateways import GatewayKind

log = logging.getLogger(__name__)

#: the end reason of an interview whose process died, by the kind of process
LOST_REASONS: dict[GatewayKind, str] = {"gateway": "gateway_lost", "worker": "worker_lost"}
#: Seconds shutdown gives the database to drop this process's row.
RETIRE_WAIT = 1.0


class Reconciler:
    def __init__(self, db: Database, *, lost_after: float, kind: GatewayKind = "gateway") -> None:
        self.db = db
        self.lost_after = lost_after
        self.kind: GatewayKind = kind
        #: this process's identity in ``gateways`` and ``session_claims``
        self.gateway_id: UUID = uuid4()
        self.finalized = 0
        self._beats = 0
        self._periodic = Periodic(lost_after / 3, self._beat, "gateway heartbeat")

    async def start(self) -> None:
        """Register this process, finalize what dead ones left behind, then keep at it."""
        await gateways.register_gateway(
            self.db, self.gateway_id, socket.gethostname(), kind=self.kind
        )
        await self.reconcile()
        self._periodic.start()

    async def reconcile(self) -> int:
        """Finalize the interviews of lapsed gateways; how many were finalized."""
        done = 0
        for claim in await gateways.lost_claims(self.db, self.lost_after):
            ended = await interviews.end_session(
                self.db,
                claim.tenant_id,
                claim.interview_id,
                status="failed",
                reason=LOST_REASONS[claim.kind],
            )
            await gateways.release(self.db, claim.gateway_id, claim.interview_id)
            if ended:
                done += 1
                log.warning(
                    "finalized an interview its %s left behind (%s)",
                    claim.kind,
                    claim.gateway_id,
                    extra={
                        "interview_id": str(claim.interview_id),
                        "tenant_id": str(claim.tenant_id),
                    },
                )
        await gateways.forget_dead_gateways(self.db, self.lost_after)
        self.finalized += done
        return done

    async def _beat(self) -> None:
        """A heartbeat three times per bound, a reconciliation once per bound."""
        await gateways.heartbeat(self.db, self.gateway_id)
        self._beats += 1
        if self._beats % 3 == 0:
            await self.reconcile()

    async def close(self) -> None:
        await self._periodic.close()
        try:
            # bounded: shutdown does not wait out the pool's timeout for a database that is away
            async with asyncio.timeout(RETIRE_WAIT):
                await gateways.retire_gateway(self.db, self.gateway_id)
        except Exception as exc:  # the database is away: the heartbeat lapses by itself
            log.warning("could not retire this gateway's row (%s)", str(exc) or type(exc).__name__)
