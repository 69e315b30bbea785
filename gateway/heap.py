"""What start-up left on the heap, taken out of the garbage collector's way.

A full collection walks every tracked object; a process that has imported aiortc, aiohttp
and the gateway holds ~85 000 of them that live as long as it does, and walking them takes
~30 ms (a measured pause: on the relay's one event loop, every session's packets wait it out,
and at 50 sessions such pauses made the relay's p99). ``freeze_start_up`` moves them to the
permanent generation once start-up is done, so a full collection walks only what sessions
made since.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect once, then exempt every surviving object from later collections (call once
    the process is serving: modules, settings, the application are all made)."""
    gc.collect()
    gc.freeze()
