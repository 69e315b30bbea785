"""Every reason a session can end with: one fixed set, for the row and the metric label.

An end reason is visible in the admin API (``end_reason``) and becomes a Prometheus label
(``gateway_sessions_ended{reason}``). Once, an upstream's error code became part of one
(``upstream_<its code>``), and that code quoted the API key. So reasons are built only from
the gateway's own words, listed here, and ``InterviewSession.end`` records anything else as
``unknown`` (a bug to fix, never text from outside).
"""

from __future__ import annotations

from gateway.sessions.closing import INTERVIEW_COMPLETE
from gateway.sessions.events import SESSION_CLOSED_REASONS
from gateway.sessions.reconciler import LOST_REASONS
from gateway.upstream.openai import UPSTREAM_ERROR_CODES
from signaling.errors import ERRORS

#: Why a signaling socket closed (``signaling_<why>``): an error code of the table, or gone.
_SOCKET = {"disconnected", "shutdown", *ERRORS}

END_REASONS: frozenset[str] = frozenset(
    {
        "bye",
        INTERVIEW_COMPLETE,
        "time_limit",
        "ended_by_admin",
        "peer_silent",
        "peer_closed",
        "peer_failed",
        "upstream_failed",
        "upstream_closed",
        "upstream_silent",
        "upstream_sideband_closed",
        "relay_unavailable",
        "at_capacity",
        "integrity_violation",
        "shutdown",
        "unknown",
        *LOST_REASONS.values(),
        *SESSION_CLOSED_REASONS,
        *(f"upstream_{code}" for code in UPSTREAM_ERROR_CODES),
        *(f"signaling_{why}" for why in _SOCKET),
    }
)


def end_reason(reason: str) -> str:
    """``reason`` if it is one of ``END_REASONS``, else ``unknown``."""
    return reason if reason in END_REASONS else "unknown"
