"""Just enough SDP to refuse bad offers and candidates before any WebRTC stack sees them.

This is not an SDP parser for negotiation (aiortc does that in the gateway). It reads the
m-lines (kind, mid, index, whether active) so the session can answer ``bad_sdp`` or
``no_audio`` with a clear message, and can tell a candidate for an m-line the offer lacks
(``unknown_mline``) from one it has. Sizes are capped so that garbage costs little.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from signaling.errors import SignalingError

#: Real offers (audio, video, data channel, every codec) stay well under 16 KiB.
MAX_SDP_BYTES = 32 * 1024
MAX_MEDIA_SECTIONS = 32
MAX_CANDIDATE_CHARS = 1024

_MEDIA_KINDS = frozenset({"audio", "video", "application", "text", "message"})
_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_MLINE = re.compile(r"m=([a-z]+) (\d{1,5})(?:/\d{1,5})? (\S+)(?: \S+)+")
_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
#: Without these no WebRTC connection can form (RFC 8829): refuse such an offer up front
#: rather than let the peer connection fail later and quietly.
_REQUIRED_ATTRIBUTES = (
    ("a=ice-ufrag:", "ICE credentials"),
    ("a=ice-pwd:", "ICE credentials"),
    ("a=fingerprint:", "the DTLS certificate fingerprint"),
)


@dataclass(frozen=True)
class MediaSection:
    """One m-line of an offer."""

    index: int
    kind: str
    mid: str | None
    port: int
    protocol: str

    @property
    def active(self) -> bool:
        """Port 0 marks a rejected or stopped section."""
        return self.port != 0

    @property
    def is_datachannel(self) -> bool:
        return self.kind == "application" and "DTLS/SCTP" in self.protocol.upper()


@dataclass(frozen=True)
class OfferSummary:
    """What the session needs to know about an accepted offer."""

    sections: tuple[MediaSection, ...]

    @property
    def has_video(self) -> bool:
        return any(s.kind == "video" and s.active for s in self.sections)

    @property
    def has_datachannel(self) -> bool:
        return any(s.is_datachannel and s.active for s in self.sections)


@dataclass(frozen=True)
class IceCandidate:
    """A remote ICE candidate, with its m-line resolved: both ``sdp_mid`` (when the offer names
    mids) and ``sdp_mline_index`` are filled in, whichever of the two the browser sent."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int


def parse_offer(sdp: str) -> OfferSummary:
    """Check an offer's SDP; raise ``bad_sdp`` or ``no_audio`` when it will not do."""
    if len(sdp) > MAX_SDP_BYTES:
        raise SignalingError("bad_sdp", f"SDP longer than {MAX_SDP_BYTES} bytes")
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        raise SignalingError("bad_sdp", "SDP must start with v=0")
    for number, line in enumerate(lines, start=1):
        if not _LINE.fullmatch(line):
            raise SignalingError("bad_sdp", f"line {number} is not a valid SDP line")
    sections = _media_sections(lines)
    if not sections:
        raise SignalingError("bad_sdp", "SDP has no m-line")
    if not any(s.kind == "audio" and s.active for s in sections):
        raise SignalingError("no_audio", "the offer has no active audio m-line")
    for attribute, purpose in _REQUIRED_ATTRIBUTES:
        if not any(line.startswith(attribute) for line in lines):
            raise SignalingError("bad_sdp", f"the offer has no {attribute[2:-1]} ({purpose})")
    return OfferSummary(sections=tuple(sections))


def _media_sections(lines: list[str]) -> list[MediaSection]:
    sections: list[MediaSection] = []
    mids: set[str] = set()
    pending: tuple[str, int, str] | None = None
    mid: str | None = None

    def close_section() -> None:
        if pending is None:
            return
        if mid is not None and mid in mids:
            raise SignalingError("bad_sdp", f"mid {mid!r} appears twice")
        if mid is not None:
            mids.add(mid)
        sections.append(MediaSection(len(sections), pending[0], mid, pending[1], pending[2]))

    for line in lines:
        if line.startswith("m="):
            close_section()
            if len(sections) >= MAX_MEDIA_SECTIONS:
                raise SignalingError("bad_sdp", f"more than {MAX_MEDIA_SECTIONS} m-lines")
            match = _MLINE.fullmatch(line)
            if match is None or match[1] not in _MEDIA_KINDS or int(match[2]) > 65535:
                raise SignalingError("bad_sdp", f"malformed m-line {line[:60]!r}")
            pending, mid = (match[1], int(match[2]), match[3]), None
        elif line.startswith("a=mid:") and pending is not None:
            mid = line[len("a=mid:") :].strip() or None
    close_section()
    return sections


def resolve_candidate(
    offer: OfferSummary, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> IceCandidate:
    """Check a trickled candidate against the offer it belongs to.

    Like ``RTCPeerConnection.addIceCandidate``: ``sdpMid`` wins when given, ``sdpMLineIndex``
    is used otherwise, and a candidate with neither is refused.
    """
    check_candidate_line(candidate)
    if sdp_mid is not None:
        section = next((s for s in offer.sections if s.mid == sdp_mid), None)
        if section is None:
            raise SignalingError("unknown_mline", f"the offer has no m-line with mid {sdp_mid!r}")
        if sdp_mline_index is not None and sdp_mline_index != section.index:
            raise SignalingError(
                "unknown_mline",
                f"sdpMid {sdp_mid!r} is m-line {section.index}, not {sdp_mline_index}",
            )
    elif sdp_mline_index is not None:
        if not 0 <= sdp_mline_index < len(offer.sections):
            raise SignalingError("unknown_mline", f"the offer has no m-line {sdp_mline_index}")
        section = offer.sections[sdp_mline_index]
    else:
        raise SignalingError("bad_candidate", "a candidate needs sdpMid or sdpMLineIndex")
    return IceCandidate(candidate=candidate, sdp_mid=section.mid, sdp_mline_index=section.index)


def check_candidate_line(candidate: str) -> None:
    """Check the RFC 8839 grammar of a candidate attribute (with or without ``candidate:``):
    ``foundation component transport priority address port typ type [extensions]``."""
    if len(candidate) > MAX_CANDIDATE_CHARS:
        raise SignalingError("bad_candidate", f"candidate longer than {MAX_CANDIDATE_CHARS}")
    text = candidate.removeprefix("a=").removeprefix("candidate:")
    fields = text.split()
    if (
        len(fields) < 8
        or not _is_int(fields[1], 1, 256)
        or not _is_int(fields[3], 0, 2**32 - 1)
        or not _is_int(fields[5], 0, 65535)
        or fields[6] != "typ"
        or fields[7] not in _CANDIDATE_TYPES
        or not text.isprintable()
    ):
        raise SignalingError("bad_candidate", "not an ICE candidate (RFC 8839 grammar)")


def _is_int(text: str, low: int, high: int) -> bool:
    return text.isascii() and text.isdigit() and low <= int(text) <= high
