"""The transcript journal's lines: one pending entry as JSON, and who submitted it.

The mark of the submitting writer lets a writer keep its ``flush()`` promises for its own
events, and tell them from an earlier process's leftovers (whose ordinals and times mean nothing
to it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from storage.transcripts.entries import TranscriptEntry


@dataclass(slots=True)
class Pending:
    """An accepted entry not yet resolved (committed, a duplicate or refused)."""

    entry: TranscriptEntry
    ordinal: int  # 1, 2, ... per writer; 0 for events from another process's journal
    enqueued: float  # time.monotonic() at submit; nan when unknown


class JournalCodec:
    """Journal lines: an entry as JSON, plus who submitted it (to keep flush() promises)."""

    def __init__(self) -> None:
        self.process = uuid4().hex  # this writer's mark; other marks are earlier processes

    def encode(self, item: Pending) -> bytes:
        e = item.entry
        record = {
            "w": self.process,
            "o": item.ordinal,
            "t": None if math.isnan(item.enqueued) else item.enqueued,
            "tenant_id": str(e.tenant_id),
            "session_id": str(e.session_id),
            "event_id": e.event_id,
            "role": e.role,
            "text": e.text,
            "source": e.source,
            "event_type": e.event_type,
            "item_id": e.item_id,
            "audio_start_ms": e.audio_start_ms,
            "audio_end_ms": e.audio_end_ms,
            "raw": e.raw,
            "received_at": e.received_at.isoformat(),
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()

    def decode(self, line: bytes) -> Pending:
        r = json.loads(line)
        mine = r.pop("w") == self.process
        ordinal, enqueued = r.pop("o"), r.pop("t")
        r["tenant_id"] = UUID(r["tenant_id"])
        r["session_id"] = UUID(r["session_id"])
        r["received_at"] = datetime.fromisoformat(r["received_at"])
        return Pending(
            TranscriptEntry(**r),
            ordinal if mine else 0,
            enqueued if mine and enqueued is not None else math.nan,
        )
