"""Nothing patches a library on import: only ``gateway.media.install()`` changes aiortc/aioice."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import aioice.ice, aiortc.rtp
stock = (
    aioice.ice.get_host_addresses,
    aiortc.rtp.compute_audio_level_dbov,
    aioice.ice.Connection.query_consent,
    aioice.ice.Connection.get_component_candidates,
)
import gateway.app, gateway.cli.serve, gateway.cli.simulate, gateway.media.relay
import gateway.media.ice, gateway.media.aiortc_internals, gateway.sim.upstream
import gateway.sim.candidate, gateway.bench.relay
after_import = (
    aioice.ice.get_host_addresses,
    aiortc.rtp.compute_audio_level_dbov,
    aioice.ice.Connection.query_consent,
    aioice.ice.Connection.get_component_candidates,
)
from gateway import media
media.install(["127.0.0.1"])
after_install = (
    aioice.ice.get_host_addresses,
    aiortc.rtp.compute_audio_level_dbov,
    aioice.ice.Connection.query_consent,
    aioice.ice.Connection.get_component_candidates,
)
print(after_import == stock, all(a is not s for a, s in zip(after_install, stock)))
print(aioice.ice.get_host_addresses(True, True))
"""


def test_importing_the_gateway_changes_no_library_and_install_changes_both() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    flags, addresses = result.stdout.splitlines()
    assert flags == "True True"
    assert addresses == "['127.0.0.1']"


def test_gathering_without_install_is_refused_not_silently_everywhere() -> None:
    probe = (
        "from gateway.media import ice\n"
        "try:\n"
        "    with ice.host_addresses(['127.0.0.1']): pass\n"
        "except RuntimeError as exc: print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "install()" in result.stdout
