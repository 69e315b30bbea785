"""Fails loudly when the aioice internals that gateway/media/ice.py's socket hook reaches into
move: the hook copies how ``Connection.get_component_candidates`` makes host candidates."""

from __future__ import annotations

import inspect

import aioice
import aioice.ice

from gateway.media import ice


def test_the_installed_aioice_is_a_supported_version() -> None:
    assert ice.aioice_supported(), (
        f"aioice {aioice.__version__} is not in {ice.AIOICE_SUPPORTED}: check the socket hook in "
        "gateway/media/ice.py against Connection.get_component_candidates, then add the version"
    )


def test_the_socket_hook_is_installed_in_place_of_aioices_own() -> None:
    assert ice.sockets_installed()
    assert aioice.ice.Connection.get_component_candidates is not ice.STOCK_GET_COMPONENT_CANDIDATES


def test_aioices_socket_input_is_replaced_by_one_that_parses_only_stun() -> None:
    assert aioice.ice.StunProtocol.datagram_received is ice._datagram_received
    stock = inspect.getsource(ice.STOCK_DATAGRAM_RECEIVED)
    # what the replacement does first is what aioice does once its parse failed
    assert "message = stun.parse_message(data)" in stock
    handed_on = "self.receiver.data_received(data, self.local_candidate.component)"
    assert f"except ValueError:\n            {handed_on}" in stock


def test_the_names_the_socket_hook_uses_are_where_it_expects_them() -> None:
    stock = inspect.signature(ice.STOCK_GET_COMPONENT_CANDIDATES)
    assert list(stock.parameters) == ["self", "component", "addresses", "timeout"]
    source = inspect.getsource(ice.STOCK_GET_COMPONENT_CANDIDATES)
    # the one line the hook replaces, and the list its protocols must join
    assert "lambda: StunProtocol(self), local_addr=(address, 0)" in source
    assert "self._protocols += host_protocols" in source
    assert "if self.turn_server:" in source  # stock code with no address still gathers TURN
    assert list(inspect.signature(aioice.ice.StunProtocol).parameters) == ["receiver"]
    assert list(inspect.signature(aioice.ice.server_reflexive_candidate).parameters) == [
        "protocol",
        "stun_server",
    ]
    gather = inspect.getsource(aioice.ice.Connection.gather_candidates)
    assert "self.get_component_candidates(component=component, addresses=addresses)" in gather
    connection = aioice.ice.Connection(ice_controlling=True)
    assert connection._protocols == []
    assert isinstance(connection.local_username, str)
    assert isinstance(connection.local_password, str)
