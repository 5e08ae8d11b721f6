"""The driver's SQL: named queries loaded from ``queries.sql`` (sqlc/aiosql convention).

Python never builds SQL text; it only picks a query by name and passes parameters.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a file into ``{name: statement}`` at ``-- name:`` markers."""
    names = list(_NAME.finditer(text))
    queries: dict[str, str] = {}
    for i, match in enumerate(names):
        end = names[i + 1].start() if i + 1 < len(names) else len(text)
        body = text[match.end() : end].strip()
        if match[1] in queries:
            raise ValueError(f"query {match[1]!r} is defined twice")
        queries[match[1]] = body
    return queries


@cache
def _load(filename: str) -> dict[str, str]:
    return parse((Path(__file__).parent / filename).read_text())


def query(name: str, filename: str = "queries.sql") -> sql.SQL:
    """The named query, ready for ``cursor.execute``."""
    try:
        text = _load(filename)[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in driver/{filename}") from None
    # The text comes from our own file, never from input.
    return sql.SQL(text)
