"""A candidate in another network namespace reaches the gateway's shared ICE port only through
a 1:1 NAT that the test sets up, on the public address the gateway advertises
(``GATEWAY_ICE_PUBLIC_ADDRESSES``) while it binds its private one.

The gateway runs in the test's own namespace (which must not be the machine's: the test adds a
veth pair and NAT rules to it); the candidate runs in a child process in a namespace of its
own, joined to the test's by the veth pair. The NAT maps ``PUBLIC:port`` to ``PRIVATE:port``
both ways (DNAT in, SNAT out), as a cloud's elastic IP does, so the candidate never sees the
private address on the media path.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiohttp import web

from gateway.sim.script import Script
from storage import transcripts
from tests.udp import free_udp_port

from .conftest import FAST_SPEECH, GatewayFactory
from .test_interviews import TRANSCRIPT_LINES

pytestmark = pytest.mark.slow

PUBLIC = "198.51.100.7"  # TEST-NET-2: nobody's address
PRIVATE = "10.77.0.1"
CANDIDATE = "10.77.0.2"
GATEWAY_LINK, CANDIDATE_LINK = "igwnat0", "igwnat1"

#: The candidate's process: says it runs (in its own namespace, which its veth is moved to: before
#: that, ``unshare`` may not have made it yet), then takes the interview given on stdin.
CANDIDATE_SCRIPT = f"""
import asyncio, json, sys
from gateway import media
from gateway.sim.candidate import HeadlessCandidate

async def main():
    job = json.loads(sys.stdin.readline())
    candidate = HeadlessCandidate(
        job["url"], job["token"], interview_id=job["interview_id"], answers=job["answers"],
        words_per_second=job["wps"], ice_addresses=["{CANDIDATE}"],
    )
    report = await candidate.run(time_limit=60)
    print(json.dumps({{"error": report.error, "mode": report.mode}}), flush=True)

media.install(["{CANDIDATE}"])
print("ready", flush=True)
asyncio.run(main())
"""


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it creates a network namespace, a veth pair and NAT rules"
    for tool in ("ip", "iptables", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool!r} (the NAT is an iptables DNAT/SNAT rule), not installed here"
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        return (
            "must run inside a loopback-only network namespace (scripts/test's): it adds a veth"
            " pair and NAT rules to the test's namespace"
        )
    return None


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@contextmanager
def nat_link(candidate_pid: int, port: int) -> Iterator[None]:
    """The veth pair (``PRIVATE`` here, ``CANDIDATE`` in the child's namespace, routed to
    ``PUBLIC`` through us) and the 1:1 NAT of ``PUBLIC:port``; all removed on exit."""
    inside = ("nsenter", "-t", str(candidate_pid), "-n")
    nat = [
        ("PREROUTING", "-i", GATEWAY_LINK, "-d", PUBLIC, "-p", "udp", "--dport", str(port),
         "-j", "DNAT", "--to-destination", f"{PRIVATE}:{port}"),
        ("POSTROUTING", "-o", GATEWAY_LINK, "-s", PRIVATE, "-p", "udp", "--sport", str(port),
         "-j", "SNAT", "--to-source", f"{PUBLIC}:{port}"),
    ]  # fmt: skip
    run("ip", "link", "add", GATEWAY_LINK, "type", "veth", "peer", "name", CANDIDATE_LINK,
        "netns", str(candidate_pid))  # fmt: skip
    try:
        run("ip", "addr", "add", f"{PRIVATE}/24", "dev", GATEWAY_LINK)
        run("ip", "link", "set", GATEWAY_LINK, "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "addr", "add", f"{CANDIDATE}/24", "dev", CANDIDATE_LINK)
        run(*inside, "ip", "link", "set", CANDIDATE_LINK, "up")
        run(*inside, "ip", "route", "add", f"{PUBLIC}/32", "via", PRIVATE)
        for rule in nat:
            run("iptables", "-t", "nat", "-A", *rule)
        yield
    finally:
        for rule in nat:
            subprocess.run(("iptables", "-t", "nat", "-D", *rule), capture_output=True)
        subprocess.run(("ip", "link", "del", GATEWAY_LINK), capture_output=True)


async def test_a_candidate_behind_the_test_nat_connects_through_the_advertised_address(
    start_gateway: GatewayFactory,
) -> None:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    port = free_udp_port()
    child = await asyncio.create_subprocess_exec(
        "unshare", "--net", sys.executable, "-c", CANDIDATE_SCRIPT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        # a veth moved to the child before unshare(2) made its namespace would stay here
        assert await asyncio.wait_for(child.stdout.readline(), 60) == b"ready\n"
        with nat_link(child.pid, port):
            gateway = await start_gateway(
                mode="relay",
                ice_udp_port=port,
                ice_bind_addresses=(PRIVATE,),
                ice_public_addresses=(f"{PUBLIC}/{PRIVATE}",),
                ice_allow_remote=(f"{CANDIDATE}/32", "127.0.0.0/8"),
            )
            site = web.TCPSite(gateway.runner, PRIVATE, 0)  # signaling over the veth
            await site.start()
            http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            invitation = await gateway.invite("relay")
            job = {
                "url": invitation.signal_url(f"http://{PRIVATE}:{http_port}"),
                "token": invitation.token,
                "interview_id": str(invitation.interview_id),
                "answers": [turn.answer for turn in Script.default().turns],
                "wps": FAST_SPEECH,
            }
            child.stdin.write((json.dumps(job) + "\n").encode())
            await child.stdin.drain()
            line = await asyncio.wait_for(child.stdout.readline(), 90)
            report = json.loads(line)
            assert report == {"error": None, "mode": "relay"}
            await gateway.writer.flush()
            rows = await transcripts.read_transcript(
                gateway.db, invitation.tenant_id, invitation.interview_id
            )
            assert len(rows) == TRANSCRIPT_LINES
            record = await gateway.ended_record(invitation)
            # the browser leg's pair: the advertised public address, the candidate's own one
            pair = record.selected_pair
            assert pair.startswith(f"host udp {PUBLIC}:{port} -> "), pair
            assert f"{CANDIDATE}:" in pair
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
