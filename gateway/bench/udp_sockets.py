"""The UDP sockets a process holds, as the kernel lists them (``/proc/PID/fd`` and
``/proc/PID/net/udp{,6}``): what ``bench relay`` reports as ``udp_sockets`` and what the tests
count, rather than trusting the gateway's own bookkeeping. ``pid`` is this process by default;
the bench reads the relay's from its own process, since a sample walks every socket of the
network namespace (~6 ms with 300 of them), a stall the relay's event loop must not take."""

from __future__ import annotations

import ipaddress
import os

Pid = int | str


def _inodes(pid: Pid) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def _rows(pid: Pid) -> list[list[str]]:
    """The ``/proc/PID/net/udp{,6}`` rows of the process's sockets, one per socket.

    The kernel prints those tables a page at a time, walking its socket hash to the offset
    reached so far: sockets opened or closed meanwhile (other peers' gathering) shift the walk,
    so a row can come twice, or not at all. Rows are kept once per inode; a caller that must
    not miss a socket compares inodes across samples."""
    mine = _inodes(pid)
    rows: dict[str, list[str]] = {}
    for table in (f"/proc/{pid}/net/udp", f"/proc/{pid}/net/udp6"):
        try:
            with open(table) as lines:
                next(lines)
                rows.update((f[9], f) for f in map(str.split, lines) if f[9] in mine)
        except FileNotFoundError:
            continue
    return list(rows.values())


def udp_sockets(pid: Pid = "self") -> list[tuple[str, int]]:
    """Local (address, port) of every UDP socket of the process, IPv4 and IPv6."""
    return [_address(fields[1]) for fields in _rows(pid)]


def udp_socket_inodes(port: int, pid: Pid = "self") -> set[str]:
    """The inodes of the process's UDP sockets bound to ``port`` (each socket's identity)."""
    return {fields[9] for fields in _rows(pid) if _address(fields[1])[1] == port}


def udp_drops(pid: Pid = "self") -> int:
    """Datagrams the kernel dropped on the process's open UDP sockets (receive buffer full)."""
    return sum(int(fields[12]) for fields in _rows(pid))
