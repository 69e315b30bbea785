"""TURN REST API credentials (coturn's ``use-auth-secret``): the password is the HMAC the TURN
server recomputes, the username names the expiry, and a page gets no long-lived credential."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from signaling.turn import IceServerMinter, mint_credential

SECRET = "shared-with-coturn-" + "s" * 24
STUN = {"urls": "stun:stun.example:3478"}
STATIC_TURN = {"urls": "turn:old.example:3478", "username": "gw", "credential": "long-lived"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to cross-check with")
def test_the_credential_is_the_hmac_sha1_of_the_username_that_openssl_computes() -> None:
    minted = mint_credential(SECRET, "interview-7", ttl=600, now=1_700_000_000.9)
    # An independent implementation of the same formula: what coturn computes from the username.
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", SECRET, "-binary"],
        input=minted.username.encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert minted.credential == base64.b64encode(digest).decode()


def test_the_username_is_the_expiry_then_the_id() -> None:
    minted = mint_credential(SECRET, "interview-7", ttl=600, now=1_700_000_000.9)
    assert minted.username == "1700000600:interview-7"
    assert minted.expires_at == 1_700_000_600


def test_each_session_gets_its_own_credential() -> None:
    minter = IceServerMinter(turn_urls=("turn:t.example:3478",), secret=SECRET, ttl=60)
    first = minter.for_session("iv-1", now=1000).browser[0]
    second = minter.for_session("iv-2", now=1000).browser[0]
    assert first["username"] != second["username"]
    assert first["credential"] != second["credential"]


def test_the_browser_gets_the_minted_turn_and_stun_but_no_long_lived_credential() -> None:
    minter = IceServerMinter(
        configured=(STUN, STATIC_TURN),
        turn_urls=("turn:t.example:3478?transport=udp", "turns:t.example:5349"),
        secret=SECRET,
        ttl=3600,
    )
    servers = minter.for_session("iv-1", now=1000)
    minted = servers.browser[0]
    assert minted["urls"] == ["turn:t.example:3478?transport=udp", "turns:t.example:5349"]
    assert minted["username"] == "4600:iv-1"
    assert servers.browser == (minted, STUN)
    assert SECRET not in repr(servers.browser) and "long-lived" not in repr(servers.browser)
    # the gateway's own browser leg: the same minted entry first (aiortc takes the first TURN)
    assert servers.gateway == (minted, STUN, STATIC_TURN)


def test_without_turn_settings_nothing_is_minted() -> None:
    servers = IceServerMinter(configured=(STUN,)).for_session("iv-1")
    assert servers.browser == (STUN,) and servers.gateway == (STUN,)
