"""Just enough SDP to refuse bad offers and candidates before any WebRTC stack sees them.

This is not an SDP parser for negotiation (aiortc does that in the gateway). It reads the
m-lines (kind, mid, index, whether active) so the session can answer ``bad_sdp`` or
``no_audio`` with a clear message, and can tell a candidate for an m-line the offer lacks
(``unknown_mline``) from one it has. Sizes are capped so that garbage costs little.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from signaling.errors import SignalingError

#: Real offers (audio, video, data channel, every codec) stay well under 16 KiB.
MAX_SDP_BYTES = 32 * 1024
MAX_MEDIA_SECTIONS = 32
MAX_CANDIDATE_CHARS = 1024

_MEDIA_KINDS = frozenset({"audio", "video", "application", "text", "message"})
#: The kinds a WebRTC stack sets up ICE and DTLS transports for.
_TRANSPORT_KINDS = frozenset({"audio", "video", "application"})
_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_MLINE = re.compile(r"m=([a-z]+) ([0-9]{1,5})(?:/[0-9]{1,5})? (\S+)((?: \S+)+)")
_CONNECTION = re.compile(r"c=IN IP([46]) ([^ ]+)")
_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
#: The grammar of each attribute value a WebRTC stack reads (RFC 8866, 8839, 8842, 8122, 4585,
#: 8285, 5576, 8841, 3605, 5888, 8830). One of these without its value, or with a value of
#: another shape, makes the offer ``bad_sdp``: aiortc, for one, fails on them with errors of its
#: own.
_ATTRIBUTE_VALUES = {
    name: re.compile(pattern)
    for name, pattern in {
        "setup": r"actpass|active|passive",
        "fingerprint": r"[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}",
        "ice-ufrag": r"[A-Za-z0-9+/]{4,256}",
        "ice-pwd": r"[A-Za-z0-9+/]{22,256}",
        "rtpmap": r"[0-9]{1,3} [^ /]+/[0-9]{1,10}(?:/[0-9]{1,3})?",
        "fmtp": r"[0-9]{1,3} \S.*",
        "rtcp-fb": r"(?:\*|[0-9]{1,3}) \S+(?: .*)?",
        "extmap": r"[0-9]{1,5}(?:/(?:sendrecv|sendonly|recvonly|inactive))? \S+(?: .*)?",
        "ssrc": r"[0-9]{1,10} \S.*",
        "ssrc-group": r"\S+(?: [0-9]{1,10})*",
        "sctp-port": r"[0-9]{1,5}",
        "max-message-size": r"[0-9]{1,20}",
        "rtcp": r"[0-9]{1,5}(?: IN IP[46] [^ ]+)?",
        "sctpmap": r"[0-9]{1,5} \S.*",
        "mid": r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}",
        "msid": r"[A-Za-z0-9!#$%&'*+.^_`{|}~{}-]{1,64}(?: [A-Za-z0-9!#$%&'*+.^_`{|}~{}-]{1,64})?",
        "group": r".*",
        "msid-semantic": r".*",
    }.items()
}
#: fmtp parameters whose values their RFCs define as integers (RFC 7587, 4588, 7741).
_INTEGER_FMTP_PARAMETERS = frozenset(
    {"apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo", "useinbandfec"}
)
#: The codecs every WebRTC endpoint implements (RFC 7874, RFC 7742): an audio or video m-line
#: that names none of them by ``a=rtpmap`` cannot be negotiated with a WebRTC stack.
_REQUIRED_CODECS = {
    "audio": frozenset({"opus", "pcmu", "pcma"}),
    "video": frozenset({"vp8", "h264"}),
}
#: Without these no WebRTC connection can form (RFC 8829), so every audio, video and data
#: m-line needs each, in its section or at session level: refuse such an offer up front rather
#: than let the peer connection fail later and quietly.
_REQUIRED_ATTRIBUTES = (
    ("ice-ufrag", "ICE credentials"),
    ("ice-pwd", "ICE credentials"),
    ("fingerprint", "the DTLS certificate fingerprint"),
    ("setup", "the DTLS role"),
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


def sdp_lines(sdp: str) -> list[str]:
    """An SDP's non-empty lines, whether it ends them with CRLF or LF."""
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def attribute(line: str) -> tuple[str, str | None]:
    """An ``a=`` line's name and value, split at the first colon (``a=rtcp-mux``: no value)."""
    name, colon, value = line[2:].partition(":")
    return name, value if colon else None


def parse_offer(sdp: str) -> OfferSummary:
    """Check an offer's SDP; raise ``bad_sdp`` or ``no_audio`` when it will not do."""
    if len(sdp) > MAX_SDP_BYTES:
        raise SignalingError("bad_sdp", f"SDP longer than {MAX_SDP_BYTES} bytes")
    lines = sdp_lines(sdp)
    if not lines or lines[0] != "v=0":
        raise SignalingError("bad_sdp", "SDP must start with v=0")
    for number, line in enumerate(lines, start=1):
        _check_line(number, line)
    session, blocks = _split_sections(lines)
    if not blocks:
        raise SignalingError("bad_sdp", "SDP has no m-line")
    sections = _media_sections(blocks)
    if not any(s.kind == "audio" and s.active for s in sections):
        raise SignalingError("no_audio", "the offer has no active audio m-line")
    session_names = {attribute(line)[0] for line in session if line.startswith("a=")}
    for section, block in zip(sections, blocks, strict=True):
        _check_section(section, block, session_names)
    _check_bundle(session, sections)
    return OfferSummary(sections=tuple(sections))


_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


def with_explicit_directions(sdp: str) -> str:
    """``sdp`` with a direction attribute in every m-line section that has none.

    RFC 8866 (section 6.7) lets a section leave its direction out: then the session-level
    attribute applies, or ``sendrecv``. aiortc reads such a section's direction as ``None`` and
    fails deep inside ``createAnswer``; writing the default out makes the offer mean the same
    to it as to every other stack. The rest of the text is kept as it was, line endings too.
    """
    newline = "\r\n" if "\r\n" in sdp else "\n"
    session, blocks = _split_sections(sdp_lines(sdp))
    named = [line[2:] for line in session if line[2:] in _DIRECTIONS and line.startswith("a=")]
    default = f"a={named[-1] if named else 'sendrecv'}"
    out = list(session)
    for block in blocks:
        out.extend(block)
        if not any(line[2:] in _DIRECTIONS and line.startswith("a=") for line in block):
            out.append(default)
    return newline.join(out) + newline


#: Opus parameters every leg of the gateway asks for: in-band FEC (RFC 7587 section 3.1.3)
#: keeps speech intelligible at 2-5 % packet loss.
OPUS_WANTED = (("useinbandfec", "1"),)
#: Opus parameters of an offer that an answer echoes: the offerer's own receive preferences.
OPUS_ECHOED = ("stereo", "maxplaybackrate")


def with_opus_parameters(sdp: str, offer: str | None = None) -> str:
    """``sdp`` (the gateway's own offer or answer) with Opus ``a=fmtp`` parameters written out.

    aiortc writes no ``a=fmtp`` for Opus, so without this the browser is never asked for in-band
    FEC. Every Opus payload type of every audio section gets ``OPUS_WANTED``; an answer (given
    the ``offer`` it answers) also echoes the ``OPUS_ECHOED`` values of the offer's section with
    the same mid. The relay forwards packets unchanged between its legs, so both legs must ask
    for the same: each passes its own description through here. Other lines are kept as they
    were, line endings too.
    """
    offered = _opus_parameters(offer) if offer is not None else {}
    newline = "\r\n" if "\r\n" in sdp else "\n"
    session, blocks = _split_sections(sdp_lines(sdp))
    out = list(session)
    for block in blocks:
        mid = _section_mid(block)
        echoed = {k: v for k, v in offered.get(mid, {}).items() if k in OPUS_ECHOED}
        wanted = {**echoed, **dict(OPUS_WANTED)}
        for payload_type in _opus_payload_types(block):
            block = _with_fmtp(block, payload_type, wanted)
        out.extend(block)
    return newline.join(out) + newline


def _attributes(block: list[str]) -> list[tuple[str, str | None]]:
    return [attribute(line) for line in block if line.startswith("a=")]


def _section_mid(block: list[str]) -> str | None:
    return next((value for name, value in _attributes(block) if name == "mid"), None)


def _opus_payload_types(block: list[str]) -> list[str]:
    """The payload types an audio section maps to Opus (none for another section)."""
    if not block[0].startswith("m=audio"):
        return []
    return [
        value.split(" ", 1)[0]
        for name, value in _attributes(block)
        if name == "rtpmap" and value and value.split(" ", 1)[-1].lower().startswith("opus/")
    ]


def _fmtp_of(block: list[str], payload_type: str) -> tuple[int | None, dict[str, str]]:
    """Where the payload type's ``a=fmtp`` line is in ``block``, and its parameters."""
    for index, line in enumerate(block):
        name, value = attribute(line) if line.startswith("a=") else ("", None)
        if name == "fmtp" and value and value.split(" ", 1)[0] == payload_type:
            text = value.split(" ", 1)[1] if " " in value else ""
            pairs = (p.strip().partition("=") for p in text.split(";") if p.strip())
            return index, {key: val for key, _, val in pairs}
    return None, {}


def _with_fmtp(block: list[str], payload_type: str, wanted: dict[str, str]) -> list[str]:
    index, parameters = _fmtp_of(block, payload_type)
    merged = {**parameters, **wanted}
    line = f"a=fmtp:{payload_type} " + ";".join(f"{k}={v}" for k, v in merged.items())
    if index is not None:
        return [*block[:index], line, *block[index + 1 :]]
    rtpmap = next(i for i, text in enumerate(block) if text.startswith(f"a=rtpmap:{payload_type} "))
    return [*block[: rtpmap + 1], line, *block[rtpmap + 1 :]]


def _opus_parameters(sdp: str) -> dict[str | None, dict[str, str]]:
    """The first Opus payload type's ``a=fmtp`` parameters of each audio section, by mid."""
    _, blocks = _split_sections(sdp_lines(sdp))
    found: dict[str | None, dict[str, str]] = {}
    for block in blocks:
        types = _opus_payload_types(block)
        if types:
            found[_section_mid(block)] = _fmtp_of(block, types[0])[1]
    return found


def _check_line(number: int, line: str) -> None:
    """One line's own grammar: the line itself, and the value of an attribute stacks read."""
    if not _LINE.fullmatch(line):
        raise SignalingError("bad_sdp", f"line {number} is not a valid SDP line")
    if line.startswith("c=") and not _is_connection(line):
        raise SignalingError(
            "bad_sdp",
            f"line {number}: c= must be 'IN IP4 <IPv4 address>' or 'IN IP6 <IPv6 address>'",
        )
    if not line.startswith("a="):
        return
    name, value = attribute(line)
    if name == "candidate":
        try:
            check_candidate_line(value or "")
        except SignalingError as exc:
            raise SignalingError("bad_sdp", f"line {number}: {exc.message}") from None
        return
    grammar = _ATTRIBUTE_VALUES.get(name)
    if grammar is not None and (value is None or not grammar.fullmatch(value)):
        raise SignalingError("bad_sdp", f"line {number}: malformed a={name} {line[:60]!r}")
    if name == "fmtp" and value is not None:
        for parameter in value.split(" ", 1)[1].split(";"):
            key, equals, number_text = parameter.strip().partition("=")
            if equals and key in _INTEGER_FMTP_PARAMETERS and not _is_int(number_text, 0, 2**31):
                raise SignalingError("bad_sdp", f"line {number}: fmtp {key} must be an integer")


def _is_connection(line: str) -> bool:
    """``c=`` with an address literal of the family it names: what WebRTC stacks write (the
    unicast form of RFC 8866 §5.7). aiortc reads any word there, then fails to write its own
    SDP back out (``ipaddress``), deep inside answering: so anything else is refused here."""
    match = _CONNECTION.fullmatch(line)
    if match is None:
        return False
    try:
        return ipaddress.ip_address(match[2]).version == int(match[1])
    except ValueError:
        return False


def _split_sections(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and each m-line with the lines of its section."""
    session: list[str] = []
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            if len(blocks) >= MAX_MEDIA_SECTIONS:
                raise SignalingError("bad_sdp", f"more than {MAX_MEDIA_SECTIONS} m-lines")
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        else:
            session.append(line)
    return session, blocks


def _media_sections(blocks: list[list[str]]) -> list[MediaSection]:
    sections: list[MediaSection] = []
    mids: set[str] = set()
    for block in blocks:
        match = _MLINE.fullmatch(block[0])
        if match is None or match[1] not in _MEDIA_KINDS or int(match[2]) > 65535:
            raise SignalingError("bad_sdp", f"malformed m-line {block[0][:60]!r}")
        kind, formats = match[1], match[4].split()
        if kind in ("audio", "video") and not all(
            _PAYLOAD_TYPE.fullmatch(f) and int(f) <= 127 for f in formats
        ):
            raise SignalingError("bad_sdp", f"{kind} m-line formats must be payload types 0-127")
        # The last a=mid counts, as for a WebRTC stack reading the section top to bottom.
        mids_named = [line[len("a=mid:") :] for line in block if line.startswith("a=mid:")]
        mid = mids_named[-1] or None if mids_named else None
        if mid is not None and mid in mids:
            raise SignalingError("bad_sdp", f"mid {mid!r} appears twice")
        if mid is not None:
            mids.add(mid)
        sections.append(MediaSection(len(sections), kind, mid, int(match[2]), match[3]))
    return sections


def _check_section(section: MediaSection, block: list[str], session_names: set[str]) -> None:
    """What a section needs besides its lines' grammar: transport attributes (its own or the
    session's), a mandatory codec (audio, video), and an rtpmap for every payload type an fmtp
    line describes."""
    attributes = [attribute(line) for line in block if line.startswith("a=")]
    if section.kind in _TRANSPORT_KINDS:
        names = session_names | {name for name, _ in attributes}
        for name, purpose in _REQUIRED_ATTRIBUTES:
            if name not in names:
                raise SignalingError(
                    "bad_sdp",
                    f"m-line {section.index} ({section.kind}) has no a={name} ({purpose})",
                )
    rtpmaps = [value.split(" ", 1) for name, value in attributes if name == "rtpmap" and value]
    required = _REQUIRED_CODECS.get(section.kind)
    if required and not any(codec.split("/")[0].lower() in required for _, codec in rtpmaps):
        raise SignalingError(
            "bad_sdp",
            f"m-line {section.index} ({section.kind}) offers none of "
            f"{', '.join(sorted(required))} by a=rtpmap",
        )
    mapped = {pt for pt, _ in rtpmaps}
    for name, value in attributes:
        if name == "fmtp" and value and value.split(" ", 1)[0] not in mapped:
            raise SignalingError(
                "bad_sdp",
                f"m-line {section.index}: a=fmtp for payload type {value.split()[0]} has no rtpmap",
            )


def _check_bundle(session: list[str], sections: list[MediaSection]) -> None:
    """A BUNDLE group names only mids the offer has (RFC 8843)."""
    mids = {s.mid for s in sections}
    for line in session:
        name, value = attribute(line)
        tokens = (value or "").split()
        if name == "group" and tokens[:1] == ["BUNDLE"]:
            unknown = [mid for mid in tokens[1:] if mid not in mids]
            if unknown:
                raise SignalingError(
                    "bad_sdp", f"a=group:BUNDLE names mid {unknown[0]!r}, which no m-line has"
                )


def resolve_candidate(
    offer: OfferSummary, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> IceCandidate:
    """Check a trickled candidate against the offer it belongs to (its grammar, its m-line)."""
    check_candidate_line(candidate)
    section = resolve_mline(offer, sdp_mid, sdp_mline_index)
    return IceCandidate(candidate=candidate, sdp_mid=section.mid, sdp_mline_index=section.index)


def resolve_mline(
    offer: OfferSummary, sdp_mid: str | None, sdp_mline_index: int | None
) -> MediaSection:
    """The m-line a trickled candidate (or an m-line's end-of-candidates) names.

    Like ``RTCPeerConnection.addIceCandidate``: ``sdpMid`` wins when given, ``sdpMLineIndex``
    is used otherwise, and a candidate with neither is refused.
    """
    if sdp_mid is not None:
        section = next((s for s in offer.sections if s.mid == sdp_mid), None)
        if section is None:
            raise SignalingError("unknown_mline", f"the offer has no m-line with mid {sdp_mid!r}")
        if sdp_mline_index is not None and sdp_mline_index != section.index:
            raise SignalingError(
                "unknown_mline",
                f"sdpMid {sdp_mid!r} is m-line {section.index}, not {sdp_mline_index}",
            )
        return section
    if sdp_mline_index is not None:
        if not 0 <= sdp_mline_index < len(offer.sections):
            raise SignalingError("unknown_mline", f"the offer has no m-line {sdp_mline_index}")
        return offer.sections[sdp_mline_index]
    raise SignalingError("bad_candidate", "a candidate needs sdpMid or sdpMLineIndex")


def check_candidate_line(candidate: str) -> str:
    """Check the RFC 8839 grammar of a candidate attribute (with or without ``candidate:``):
    ``foundation component transport priority address port typ type [extensions]``; return
    its connection address (an IP address or a hostname), for the address policy."""
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
    return fields[4]


def _is_int(text: str, low: int, high: int) -> bool:
    return text.isascii() and text.isdigit() and low <= int(text) <= high
