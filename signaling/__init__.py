"""The browser-facing signaling protocol: hello/offer/answer/trickle over one WebSocket.

``session`` is the sans-I/O state machine, ``server`` its aiohttp shell, ``client`` a Python
client; ``tokens``, ``sdp``, ``messages`` and ``errors`` are the pure pieces they share.
Knows no WebRTC library and no database, and never imports ``gateway``. See docs/signaling.md.
"""
