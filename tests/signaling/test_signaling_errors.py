"""The one error table: complete for every code the code base raises, and documented exactly."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.errors import ERRORS, SignalingError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "signaling.md"
#: The packages whose errors reach the browser: the protocol itself and the gateway's handler.
PACKAGES = ("signaling", "gateway")
#: Calls whose first argument is an error code.
CODE_CALLS = frozenset({"SignalingError", "send_error"})


def raised_codes() -> Iterator[tuple[str, str]]:
    """Every error code written as a literal where an error is made: (where, code)."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name not in CODE_CALLS:
                    continue
                args = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "code")]
                for arg in args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        yield where, arg.value


def documented_rows() -> list[tuple[str, str, str, str]]:
    """The rows of the table under "## Errors": (code, fatal, close code, meaning)."""
    section = DOC.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| `")]
    rows = [re.fullmatch(r"\| `(\w+)` \| (yes|no) \| (\d{4}) \| (.+) \|", line) for line in lines]
    assert all(rows), [line for line, row in zip(lines, rows, strict=True) if row is None]
    return [row.groups() for row in rows if row is not None]  # type: ignore[misc]


def test_every_error_code_raised_in_the_code_is_in_the_table() -> None:
    found = list(raised_codes())
    assert {where.split("/", 1)[0] for where, _ in found} == set(PACKAGES)  # the scan sees both
    missing = [f"{where}: {code}" for where, code in found if code not in ERRORS]
    assert missing == []


def test_every_error_code_is_documented_with_its_fatality_and_close_code() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (yes|no) \| (\d{4}) \|", DOC.read_text(), re.MULTILINE)
    documented = {code: (fatal == "yes", int(close)) for code, fatal, close in rows}
    assert documented == {code: (spec.fatal, spec.close_code) for code, spec in ERRORS.items()}


def test_the_documented_error_table_has_one_row_per_code_with_a_meaning() -> None:
    rows = documented_rows()
    codes = [code for code, *_ in rows]
    assert sorted(codes) == sorted(ERRORS) and len(codes) == len(set(codes))
    assert all(meaning.strip() for *_, meaning in rows)


def test_close_codes_are_private_range_and_distinct() -> None:
    codes = [spec.close_code for spec in ERRORS.values()]
    assert all(4000 <= code <= 4999 for code in codes) and len(set(codes)) == len(codes)


def test_gateway_codes_outside_the_table_close_as_refused() -> None:
    error = SignalingError("session_replaced", "a newer socket took over", fatal=True)
    assert error.close_code == ERRORS["refused"].close_code
    assert SignalingError("session_replaced", "x").fatal is False
    with pytest.raises(ValueError):
        SignalingError("Not Snake", "x")
