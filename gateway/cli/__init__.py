"""The ``interview-gateway`` command: one entry point, one module per sub-command.

Each sub-command module owns its argument parser and exposes ``main(argv) -> int``; it is
imported only when chosen, so ``interview-gateway migrate`` never loads aiortc.
"""

from __future__ import annotations

import importlib
import sys

#: sub-command -> (module with ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.cli.serve", "run the gateway: HTTP API, signaling and relay on one port"),
    "migrate": ("gateway.cli.migrate", "apply the database migrations and exit"),
    "sim-upstream": ("gateway.cli.sim_upstream", "run the OpenAI-compatible simulated upstream"),
    "simulate": ("gateway.cli.simulate", "run headless interviews through a gateway and report"),
    "bench": ("gateway.bench", "benchmarks: bench transcripts, bench relay, bench fleet"),
    "invite": ("gateway.cli.invite", "create an interview for a tenant and print its join URL"),
    "recording": (
        "gateway.cli.recording",
        "recording export: an interview's voices and video in one file",
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: interview-gateway COMMAND [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"interview-gateway: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))
