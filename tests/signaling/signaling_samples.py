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
