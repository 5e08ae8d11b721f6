"""Registry of the advisory-lock keys this project takes. Never renumber a key: two versions of
the driver running side by side during an upgrade must still exclude each other.

Keys are transaction-scoped (``pg_try_advisory_xact_lock``) and taken on the connection that
reads the plan, never on a pooled connection.
"""

from __future__ import annotations

from typing import Final

#: One reconciler at a time per database: the bytes of "prebuild" as a signed 64-bit key.
RECONCILE: Final = 0x7072656275696C64
