"""Tokens, the error table against its documentation, and SDP from a real WebRTC stack."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest

from signaling.errors import ERRORS, SignalingError
from signaling.sdp import parse_offer
from signaling.tokens import TokenError, TokenVerifier, issue_token
from tests.signaling.signaling_samples import INTERVIEW, SECRET

DOC = Path(__file__).resolve().parents[2] / "docs" / "signaling.md"


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


def test_every_error_code_is_documented_with_its_fatality_and_close_code() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \| (\d{4}) \|", DOC.read_text(), re.MULTILINE)
    documented = {code: (fatal == "yes", int(close)) for code, fatal, close in rows}
    assert documented == {code: (spec.fatal, spec.close_code) for code, spec in ERRORS.items()}


def test_close_codes_are_private_range_and_distinct() -> None:
    codes = [spec.close_code for spec in ERRORS.values()]
    assert all(4000 <= code <= 4999 for code in codes) and len(set(codes)) == len(codes)


def test_gateway_codes_outside_the_table_close_as_refused() -> None:
    error = SignalingError("session_replaced", "a newer socket took over", fatal=True)
    assert error.close_code == ERRORS["refused"].close_code
    assert SignalingError("session_replaced", "x").fatal is False
    with pytest.raises(ValueError):
        SignalingError("Not Snake", "x")


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
