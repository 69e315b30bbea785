"""An offer must carry what any WebRTC connection needs (ICE credentials, a fingerprint, a DTLS
role, a mandatory codec) in the shape a WebRTC stack reads."""

from __future__ import annotations

import pytest

from signaling.errors import SignalingError
from signaling.sdp import parse_offer
from tests.signaling.signaling_samples import (
    AUDIO,
    CHROME_OFFER,
    DATA,
    FIREFOX_OFFER,
    VIDEO,
    offer_of,
)


@pytest.mark.parametrize("missing", ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"])
def test_an_offer_without_ice_credentials_or_fingerprint_is_bad_sdp(missing: str) -> None:
    offer = offer_of(AUDIO)
    parse_offer(offer)  # the complete offer passes
    stripped = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith(missing))
    with pytest.raises(SignalingError) as error:
        parse_offer(stripped)
    assert error.value.code == "bad_sdp"
    assert missing[2:-1] in error.value.message


@pytest.mark.parametrize("offer", [CHROME_OFFER, FIREFOX_OFFER], ids=["chrome", "firefox"])
def test_offers_as_browsers_write_them_pass(offer: str) -> None:
    assert [s.kind for s in parse_offer(offer).sections] == ["audio", "application"]


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus", "a=rtpmap"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48k/2", "a=rtpmap"),
        ("a=setup:actpass", "a=setup:holdconn", "a=setup"),
        ("a=setup:actpass", "a=setup", "a=setup"),
        ("a=fingerprint:sha-256 AB:", "a=fingerprint:sha-256AB:", "a=fingerprint"),
        ("a=fmtp:111 minptime=10", "a=fmtp:111 minptime=ten", "minptime"),
        ("a=fmtp:111 minptime=10", "a=fmtp:112 minptime=10", "no rtpmap"),
        ("a=sctp-port:5000", "a=sctp-port:five", "a=sctp-port"),
        ("a=max-message-size:262144", "a=max-message-size", "a=max-message-size"),
        ("a=mid:0\r\n", "a=mid:0\r\na=extmap:one urn:x\r\n", "a=extmap"),
        ("a=mid:0\r\n", "a=mid:0\r\na=ssrc-group:FID x\r\n", "a=ssrc-group"),
        ("a=mid:0\r\n", "a=mid:0\r\na=rtcp-fb:111\r\n", "a=rtcp-fb"),
        ("a=mid:0\r\n", "a=mid:0\r\na=candidate:1 1 udp 1 1.2.3.4 x typ host\r\n", "line"),
        ("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7", "'7'"),
        ("a=group:BUNDLE 0 1", "a=group", "a=group"),
        ("a=mid:0\r\n", "a=mid:0 \r\n", "a=mid"),  # both found by the fuzzing: aiortc failed
        ("a=mid:0\r\n", "a=mid:0\r\na=msid: \r\n", "a=msid"),
        ("c=IN IP4 0.0.0.0", "c=IN IP4", "c="),
        # found by the fuzzing through a gateway: aiortc read these, then failed to answer
        ("c=IN IP4 0.0.0.0", "c=IN IP4 0.0.0.0:", "c="),
        ("c=IN IP4 0.0.0.0", "c=IN IP4 0.0.0.0:1/2/3", "c="),
        ("c=IN IP4 0.0.0.0", "c=IN IP6 0.0.0.0", "c="),
        ("c=IN IP4 0.0.0.0", "c=IN IP4 example.com", "c="),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8", "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 200", "0-127"),
    ],
)
def test_offers_a_webrtc_stack_cannot_read_are_bad_sdp(old: str, new: str, complaint: str) -> None:
    offer = offer_of(AUDIO, DATA)
    assert old in offer
    with pytest.raises(SignalingError) as error:
        parse_offer(offer.replace(old, new, 1))
    assert error.value.code == "bad_sdp"
    assert complaint in error.value.message


def test_a_section_without_a_setup_is_bad_sdp_even_when_another_has_one() -> None:
    offer = offer_of(AUDIO, DATA)
    first, _, rest = offer.partition("a=setup:actpass\r\n")
    with pytest.raises(SignalingError) as error:
        parse_offer(first + rest)
    assert error.value.code == "bad_sdp" and "m-line 0 (audio) has no a=setup" in str(error.value)
    # at session level it serves every section
    session_level = (first + rest).replace("t=0 0\r\n", "t=0 0\r\na=setup:actpass\r\n")
    assert len(parse_offer(session_level).sections) == 2


def test_audio_and_video_m_lines_must_offer_a_mandatory_webrtc_codec() -> None:
    speex_only = AUDIO.replace("111 0 8", "97").split("a=rtpmap:111")[0] + (
        "a=rtpmap:97 speex/16000\r\n"
    )
    with pytest.raises(SignalingError, match="none of opus, pcma, pcmu"):
        parse_offer(offer_of(speex_only, DATA))
    av1_only = VIDEO.replace("VP8/90000", "AV1/90000")
    with pytest.raises(SignalingError, match="none of h264, vp8"):
        parse_offer(offer_of(AUDIO, av1_only, DATA))
    assert parse_offer(offer_of(AUDIO, VIDEO.replace("VP8/90000", "H264/90000"), DATA))


def test_a_blank_group_line_is_no_group() -> None:
    """Found by the fuzzing: ``a=group:`` followed by blanks once crashed the BUNDLE check."""
    offer = offer_of(AUDIO, DATA).replace("a=group:BUNDLE 0 1", "a=group: ")
    assert len(parse_offer(offer).sections) == 2
