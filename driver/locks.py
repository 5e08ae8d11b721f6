"""Registry of the advisory-lock keys this project takes. Never renumber a key: two versions of
the driver running side by side during an upgrade must still exclude each other.

Keys are transaction-scoped (``pg_try_advisory_xact_lock``) and taken on the connection that
reads the plan, never on a pooled connection.
"""

from __future__ import annotations

from typing import Final

#: One reconciler at a time per database: the bytes of "prebuild" as a signed 64-bit key.
RECONCILE: Final = 0x7072656275696C64

#: Claims notify the reconciler loops one at a time (SPEC 6.1): the claim transaction that holds
#: this key (``pg_try_advisory_xact_lock``, in ``prebuilds.notify_claim``) sends the notification;
#: claims committing meanwhile rely on it. "prebwake".
CLAIM_NOTIFIER: Final = 0x7072656277616B65

#: Every claim holds this key shared until it commits (``prebuilds.notify_claim``); a loop's cycle
#: takes it exclusive for a moment before its snapshot (``prebuilds.wait_for_claims``), so a claim
#: that left the notification to another is committed before the cycle that notification starts
#: reads the plan. "prebclam".
CLAIMS_IN_FLIGHT: Final = 0x70726562636C616D
