"""``interview-gateway bench NAME``: benchmarks that print figures (they assert nothing).

Each benchmark is a module ``gateway.bench.NAME`` with ``main(argv) -> int``, imported only
when chosen, so the transcript benchmark never loads aiortc.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "transcripts": "the transcript writer: events/s, commit latency, lost and duplicate events",
    "relay": "the relay's fast path against aiortc's MediaRelay (and with recording): CPU, "
    "delivery, latency, memory",
    "fleet": "N interviews through a front, a worker each: claim and connect latency, leaks",
}


def _usage() -> str:
    lines = "\n".join(f"  {name:<12} {text}" for name, text in BENCHMARKS.items())
    return f"usage: interview-gateway bench NAME [options]\n\nbenchmarks:\n{lines}"


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    name = argv[0]
    if name not in BENCHMARKS:
        known = ", ".join(BENCHMARKS)
        print(
            f"interview-gateway bench: unknown benchmark {name!r} (known: {known})\n\n{_usage()}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"gateway.bench.{name}")
    return int(module.main(argv[1:]))
