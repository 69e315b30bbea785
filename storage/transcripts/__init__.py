"""Transcripts: the durable writer that stores each event once, and the readers of what it wrote.

The package holds one job per module, and this module names the public ones, so callers write
``from storage.transcripts import TranscriptWriter`` whatever module a name lives in:

* :mod:`~storage.transcripts.entries`: ``TranscriptEntry`` (handed over), ``TranscriptRow`` (read
  back), and the one declaration of ``Role`` and ``Source``;
* :mod:`~storage.transcripts.writer`: ``TranscriptWriter``, batched, journaled, exactly once;
* :mod:`~storage.transcripts.statements`: one batch's SQL and the connection that runs it;
* :mod:`~storage.transcripts.codec`: the journal's lines;
* :mod:`~storage.transcripts.readers`: ``read_transcript``.
"""

from storage.transcripts.entries import ROLES, SOURCES, Role, Source, TranscriptEntry, TranscriptRow
from storage.transcripts.readers import read_transcript
from storage.transcripts.writer import TranscriptWriter, WriterStats

__all__ = [
    "ROLES",
    "SOURCES",
    "Role",
    "Source",
    "TranscriptEntry",
    "TranscriptRow",
    "TranscriptWriter",
    "WriterStats",
    "read_transcript",
]
