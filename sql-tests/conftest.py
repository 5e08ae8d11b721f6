"""pgTAP files are collected by pytest-pgtap; they run on a clone of the session's template."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.fixtures import clone_database, drop_database, with_database


@pytest.fixture(scope="session")
def pgtap_connection(server_url: str, template_db: str) -> Iterator[psycopg.Connection[Any]]:
    """Overrides pytest-pgtap's fixture: its own would silently skip every file without a server.

    The pgTAP files run on one clone of the template; each file rolls back what it did.
    """
    name = clone_database(server_url, template_db)
    with psycopg.connect(with_database(server_url, name)) as c:
        yield c
    with contextlib.suppress(psycopg.Error):
        drop_database(server_url, name)
