"""The remote-candidate address policy, sans I/O: which addresses the gateway's ICE agent may be
pointed at, in an offer's SDP and trickled, and the gateway's setting for it."""

from __future__ import annotations

import json
import re

import pytest

from gateway.config import ConfigError, Settings
from signaling.candidates import CandidatePolicy, parse_networks
from signaling.protocol import SendMessage
from signaling.session import Answer, DeliverCandidate, DeliverOffer, SignalingSession
from signaling.tokens import TokenVerifier
from tests.signaling.signaling_samples import AUDIO, DATA, INTERVIEW, SECRET, TOKEN, offer_of

DENIED = {
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.20": "private",
    "100.64.0.1": "shared address space",
    "100.127.255.254": "shared address space",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fec0::1": "site-local",
    "224.0.0.251": "multicast",
    "239.255.255.250": "multicast",
    "ff02::fb": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "255.255.255.255": "broadcast",
    "::a9fe:a9fe": "IPv4-compatible",
    # IPv6 forms of the metadata address: mapped, NAT64, 6to4
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a9fe:a9fe": "link-local",
    "2002:a9fe:a9fe::1": "link-local",
}
ACCEPTED = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "192.0.2.10", "2001:4860:4860::8888"]


def line(address: str, port: int = 5000) -> str:
    return f"candidate:1 1 udp 2122260223 {address} {port} typ host generation 0"


@pytest.mark.parametrize(("address", "kind"), sorted(DENIED.items()))
def test_addresses_of_denied_classes_are_refused_by_default(address: str, kind: str) -> None:
    reason = CandidatePolicy().refusal(address)
    assert reason is not None and kind in reason and address in reason


@pytest.mark.parametrize("address", ACCEPTED)
def test_other_addresses_are_accepted(address: str) -> None:
    assert CandidatePolicy().refusal(address) is None


def test_allowed_networks_are_exempt_and_only_they() -> None:
    policy = CandidatePolicy(["127.0.0.0/8", "10.1.0.0/16"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same destination
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("10.2.0.1") is not None
    assert policy.refusal("::1") is not None  # IPv6 loopback was not allowed
    assert policy.refusal("169.254.169.254") is not None


@pytest.mark.parametrize(
    "hostname", ["0a1b2c3d-aaaa-bbbb-cccc-0123456789ab.local", "metadata.google.internal", "x"]
)
def test_hostnames_are_refused_whatever_is_allowed(hostname: str) -> None:
    reason = CandidatePolicy(["0.0.0.0/0", "::/0"]).refusal(hostname)
    assert reason is not None and "hostname" in reason


def test_a_bad_network_is_a_value_error_naming_it() -> None:
    assert [str(n) for n in parse_networks(["127.0.0.1", " 10.0.0.0/8", "::1/128"])] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        CandidatePolicy(["10.0.0.0/33"])


def offer_with(addresses: list[str]) -> str:
    audio = AUDIO + "".join(f"a={line(a, 7000 + n)}\r\n" for n, a in enumerate(addresses))
    return offer_of(audio, DATA)


def test_screening_takes_refused_candidate_lines_out_of_the_sdp() -> None:
    policy = CandidatePolicy(["127.0.0.0/8"])
    untouched = offer_with(["127.0.0.1", "8.8.8.8"])
    assert policy.screen_offer(untouched).sdp is untouched
    screened = policy.screen_offer(offer_with(["169.254.169.254", "127.0.0.1", "x.local"]))
    assert (screened.kept, screened.dropped) == (1, 2)
    assert "169.254.169.254" not in screened.sdp and "x.local" not in screened.sdp
    assert line("127.0.0.1", 7001) in screened.sdp
    assert screened.sdp.endswith("\r\n") and "\n" not in screened.sdp.replace("\r\n", "")


def test_screening_keeps_at_most_the_limit() -> None:
    screened = CandidatePolicy(max_candidates=3).screen_offer(offer_with(["8.8.8.8"] * 5))
    assert (screened.kept, screened.dropped) == (3, 2)
    assert screened.sdp.count("a=candidate:") == 3


# -- in the server's protocol -------------------------------------------------------------


def answered(policy: CandidatePolicy, sdp: str, max_errors: int = 32) -> SignalingSession:
    session = SignalingSession(
        INTERVIEW, TokenVerifier(SECRET), candidate_policy=policy, max_errors=max_errors
    )
    session.receive_frame(json.dumps({"type": "hello", "token": TOKEN}))
    session.accept()
    session.receive_frame(json.dumps({"type": "offer", "sdp": sdp}))
    session.answer_ready(Answer("v=0\r\n", "relay"))
    return session


def trickle(session: SignalingSession, address: str) -> list[object]:
    session.receive_frame(
        json.dumps({"type": "candidate", "candidate": line(address), "sdpMid": "0"})
    )
    return session.actions()


def errors(actions: list[object]) -> list[tuple[str, bool]]:
    return [
        (a.message["code"], a.message["fatal"])
        for a in actions
        if isinstance(a, SendMessage) and a.message["type"] == "error"
    ]


def test_the_gateway_receives_the_screened_offer() -> None:
    session = answered(CandidatePolicy(), offer_with(["169.254.169.254", "8.8.8.8"]))
    offer = next(a for a in session.actions() if isinstance(a, DeliverOffer))
    assert "169.254.169.254" not in offer.sdp and "8.8.8.8" in offer.sdp
    assert offer.candidates_dropped == 1


def test_refused_trickled_candidates_are_non_fatal_and_not_counted_as_misbehaviour() -> None:
    session = answered(CandidatePolicy(), offer_of(AUDIO, DATA), max_errors=2)
    session.actions()
    for n in range(10):
        actions = trickle(session, f"192.168.0.{n}")
        assert errors(actions) == [("candidate_refused", False)]
        assert not any(isinstance(a, DeliverCandidate) for a in actions)
    assert not session.closed
    delivered = [a for a in trickle(session, "8.8.8.8") if isinstance(a, DeliverCandidate)]
    assert delivered and delivered[0].candidate is not None


def test_the_limit_counts_the_offers_candidates_and_trickled_ones_until_a_new_offer() -> None:
    session = answered(CandidatePolicy(max_candidates=3), offer_with(["8.8.8.8", "8.8.4.4"]))
    session.actions()
    assert errors(trickle(session, "1.1.1.1")) == []
    refused = trickle(session, "1.0.0.1")
    assert errors(refused) == [("candidate_refused", False)]
    assert "more than 3" in next(
        a.message["message"] for a in refused if isinstance(a, SendMessage)
    )
    session.receive_frame(
        json.dumps({"type": "offer", "sdp": offer_of(AUDIO, DATA), "reconnect": True})
    )
    session.answer_ready(Answer("v=0\r\n", "relay"))
    session.actions()
    assert errors(trickle(session, "1.0.0.1")) == []


# -- the gateway's setting ----------------------------------------------------------------


def test_the_setting_allows_loopback_only_to_a_gateway_nobody_else_reaches() -> None:
    assert Settings.from_env({}).allowed_remote_candidates == ("127.0.0.0/8", "::1/128")
    assert Settings.from_env({"GATEWAY_HOST": "::1"}).allowed_remote_candidates != ()
    assert Settings.from_env({"GATEWAY_HOST": "0.0.0.0"}).allowed_remote_candidates == ()
    behind_a_proxy = {"GATEWAY_PUBLIC_URL": "https://interviews.example.com"}
    assert Settings.from_env(behind_a_proxy).allowed_remote_candidates == ()
    explicit = {"GATEWAY_ICE_ALLOW_REMOTE": "127.0.0.0/8, 10.1.0.0/16", "GATEWAY_HOST": "0.0.0.0"}
    assert Settings.from_env(explicit).allowed_remote_candidates == ("127.0.0.0/8", "10.1.0.0/16")
    assert Settings.from_env({"GATEWAY_ICE_ALLOW_REMOTE": ""}).allowed_remote_candidates == ()
    with pytest.raises(ConfigError, match="GATEWAY_ICE_ALLOW_REMOTE"):
        Settings.from_env({"GATEWAY_ICE_ALLOW_REMOTE": "127.0.0.0/8,localhost"})
    limited = Settings.from_env({"GATEWAY_ICE_MAX_REMOTE_CANDIDATES": "8"})
    assert limited.ice_max_remote_candidates == 8
