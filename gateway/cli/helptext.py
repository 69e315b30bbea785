"""A command's ``--help`` from its module docstring, minus the docstring's reST markup.

Each command explains itself once, in its module docstring, for readers of the code and of
``--help`` alike. The code's readers get reST (``double backticks``, roles such as
``:class:`~a.b.C```); a terminal would show that markup literally, so it is turned into plain
text here, and the docstring's own line breaks (its lists, its paragraphs) are kept.
"""

from __future__ import annotations

import argparse
import re

#: ``:role:`target```: Sphinx shows ``~a.b.C`` as ``C`` and a relative ``.mod`` as ``mod``
_ROLE = re.compile(r":[a-z]+:`(~?)\.?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str) -> str:
    """``doc`` as a terminal should show it: literals and cross-references as their bare text."""

    def role(match: re.Match[str]) -> str:
        short, target = match.groups()
        return target.rsplit(".", 1)[-1] if short else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, doc)).strip()


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is ``doc`` in plain text, laid out as written."""
    return argparse.ArgumentParser(
        prog=prog,
        description=plain(doc or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
