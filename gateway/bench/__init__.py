"""``interview-gateway bench NAME``: benchmarks that print figures (they assert nothing).

Each benchmark is a module ``gateway.bench.NAME`` with ``main(argv) -> int``, imported only
when chosen, so the transcript benchmark never loads aiortc.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "transcripts": "the transcript writer: events/s, commit latency, lost and duplicate events",
    "relay": "relay mode: media and data-channel throughput through the gateway",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        lines = "\n".join(f"  {name:<12} {text}" for name, text in BENCHMARKS.items())
        stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print(f"usage: interview-gateway bench NAME [options]\n\nbenchmarks:\n{lines}", file=stream)
        return 0 if stream is sys.stdout else 2
    module = importlib.import_module(f"gateway.bench.{argv[0]}")
    return int(module.main(argv[1:]))
