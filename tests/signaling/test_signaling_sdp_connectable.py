"""An offer must carry what any WebRTC connection needs: ICE credentials and a fingerprint."""

from __future__ import annotations

import pytest

from signaling.errors import SignalingError
from signaling.sdp import parse_offer
from tests.signaling.signaling_samples import AUDIO, offer_of


@pytest.mark.parametrize("missing", ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"])
def test_an_offer_without_ice_credentials_or_fingerprint_is_bad_sdp(missing: str) -> None:
    offer = offer_of(AUDIO)
    parse_offer(offer)  # the complete offer passes
    stripped = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith(missing))
    with pytest.raises(SignalingError) as error:
        parse_offer(stripped)
    assert error.value.code == "bad_sdp"
    assert missing[2:-1] in error.value.message
