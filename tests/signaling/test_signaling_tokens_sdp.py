"""Tokens, and SDP from a real WebRTC stack."""

from __future__ import annotations

import jwt
import pytest

from signaling.sdp import parse_offer, with_explicit_directions
from signaling.tokens import TokenError, TokenVerifier, issue_token
from tests.signaling.signaling_samples import INTERVIEW, SECRET


def test_issued_tokens_verify_with_every_claim() -> None:
    token = issue_token(SECRET, tenant_id="t1", interview_id=INTERVIEW, role="observer", jti="j9")
    claims = TokenVerifier(SECRET).verify(token, INTERVIEW)
    assert (claims.tenant_id, claims.interview_id, claims.role, claims.jti) == (
        "t1",
        INTERVIEW,
        "observer",
        "j9",
    )
    assert claims.exp > 0


def test_audience_is_enforced_when_configured() -> None:
    verifier = TokenVerifier(SECRET, audience="gateway")
    good = issue_token(SECRET, tenant_id="t", interview_id=INTERVIEW, audience="gateway")
    other = issue_token(SECRET, tenant_id="t", interview_id=INTERVIEW, audience="admin")
    assert verifier.verify(good, INTERVIEW).tenant_id == "t"
    with pytest.raises(TokenError) as refused:
        verifier.verify(other, INTERVIEW)
    assert refused.value.code == "wrong_audience"


def test_leeway_tolerates_clock_skew() -> None:
    token = issue_token(SECRET, tenant_id="t", interview_id=INTERVIEW, ttl=-5)
    assert TokenVerifier(SECRET, leeway=30).verify(token, INTERVIEW).interview_id == INTERVIEW
    with pytest.raises(TokenError, match="expired"):
        TokenVerifier(SECRET).verify(token, INTERVIEW)


@pytest.mark.parametrize(
    "payload",
    [
        {"interview_id": INTERVIEW, "role": "candidate", "exp": 2**40},  # no tenant
        {"tenant_id": "t", "interview_id": INTERVIEW, "role": 5, "exp": 2**40},
        {"tenant_id": "t", "interview_id": INTERVIEW, "role": "c", "exp": 2**40, "jti": 1},
        {"tenant_id": "t", "interview_id": INTERVIEW, "role": "c"},  # no expiry
    ],
)
def test_tokens_missing_or_mistyping_claims_are_invalid(payload: dict[str, object]) -> None:
    token = jwt.encode(payload, SECRET, algorithm="HS256")
    with pytest.raises(TokenError) as refused:
        TokenVerifier(SECRET).verify(token, INTERVIEW)
    assert refused.value.code == "token_invalid" and refused.value.fatal


def test_unsigned_tokens_are_refused() -> None:
    token = jwt.encode(
        {"tenant_id": "t", "interview_id": INTERVIEW, "role": "c", "exp": 2**40},
        "",
        algorithm="none",
    )
    with pytest.raises(TokenError) as refused:
        TokenVerifier(SECRET).verify(token, INTERVIEW)
    assert refused.value.code == "token_invalid"


def test_the_secret_never_shows_in_repr_or_errors() -> None:
    verifier = TokenVerifier(SECRET)
    token = issue_token("x" * 40, tenant_id="t", interview_id=INTERVIEW)
    with pytest.raises(TokenError) as refused:
        verifier.verify(token, INTERVIEW)
    assert SECRET not in repr(verifier) and SECRET not in str(refused.value)
    assert token not in str(refused.value)
    with pytest.raises(ValueError):
        TokenVerifier("")


async def test_an_offer_from_aiortc_passes_the_checks() -> None:
    aiortc = pytest.importorskip("aiortc")
    from gateway.media.ice import (
        host_addresses,  # the tests may use the gateway; the package may not
    )
    from gateway.upstream.openai import EVENTS_LABEL

    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        pc.addTransceiver("video", direction="sendonly")
        pc.createDataChannel(EVENTS_LABEL)
        with host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        summary = parse_offer(pc.localDescription.sdp)
    finally:
        await pc.close()
    assert [s.kind for s in summary.sections] == ["audio", "video", "application"]
    assert summary.has_video and summary.has_datachannel
    assert [s.mid for s in summary.sections] == ["0", "1", "2"]


def test_a_section_without_a_direction_gets_the_session_default_or_sendrecv() -> None:
    sdp = (
        "v=0\r\ns=-\r\na=recvonly\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n"
    )
    assert with_explicit_directions(sdp) == (
        "v=0\r\ns=-\r\na=recvonly\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n"
    )
    bare = "v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\n"
    assert with_explicit_directions(bare) == bare + "a=sendrecv\n"
