"""Sample offers, candidates, secrets and hostile frames for the signaling tests (importable by
test modules, and by the gateway's fuzzing in tests/security)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from signaling.candidates import CandidatePolicy
from signaling.messages import CLIENT_TYPES
from signaling.tokens import issue_token

SECRET = "test-secret-0123456789abcdef-0123456789"
INTERVIEW = "iv-1"
TENANT = "tenant-a"

ICE = (
    "a=ice-ufrag:Hx4e\r\na=ice-pwd:2X4sB1yRkqtF0zH3u9wqYk6C\r\na=fingerprint:sha-256 "
    + ":".join(["AB"] * 32)
    + "\r\na=setup:actpass\r\n"
)


def offer_of(*sections: str) -> str:
    """A browser-shaped offer of these m-line sections, bundled; each section's ``MID`` becomes
    its index."""
    mids = " ".join(str(i) for i in range(len(sections)))
    head = (
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        f"a=group:BUNDLE {mids}\r\n"
    )
    return head + "".join(
        section.replace("MID", str(index)) for index, section in enumerate(sections)
    )


AUDIO = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n" + ICE + "a=mid:MID\r\n"
    "a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
VIDEO = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" + ICE + "a=mid:MID\r\n"
    "a=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
)
DATA = (
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    + ICE
    + "a=mid:MID\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
)

#: audio (mid 0) + video (mid 1) + data channel (mid 2), like Chrome's offer with a camera.
OFFER_AV = offer_of(AUDIO, VIDEO, DATA)
#: audio (mid 0) + data channel (mid 1): the usual interview offer.
OFFER = offer_of(AUDIO, DATA)
#: video and data channel, no audio.
OFFER_NO_AUDIO = offer_of(VIDEO, DATA)

BROWSER_FINGERPRINT = ":".join(["7B"] * 32)
#: Offers as Chrome and Firefox write them (trimmed to audio and the data channel; Chrome's with
#: an mDNS host candidate and a server-reflexive one): the SDP checks must pass them.
CHROME_OFFER = (
    "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 3c4e0f2a\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:2530088836 1 udp 2113937151 0a1b2c3d-aaaa-bbbb-cccc-0123456789ab.local 54400 "
    "typ host generation 0 network-cost 999\r\n"
    "a=candidate:842163049 1 udp 1677729535 203.0.113.9 54400 typ srflx raddr 0.0.0.0 rport 0 "
    "generation 0 network-cost 999\r\n"
    "a=ice-ufrag:yH3x\r\na=ice-pwd:zS7cQk1t0b3nTqTZ3Oq8Tq6G\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 FINGERPRINT\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=sendrecv\r\na=msid:3c4e0f2a 9d2b7c1e-track\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=ssrc:1001 cname:Zx9y\r\n"
    "a=ssrc:1001 msid:3c4e0f2a 9d2b7c1e-track\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:yH3x\r\na=ice-pwd:zS7cQk1t0b3nTqTZ3Oq8Tq6G\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 FINGERPRINT\r\na=setup:actpass\r\na=mid:1\r\na=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
).replace("FINGERPRINT", BROWSER_FINGERPRINT)
FIREFOX_OFFER = (
    "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 7052848360639826063 0 IN IP4 0.0.0.0\r\ns=-\r\n"
    "t=0 0\r\na=fingerprint:sha-256 FINGERPRINT\r\na=group:BUNDLE 0 1\r\n"
    "a=ice-options:trickle\r\na=msid-semantic:WMS *\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n"
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\r\na=fmtp:101 0-15\r\n"
    "a=ice-pwd:4e5fa1c2b3d4e5f60718293a4b5c6d7e\r\na=ice-ufrag:1a2b3c4d\r\na=mid:0\r\n"
    "a=msid:{5f3c} {8a2d}\r\na=rtcp-mux\r\na=rtpmap:109 opus/48000/2\r\n"
    "a=rtpmap:9 G722/8000/1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000/1\r\na=setup:actpass\r\n"
    "a=ssrc:2546437227 cname:{0d1e2f30-4a5b-6c7d-8e9f-a0b1c2d3e4f5}\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
    "a=ice-pwd:4e5fa1c2b3d4e5f60718293a4b5c6d7e\r\na=ice-ufrag:1a2b3c4d\r\na=mid:1\r\n"
    "a=setup:actpass\r\na=sctp-port:5000\r\na=max-message-size:1073741823\r\n"
).replace("FINGERPRINT", BROWSER_FINGERPRINT)

HOST_CANDIDATE = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
#: The tests run on loopback, so their candidates are 127.0.0.1: allowed explicitly, as a
#: deployment on loopback would (by default the policy refuses loopback like every private class).
LOOPBACK = ("127.0.0.0/8",)
LOOPBACK_POLICY = CandidatePolicy(LOOPBACK)

TOKEN = issue_token(SECRET, tenant_id="t", interview_id=INTERVIEW)

# -- hostile input, for the property tests of the session and the fuzzing of a live gateway --

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_field_values = st.one_of(
    json_values,
    st.sampled_from([OFFER, HOST_CANDIDATE, "0", "1", TOKEN, "v=0\r\n", "", None]),
)
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=12)},
    optional={
        key: _field_values
        for key in (
            "token",
            "sdp",
            "reconnect",
            "candidate",
            "sdpMid",
            "sdpMLineIndex",
            "event",
            "id",
            "reason",
        )
    },
)
#: Client frames a hostile or broken client might send: message-shaped objects with wrong field
#: values, other JSON, text, bytes, and arrays nested deeper than a JSON parser recurses.
frames = st.one_of(
    _messages.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(1, 4).map(lambda depth: "[" * (depth * 300) + "]" * (depth * 300)),
)
