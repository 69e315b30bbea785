"""The runtime role holds exactly the grants docs/security.md documents, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from storage.migrate import RUNTIME_ROLE

DOC = Path(__file__).parents[2] / "docs" / "security.md"


def documented_grants() -> set[tuple[str, str]]:
    """(table, privilege) from the grants table of docs/security.md (its schema row aside)."""
    section = DOC.read_text().split("## The database's roles and grants", 1)[1].split("\n## ")[0]
    grants = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].isupper() or "schema" in cells[0]:
            continue
        for table in re.findall(r"`(\w+)`", cells[0]):
            grants |= {(table, p.strip(" `")) for p in cells[1].split(",")}
    return grants


def test_the_runtime_role_holds_exactly_the_documented_grants(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        rows = conn.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
            " WHERE grantee = %s",
            [RUNTIME_ROLE],
        ).fetchall()
        schema_create = conn.execute(
            "SELECT has_schema_privilege(%s, 'public', 'CREATE')", [RUNTIME_ROLE]
        ).fetchone()
    documented = documented_grants()
    assert len(documented) > 20
    assert set(rows) == documented
    assert schema_create == (False,)
