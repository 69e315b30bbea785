"""Finding a secret's value in text, whole or in part, whatever its shape.

An upstream that rejects a key quotes it back: whole, from its second character on, its tail
after a row of asterisks, inside its own error code. A pattern for OpenAI's ``sk-...`` shape
misses every key of another shape (Azure's are 32 hex digits) and every piece without the
prefix. So the value itself is looked for: any run of key-like characters that contains
``PIECE`` consecutive characters of the secret is taken for it and blanked. Sans I/O: the log
set-up (``gateway.logs``) and the upstream clients' error text (``gateway.upstream.openai``)
both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: How many consecutive characters of a secret give it away (fewer, for a shorter secret).
#: Twelve characters of a random key are never there by chance, and no legible piece is
#: shorter: the real service's "sk-proj-****...abcd" keeps only four.
PIECE = 12
REDACTED = "[redacted]"

#: A run of characters a key, or a piece of one, can hide in (its own alphabet, base64's, the
#: asterisks of a masked key, URL escapes).
_RUN = re.compile(r"[A-Za-z0-9_\-+/=.~%*]+")


class Scrubber:
    """Blanks the runs of text that hold a piece of any of its secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        #: piece length -> every piece of that length of the secrets
        self._pieces: dict[int, set[str]] = {}
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Look for ``secret`` too (blank values are ignored: they would match anything)."""
        secret = secret.strip()
        if not secret:
            return
        n = min(PIECE, len(secret))
        self._pieces.setdefault(n, set()).update(
            secret[i : i + n] for i in range(len(secret) - n + 1)
        )

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def scrub(self, text: str) -> str:
        """``text`` with every run that holds a piece of a secret replaced by ``REDACTED``."""
        if not self._pieces:
            return text
        return _RUN.sub(lambda m: REDACTED if self._holds(m.group()) else m.group(), text)

    def _holds(self, run: str) -> bool:
        return any(
            run[i : i + n] in pieces
            for n, pieces in self._pieces.items()
            for i in range(len(run) - n + 1)
        )
