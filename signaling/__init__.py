"""The browser-facing signaling protocol: hello/offer/answer/trickle over one WebSocket.

One sans-I/O core serves both ends, as in ``websockets``: ``protocol`` holds what they share,
``session.ServerProtocol`` and ``client_protocol.ClientProtocol`` each side's rules; ``server``
(aiohttp) and ``client`` (asyncio) are their thin shells; ``tokens``, ``sdp``, ``messages`` and
``errors`` are the pure pieces they share. Knows no WebRTC library and no database, and never
imports ``gateway``. See docs/signaling.md.
"""
