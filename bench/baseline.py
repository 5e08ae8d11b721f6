"""The BASELINE for the benchmarks: a faithful Python port of the reference (Coder's) per-preset
reconciler, over our schema. It is kept in ``bench/`` and never used by the product: it exists to
be measured against the database-first design (``prebuilds.reconciliation_actions`` read by
``prebuilds.cycle``), so it keeps Coder's shape on purpose and is NOT optimised.

Shape (Coder's ``enterprise/coderd/prebuilds/reconcile.go`` and ``coderd/prebuilds/*.go``):

1. **Lock and snapshot**: one ``repeatable read, read only`` transaction on one connection takes
   ``pg_try_advisory_xact_lock(prebuilds.locks.RECONCILE)`` (``run_baseline_cycle``; the same key as
   ours, so the two designs exclude each other); then ``read_snapshot``, in that transaction, reads
   the settings (paused: stop here, as Coder does) and runs Coder's separate snapshot queries one
   after the other, ported with Coder's query shapes to our tables
   (``bench/baseline.sql``): GetTemplatePresetsWithPrebuilds (the UNFILTERED list: every preset
   with a pool, of every version of every template), GetActivePresetPrebuildSchedules,
   GetRunningPrebuiltWorkspaces, CountInProgressPrebuilds, CountPendingNonActivePrebuilds (listing
   the workspaces), GetPresetsBackoff and GetPresetsAtFailureLimit.

   **Which Coder.** The seed issue is coder/coder#20606, filed 2025-10-31; the baseline is Coder's
   main of that week (the v2.28 line), the strongest version the issue's author was looking at:
   every query that needs a workspace's latest build reads Coder's ``workspace_latest_builds``
   view of migration 000323 (PR #17789, May 2025: a LATERAL lookup of the latest build of each
   non-deleted workspace, through the ``(workspace_id, build_number)`` unique index), and
   GetRunningPrebuiltWorkspaces has the CTE shape of PRs #18717/#18832 (July 2025), which
   replaced the inline-LATERAL rewrite of PR #18588 (June 2025); CountPendingNonActivePrebuilds
   is PR #20387 (October 2025). The current preset is the preset of the latest build naming one,
   from the build history. Coder's own indexes on these tables (including ``workspace_builds
   (initiator_id)``, migration 000363, September 2025) are created in the baseline's bench
   database by ``bench.harness.coder_database``, which also drops our partial indexes there; our
   maintained ``workspaces.latest_build_id`` / ``current_preset_id`` pointers are the
   optimisation being measured, so the baseline never reads them. ``variant="historical"``
   (``bench/baseline_historical.sql``) swaps in the view of migration 000314, a ``distinct on``
   over ALL builds, which Coder had already abandoned: kept to explain the earlier README table,
   never a headline.

   Two reads have no Coder counterpart and run only when needed: the pending prebuild starts
   when ``max_pending_creates`` is set, and the presets WITHOUT a pool that still hold prebuilds
   (see difference 5).
2. **Plan** (``plan``): per preset of the list, in Python, Coder's ``GlobalSnapshot.FilterByPreset``
   then ``PresetSnapshot.CalculateActions`` (backoff check, inactive: cancel pending and delete
   running, active: delete expired, delete the oldest extraneous, create the missing), with the
   hard-limit check of ``executeReconciliationAction`` (creates of a hard-limited preset are
   dropped). Schedules are evaluated in Python (a port of our cron rules, SPEC 4.3, with
   ``zoneinfo``; no SQL call), like Coder's Go. Coder's FilterByPreset scans every list once per
   preset (presets x rows, cheap in Go); the port groups the rows by preset once so that the
   interpreter does not inflate the baseline's plan time: the design is measured, not CPython.
   ``max_pending_creates`` (ours; Coder has no cap) is applied like our plan: creates interleaved
   across presets in (round, organization, template, version, preset name, id) order - names
   compared by code point, which matches a ``C``/``C.UTF-8`` database collation.
3. **Apply** (``run_baseline_cycle``): one task per preset of the list (including the thousands
   with nothing to do, as Coder's ``eg.Go`` per preset), at most ``workers`` (5) at a time, the
   errgroup ``SetLimit(5)`` of the seed issue's option A, over a
   ``psycopg_pool.ConnectionPool(max_size=10)`` (Coder's API pool). Each action is its own
   ``repeatable read`` transaction on a borrowed connection (BEGIN, one statement, COMMIT), like
   Coder's ``createPrebuiltWorkspace`` / ``deletePrebuiltWorkspace``; the statement calls OUR write
   function (``prebuilds.create_prebuild`` / ``delete_prebuild`` / ``cancel_prebuild``) so that
   both designs write the same rows. The lock transaction commits after the last write. The pool
   runs no check on borrow (Go's ``database/sql`` does not ping).

``spec_semantics`` - where SPEC deliberately departs from Coder, and where Coder differs anyway:

With ``spec_semantics=True`` the plan is ours: the same multiset of (preset_id, action,
workspace_id) as ``prebuilds.reconciliation_actions`` at the same instant (order may differ).
With ``spec_semantics=False`` it does what Coder does. The differences, all of them:

1. Backoff blocks deletes (SPEC 4.4 documents this change). Coder's CalculateActions returns only
   the backoff action while a preset is in its backoff window, so its expired and extraneous
   prebuilds are not deleted. Coder's backoff query covers the active version of a non-deleted
   template even when the template is deprecated, so a deprecated template's preset in backoff
   is not cleaned up either. SPEC: backoff and the hard limit block creates only.
2. The backoff row (SPEC 4.4: "appears only when creates are held back by it"). Coder returns its
   backoff action whenever the preset is in the window, even when nothing is to be created or the
   preset is hard-limited; SPEC shows one only when backoff is what holds wanted creates back
   (hard_limited comes first). Coder's window is inclusive (``now <= until``), ours exclusive.
3. Inactive presets forget expired prebuilds (SPEC 4.4 documents this change). Coder deletes
   only the unexpired running prebuilds of an inactive preset (handleInactiveTemplateVersion
   deletes ``p.Running``, which excludes the expired); SPEC deletes every running prebuild.
4. The backoff window size. Coder looks at the ``desired_instances`` most recent builds (a
   schedule-only pool has none, so no backoff); SPEC 4.2 at the ``desired`` most recent, the
   size a schedule puts in force.
5. Presets without a pool (desired_instances set to null, no schedules). Coder's preset list
   excludes them, so it never deletes their prebuilds (in Coder a version's presets are immutable,
   so this only arises through our schema); SPEC 4.1 considers them with desired 0. For the same
   reason ``read_snapshot`` does not stop when the list is empty, as Coder's SnapshotState does.
6. Cancelling queued initial builds. Coder cancels them only when the build's version differs
   from the template's active version (``!=``: never when the template has no active version);
   SPEC cancels those of every inactive preset, also on the active version of a deleted or
   deprecated template and on a template without an active version.
7. Self-healing (SPEC 5) is not ported, in either mode: Coder retries no failed delete
   (coder/coder#23614), fails no hung job, cancels no queued build of an active preset
   (#19871), never probes a hard-limited preset (#17989) and cleans up no failed or stopped
   prebuild (#25357, #18658). So ``spec_semantics=True`` plans what ours plans without its
   SPEC 5 actions (reasons ``hung: …``, ``retry n of m: …``, ``cleanup: …``, ``probe: …`` and
   ``surplus: … initial build still queued``); the equivalence tests
   (tests/test_bench_baseline.py) name those of each fleet and compare the rest. One SPEC 5 change
   reaches SPEC 4's terms: the hard limit counts finished builds only (a probe in flight neither
   ends nor extends it), where the port looks at the latest builds whatever their state, as our
   plan did before SPEC 5; they differ only while a preset has a start in flight after its
   failures.

Adaptations made in both modes (our schema has no Coder counterpart, or SPEC defines the term):
our ``failures_reset_at`` (``resume``) hides earlier builds from backoff and the hard limit;
``max_pending_creates`` caps creates as in our plan; deleted workspaces are left out of the failure
history (SPEC 4.2); the current preset is that of the latest build naming one, whatever its
transition (Coder: of the latest start); ties in build times are broken by workspace id; a pool
made of schedules only counts as a pool; the plan's clock is the snapshot transaction's ``now()``
(Coder: the API server's clock), and backoff's lookback is computed from it. Not ported: Coder's
side effects that our schema has no place for (marking a preset hard-limited, notifications,
metrics, the prebuilds user's organization memberships).

For the harness: ``run_baseline_cycle`` reports its phases' timings and the statements and round
trips it sent (counted client side by ``CountingConnection``: every cursor execute, and every
BEGIN / COMMIT / ROLLBACK psycopg sends); ``apply=False`` stops after the plan. To time the plan
alone on a connection of your own, call ``read_snapshot`` then ``plan`` inside a transaction
(``connect_counting`` gives a counting connection). Connections are named
``prebuilds-baseline`` (lock and snapshot) and ``prebuilds-baseline-write`` (the pool, opened with
``workers`` connections: one per concurrent worker, 6 in all by default). ``workers`` set to the
number of presets gives Coder before ``SetLimit``: one goroutine per preset, the pool's 10
connections the only limit.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import pq, sql
from psycopg.abc import PQGen, QueryNoTemplate
from psycopg.rows import TupleRow, class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from prebuilds import locks
from prebuilds.queries import parse

APPLICATION_NAME = "prebuilds-baseline"
WRITE_APPLICATION_NAME = "prebuilds-baseline-write"
CONNECT_TIMEOUT_S = 10

T = TypeVar("T")
OutcomeKind = Literal["applied", "skipped", "failed", "noted"]


#: Query files by variant: Coder at the seed issue (the baseline), and the historical shape.
VARIANTS = {"coder": "baseline.sql", "historical": "baseline_historical.sql"}
Variant = Literal["coder", "historical"]


@cache
def _queries(variant: Variant = "coder") -> dict[str, str]:
    return parse((Path(__file__).parent / VARIANTS[variant]).read_text())


def query(name: str, variant: Variant = "coder") -> sql.SQL:
    """A named query of ``bench/baseline.sql`` (or of the historical variant's file)."""
    return sql.SQL(_queries(variant)[name])  # our own file, never input


# --- counting statements and round trips (client side) ---------------------------------------


class RoundTrips:
    """Thread-safe counts of what the client sent: statements (cursor executes) and transaction
    commands (BEGIN, COMMIT, ROLLBACK), each one round trip with psycopg outside pipeline mode,
    and statements sent in pipeline mode (the driver's pipelined writes), which are counted as
    statements but not as round trips: the client does not wait for each one before sending
    the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.commands = 0
        self.pipelined = 0

    def add(self, *, statements: int = 0, commands: int = 0, pipelined: int = 0) -> None:
        with self._lock:
            self.statements += statements
            self.commands += commands
            self.pipelined += pipelined

    @property
    def round_trips(self) -> int:
        return self.statements + self.commands


def count_statement(cursor: psycopg.Cursor[Any]) -> None:
    """Count one execute in the cursor's connection's RoundTrips (if it has one)."""
    counter = getattr(cursor.connection, "counter", None)
    if isinstance(counter, RoundTrips):
        counter.add(statements=1)


class CountingCursor(psycopg.Cursor[Any]):
    """Counts every execute in the connection's RoundTrips (if it has one)."""

    def execute(self, *args: Any, **kwargs: Any) -> Self:
        count_statement(self)
        return super().execute(*args, **kwargs)


class CountingClientCursor(psycopg.ClientCursor[Any]):
    """The same for client-side binding cursors (the driver's two-statement writes)."""

    def execute(self, *args: Any, **kwargs: Any) -> Self:
        count_statement(self)
        return super().execute(*args, **kwargs)


class CountingConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection that counts statements (via its cursors) and the transaction commands
    psycopg sends on its own (BEGIN, COMMIT, ROLLBACK) into ``counter``."""

    counter: RoundTrips | None = None

    def __init__(self, pgconn: pq.abc.PGconn, row_factory: Any = None) -> None:
        if row_factory is None:
            super().__init__(pgconn)
        else:
            super().__init__(pgconn, row_factory)
        self.cursor_factory = CountingCursor

    def _exec_command(
        self, command: QueryNoTemplate, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[pq.abc.PGresult | None]:
        if self.counter is not None:
            self.counter.add(commands=1)
        return super()._exec_command(command, result_format)


def connect_counting(
    url: str, counter: RoundTrips, application_name: str = APPLICATION_NAME
) -> CountingConnection:
    conn = CountingConnection.connect(
        url, application_name=application_name, connect_timeout=CONNECT_TIMEOUT_S
    )
    conn.counter = counter
    return conn


# --- the snapshot (Coder's GlobalSnapshot rows) ----------------------------------------------


@dataclass(frozen=True)
class Settings:
    paused: bool
    backoff_interval: timedelta
    backoff_lookback: timedelta
    failure_hard_limit: int
    max_pending_creates: int | None
    now: datetime


@dataclass(frozen=True)
class PresetRow:
    """GetTemplatePresetsWithPrebuildsRow."""

    template_id: UUID
    template_name: str
    organization_id: UUID
    organization_name: str
    template_version_id: UUID
    template_version_name: str
    using_active_version: bool
    id: UUID
    name: str
    desired_instances: int | None
    scheduling_timezone: str
    ttl: int | None
    last_invalidated_at: datetime | None
    deleted: bool
    deprecated: bool

    @property
    def is_active(self) -> bool:
        """Coder's PresetSnapshot.isActive (= SPEC 4.1's active)."""
        return self.using_active_version and not self.deleted and not self.deprecated

    @property
    def inactive_reason(self) -> str:
        if self.deleted:
            return f"template {self.template_name} deleted"
        if self.deprecated:
            return f"template {self.template_name} deprecated"
        return f"outdated version {self.template_version_name}"


@dataclass(frozen=True)
class ScheduleRow:
    id: UUID
    preset_id: UUID
    cron_expression: str
    desired_instances: int


@dataclass(frozen=True)
class RunningPrebuild:
    """GetRunningPrebuiltWorkspacesRow."""

    id: UUID
    name: str
    template_id: UUID
    template_version_id: UUID
    current_preset_id: UUID | None
    ready: bool
    created_at: datetime


@dataclass(frozen=True)
class InProgressRow:
    """CountInProgressPrebuildsRow."""

    template_id: UUID
    template_version_id: UUID
    transition: str
    count: int
    preset_id: UUID | None


@dataclass(frozen=True)
class PendingPrebuild:
    """A queued initial build of a prebuild on a version that is not live (Coder counts them per
    preset: CountPendingNonActivePrebuilds)."""

    preset_id: UUID | None
    workspace_id: UUID
    template_version_id: UUID
    version_not_active: bool


@dataclass(frozen=True)
class BackoffRow:
    """GetPresetsBackoffRow, plus the rank of the most recent failure (see baseline.sql)."""

    template_version_id: UUID
    preset_id: UUID
    num_failed: int
    last_build_at: datetime
    first_failed_rank: int
    desired_instances: int | None


@dataclass(frozen=True)
class HardLimitedRow:
    """GetPresetsAtFailureLimitRow."""

    template_version_id: UUID
    preset_id: UUID


@dataclass
class Snapshot:
    """Everything the per-preset calculation reads, from one repeatable-read transaction."""

    settings: Settings
    presets: list[PresetRow] = field(default_factory=list)
    schedules: list[ScheduleRow] = field(default_factory=list)
    running: list[RunningPrebuild] = field(default_factory=list)
    in_progress: list[InProgressRow] = field(default_factory=list)
    pending: list[PendingPrebuild] = field(default_factory=list)
    backoffs: list[BackoffRow] = field(default_factory=list)
    hard_limited: list[HardLimitedRow] = field(default_factory=list)
    #: Prebuild start jobs pending or running (only read when max_pending_creates is set).
    pending_creates: int | None = None
    #: Presets without a pool still referenced by running or pending prebuilds (difference 5).
    unpooled_presets: list[PresetRow] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.settings.now


def _fetch(
    conn: psycopg.Connection[Any],
    cls: type[T],
    name: str,
    params: Any = None,
    variant: Variant = "coder",
) -> list[T]:
    with conn.cursor(row_factory=class_row(cls)) as cur:
        return cur.execute(query(name, variant), params).fetchall()


def read_snapshot(
    conn: psycopg.Connection[Any], *, now: datetime | None = None, variant: Variant = "coder"
) -> Snapshot:
    """Coder's SnapshotState: the settings, then (unless paused) each snapshot query in turn, in
    the caller's transaction (``repeatable read, read only`` under the lock in a cycle).

    ``now`` overrides the clock (default: the transaction's ``now()``); backoff's lookback is
    computed from it, as Coder computes it from its clock when it takes the snapshot.
    ``variant`` picks the query file (``VARIANTS``).
    """

    def fetch(cls: type[T], name: str, params: Any = None) -> list[T]:
        return _fetch(conn, cls, name, params, variant)

    settings_rows = fetch(Settings, "get_prebuilds_settings")
    settings = settings_rows[0]
    if now is not None:
        settings = Settings(
            settings.paused,
            settings.backoff_interval,
            settings.backoff_lookback,
            settings.failure_hard_limit,
            settings.max_pending_creates,
            now,
        )
    snapshot = Snapshot(settings)
    if settings.paused:
        return snapshot
    snapshot.presets = fetch(PresetRow, "get_template_presets_with_prebuilds")
    # Coder returns here when the list is empty ("no templates found with prebuilds configured");
    # the baseline reads on, since presets without a pool may still hold prebuilds (difference 5).
    snapshot.schedules = fetch(ScheduleRow, "get_active_preset_prebuild_schedules")
    snapshot.running = fetch(RunningPrebuild, "get_running_prebuilt_workspaces")
    snapshot.in_progress = fetch(InProgressRow, "count_in_progress_prebuilds")
    snapshot.pending = fetch(PendingPrebuild, "get_pending_prebuilds_to_cancel")
    snapshot.backoffs = fetch(
        BackoffRow,
        "get_presets_backoff",
        {"lookback": settings.now - settings.backoff_lookback},
    )
    snapshot.hard_limited = fetch(
        HardLimitedRow,
        "get_presets_at_failure_limit",
        {"hard_limit": settings.failure_hard_limit},
    )
    if settings.max_pending_creates is not None:
        row = conn.execute(query("count_pending_prebuild_creates", variant)).fetchone()
        snapshot.pending_creates = int(row[0]) if row else 0
    listed = {p.id for p in snapshot.presets}
    referenced = {r.current_preset_id for r in snapshot.running} | {
        p.preset_id for p in snapshot.pending
    }
    unpooled = sorted(i for i in referenced if i is not None and i not in listed)
    if unpooled:
        snapshot.unpooled_presets = fetch(PresetRow, "get_presets_by_ids", {"ids": unpooled})
    return snapshot


# --- schedules (SPEC 4.3; Coder's calculateScheduledTarget) ----------------------------------

_ITEM = re.compile(r"^(\d{1,2})(-(\d{1,2}))?$")
_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_expression_error(expression: str) -> str | None:
    """None when ``expression`` is a valid `* HOUR DOM MONTH DOW` schedule, else why not."""
    fields = expression.split()
    if not fields:
        return "cron expression is empty"
    if len(fields) != 5:
        return f"cron expression needs 5 fields, got {len(fields)}"
    if fields[0] != "*":
        return f"minute field must be *, got {fields[0]!r}"
    for n, text in enumerate(fields[1:], start=1):
        if text == "*":
            continue
        low, high = _FIELD_BOUNDS[n]
        for part in text.split(","):
            m = _ITEM.match(part)
            if m is None:
                return f"field {text!r} is not *, a number, a range a-b or a list of those"
            first, last = int(m[1]), int(m[3] or m[1])
            if first > last or first < low or last > high:
                return f"field {text!r} is out of range"
    return None


def cron_field_matches(text: str, value: int, is_dow: bool) -> bool:
    if text == "*":
        return True
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low <= value <= high or (is_dow and value == 0 and low <= 7 <= high):
            return True
    return False


def cron_matches(expression: str, zone: ZoneInfo, at: datetime) -> bool:
    f = expression.split()
    local = at.astimezone(zone)
    dow = (local.weekday() + 1) % 7  # cron: 0 = Sunday
    if not (
        cron_field_matches(f[1], local.hour, False) and cron_field_matches(f[3], local.month, False)
    ):
        return False
    dom_ok = cron_field_matches(f[2], local.day, False)
    dow_ok = cron_field_matches(f[4], dow, True)
    if f[2] != "*" and f[4] != "*":
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def _fields_overlap(a: str, b: str, low: int, high: int, is_dow: bool) -> bool:
    return any(
        cron_field_matches(a, v, is_dow) and cron_field_matches(b, v, is_dow)
        for v in range(low, high + 1)
    )


def schedules_overlap(a: str, b: str) -> bool:
    """Coder's definition (ValidateSchedules): common hour, month and day."""
    fa, fb = a.split(), b.split()
    if not (
        _fields_overlap(fa[1], fb[1], 0, 23, False) and _fields_overlap(fa[3], fb[3], 1, 12, False)
    ):
        return False
    if fa[2] == "*" or fb[2] == "*":
        return _fields_overlap(fa[4], fb[4], 0, 6, True)
    if fa[4] == "*" or fb[4] == "*":
        return _fields_overlap(fa[2], fb[2], 1, 31, False)
    return _fields_overlap(fa[2], fb[2], 1, 31, False) or _fields_overlap(fa[4], fb[4], 0, 6, True)


def _zone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def scheduled_desired(
    preset: PresetRow, schedules: Sequence[ScheduleRow], at: datetime
) -> int | None:
    """The desired size the schedules put in force at ``at``; None: use desired_instances (no
    schedules, no or unknown time zone, an invalid or overlapping schedule, none matching)."""
    if not schedules:
        return None
    zone = _zone(preset.scheduling_timezone)
    if zone is None:
        return None
    ordered = sorted(schedules, key=lambda s: s.id)
    if any(cron_expression_error(s.cron_expression) for s in ordered):
        return None
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if schedules_overlap(a.cron_expression, b.cron_expression):
                return None
    for s in ordered:
        if cron_matches(s.cron_expression, zone, at):
            return s.desired_instances
    return None


# --- per-preset calculation (Coder's PresetSnapshot) -----------------------------------------


@dataclass(frozen=True)
class BaselineAction:
    preset_id: UUID
    action: str
    workspace_id: UUID | None
    reason: str


@dataclass
class PresetSnapshot:
    """Coder's PresetSnapshot: one preset's rows, filtered out of the global snapshot."""

    preset: PresetRow
    schedules: list[ScheduleRow]
    running: list[RunningPrebuild]  # running and not expired
    expired: list[RunningPrebuild]  # running and expired
    in_progress: list[InProgressRow]
    pending: list[PendingPrebuild]
    backoff: BackoffRow | None
    is_hard_limited: bool


def is_expired(prebuild: RunningPrebuild, preset: PresetRow, now: datetime) -> bool:
    """Coder's filterExpiredWorkspaces (= our prebuilds.is_expired)."""
    if preset.last_invalidated_at is not None and prebuild.created_at < preset.last_invalidated_at:
        return True
    return bool(preset.ttl) and (now - prebuild.created_at).total_seconds() > (preset.ttl or 0)


class GlobalSnapshot:
    """Coder's GlobalSnapshot; FilterByPreset reads rows grouped by preset once (see module doc)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.schedules: dict[UUID, list[ScheduleRow]] = defaultdict(list)
        for s in snapshot.schedules:
            self.schedules[s.preset_id].append(s)
        self.running: dict[UUID, list[RunningPrebuild]] = defaultdict(list)
        for r in snapshot.running:
            if r.current_preset_id is not None:
                self.running[r.current_preset_id].append(r)
        self.in_progress: dict[UUID, list[InProgressRow]] = defaultdict(list)
        for p in snapshot.in_progress:
            if p.preset_id is not None:
                self.in_progress[p.preset_id].append(p)
        self.pending: dict[UUID, list[PendingPrebuild]] = defaultdict(list)
        for q in snapshot.pending:
            if q.preset_id is not None:
                self.pending[q.preset_id].append(q)
        self.backoffs = {b.preset_id: b for b in snapshot.backoffs}
        self.hard_limited = {h.preset_id for h in snapshot.hard_limited}

    def filter_by_preset(self, preset: PresetRow, now: datetime) -> PresetSnapshot:
        running: list[RunningPrebuild] = []
        expired: list[RunningPrebuild] = []
        for r in self.running.get(preset.id, ()):
            (expired if is_expired(r, preset, now) else running).append(r)
        return PresetSnapshot(
            preset=preset,
            schedules=self.schedules.get(preset.id, []),
            running=running,
            expired=expired,
            in_progress=self.in_progress.get(preset.id, []),
            pending=self.pending.get(preset.id, []),
            backoff=self.backoffs.get(preset.id),
            is_hard_limited=preset.id in self.hard_limited,
        )


@dataclass
class PresetPlan:
    """What one preset's worker will do: removals first, then ``creates`` creates, then notes."""

    preset: PresetRow
    removals: list[BaselineAction] = field(default_factory=list)
    creates: int = 0
    create_reason: str = ""
    notes: list[BaselineAction] = field(default_factory=list)

    def actions(self) -> list[BaselineAction]:
        creates = [
            BaselineAction(self.preset.id, "create", None, self.create_reason)
            for _ in range(self.creates)
        ]
        return [*self.removals, *creates, *self.notes]


def _oldest_first(prebuilds: Iterable[RunningPrebuild]) -> list[RunningPrebuild]:
    return sorted(prebuilds, key=lambda r: (r.created_at, r.id))


def _expired_reason(r: RunningPrebuild, preset: PresetRow) -> str:
    if preset.last_invalidated_at is not None and r.created_at < preset.last_invalidated_at:
        at = preset.last_invalidated_at
        return f"expired: created before invalidation at {at:%Y-%m-%d %H:%M:%S%z}"
    return f"expired: older than ttl {preset.ttl}s"


def calculate_actions(
    ps: PresetSnapshot, settings: Settings, now: datetime, *, spec_semantics: bool
) -> PresetPlan:
    """Coder's CalculateActions for one preset, with SPEC's rules when ``spec_semantics``."""
    preset = ps.preset
    out = PresetPlan(preset)
    active = preset.is_active
    has_pool = preset.desired_instances is not None or bool(ps.schedules)
    scheduled = scheduled_desired(preset, ps.schedules, now) if active and has_pool else None
    desired = (
        0 if not active else scheduled if scheduled is not None else preset.desired_instances or 0
    )

    # needsBackoffPeriod
    backoff_until: datetime | None = None
    if ps.backoff is not None and ps.backoff.num_failed > 0:
        window = desired if spec_semantics else ps.backoff.desired_instances
        if window is not None and ps.backoff.first_failed_rank <= window:
            until = ps.backoff.last_build_at + ps.backoff.num_failed * settings.backoff_interval
            in_window = until > now if spec_semantics else not now > until
            if in_window and (active or not spec_semantics):
                backoff_until = until
    backoff_note = (
        BaselineAction(
            preset.id,
            "backoff",
            None,
            f"backoff: {ps.backoff.num_failed} failed build(s) in the last "
            f"{settings.backoff_lookback}, creates wait until {backoff_until:%Y-%m-%d %H:%M:%S%z}",
        )
        if backoff_until is not None and ps.backoff is not None
        else None
    )
    if backoff_until is not None and not spec_semantics:
        # Coder: the backoff action is the only action (difference 1, 2).
        assert backoff_note is not None
        out.notes.append(backoff_note)
        return out

    if not active:
        # handleInactiveTemplateVersion: cancel the pending, delete the running.
        for q in ps.pending:
            if spec_semantics or q.version_not_active:
                out.removals.append(
                    BaselineAction(
                        preset.id,
                        "cancel",
                        q.workspace_id,
                        f"{preset.inactive_reason}: initial build still queued",
                    )
                )
        doomed = ps.running + ps.expired if spec_semantics else ps.running
        for r in _oldest_first(doomed):
            out.removals.append(BaselineAction(preset.id, "delete", r.id, preset.inactive_reason))
        return out

    # handleActiveTemplateVersion (CalculateState first).
    actual = len(ps.running) + len(ps.expired)
    expired = len(ps.expired)
    extraneous = max(actual - expired - desired, 0)
    starting = sum(p.count for p in ps.in_progress if p.transition == "start")
    for r in _oldest_first(ps.expired):
        out.removals.append(BaselineAction(preset.id, "delete", r.id, _expired_reason(r, preset)))
    for r in _oldest_first(ps.running)[:extraneous]:
        out.removals.append(
            BaselineAction(
                preset.id,
                "delete",
                r.id,
                f"surplus: {actual - expired} running, {desired} desired",
            )
        )
    wanted = max(desired - (actual - expired) - starting, 0)
    hard_limited = ps.is_hard_limited and settings.failure_hard_limit > 0
    if wanted > 0 and not hard_limited:
        if backoff_until is not None:
            assert backoff_note is not None
            out.notes.append(backoff_note)
        else:
            out.creates = wanted
            out.create_reason = (
                f"missing: {actual - expired} running, {starting} starting, {desired} desired"
            )
    return out


def _cap_creates(plans: Sequence[PresetPlan], snapshot: Snapshot) -> None:
    """max_pending_creates, as in our plan: creates interleaved across presets (every preset's
    first, then every second, …) in name order, the first ``cap - pending`` of them kept."""
    cap = snapshot.settings.max_pending_creates
    if cap is None:
        return
    budget = cap - (snapshot.pending_creates or 0)
    slots = sorted(
        (
            n,
            p.preset.organization_name,
            p.preset.template_name,
            p.preset.template_version_name,
            p.preset.name,
            p.preset.id,
            i,
        )
        for i, p in enumerate(plans)
        for n in range(1, p.creates + 1)
    )
    allowed: dict[int, int] = defaultdict(int)
    for slot in slots[: max(budget, 0)]:
        allowed[slot[-1]] += 1
    for i, p in enumerate(plans):
        p.creates = allowed.get(i, 0)


def plan_presets(
    snapshot: Snapshot, now: datetime, *, spec_semantics: bool = True
) -> list[PresetPlan]:
    """One PresetPlan per preset reconciled (every preset of the list, nothing filtered)."""
    if snapshot.settings.paused:
        return []
    global_snapshot = GlobalSnapshot(snapshot)
    presets = snapshot.presets + (snapshot.unpooled_presets if spec_semantics else [])
    plans = [
        calculate_actions(
            global_snapshot.filter_by_preset(p, now),
            snapshot.settings,
            now,
            spec_semantics=spec_semantics,
        )
        for p in presets
    ]
    _cap_creates(plans, snapshot)
    return plans


def plan(snapshot: Snapshot, now: datetime, *, spec_semantics: bool = True) -> list[BaselineAction]:
    """Every action of every preset, grouped by preset in list order (cancels and deletes, then
    creates, then the backoff note)."""
    return [
        a for p in plan_presets(snapshot, now, spec_semantics=spec_semantics) for a in p.actions()
    ]


# --- the cycle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineOutcome:
    action: BaselineAction
    outcome: OutcomeKind
    workspace_id: UUID | None
    error: str | None = None


@dataclass(frozen=True)
class BaselineCycleResult:
    status: Literal["done", "lock_busy", "paused"]
    presets: int = 0  #: presets reconciled: one worker task each
    actions: tuple[BaselineAction, ...] = ()
    outcomes: tuple[BaselineOutcome, ...] = ()
    connect_seconds: float = 0.0  #: opening the lock connection
    snapshot_seconds: float = 0.0  #: BEGIN, lock, snapshot queries
    plan_seconds: float = 0.0  #: the per-preset calculation in Python
    apply_seconds: float = 0.0  #: opening the pool, the workers, closing the pool
    total_seconds: float = 0.0  #: everything, up to the lock transaction's COMMIT
    read_statements: int = 0  #: statements on the lock connection
    read_round_trips: int = 0  #: …and with BEGIN and COMMIT
    write_statements: int = 0  #: statements on the pool's connections
    write_round_trips: int = 0

    @property
    def statements(self) -> int:
        return self.read_statements + self.write_statements

    @property
    def round_trips(self) -> int:
        return self.read_round_trips + self.write_round_trips

    def count(self, outcome: OutcomeKind) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def applied(self) -> int:
        return self.count("applied")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def apply_action(
    pool: ConnectionPool[CountingConnection], action: BaselineAction
) -> BaselineOutcome:
    """One action in its own repeatable-read transaction on a borrowed connection."""
    if action.action == "backoff":
        return BaselineOutcome(action, "noted", None)
    try:
        with pool.connection() as conn, conn.transaction():
            if action.action == "create":
                row = conn.execute(
                    query("create_prebuild"), {"preset_id": action.preset_id}
                ).fetchone()
                created = row[0] if row else None
                return BaselineOutcome(action, "applied" if created else "skipped", created)
            row = conn.execute(
                query(f"{action.action}_prebuild"), {"workspace_id": action.workspace_id}
            ).fetchone()
            done = bool(row and row[0])
            return BaselineOutcome(action, "applied" if done else "skipped", action.workspace_id)
    except (psycopg.Error, PoolTimeout) as exc:
        return BaselineOutcome(action, "failed", action.workspace_id, _first_line(exc))


def reconcile_preset(
    pool: ConnectionPool[CountingConnection], preset_plan: PresetPlan
) -> list[BaselineOutcome]:
    """Coder's ReconcilePreset: the preset's actions one after the other; a failure does not stop
    the others."""
    return [apply_action(pool, a) for a in preset_plan.actions()]


def open_write_pool(
    url: str, counter: RoundTrips, *, workers: int, pool_size: int
) -> ConnectionPool[CountingConnection]:
    def configure(conn: CountingConnection) -> None:
        conn.counter = counter
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    pool: ConnectionPool[CountingConnection] = ConnectionPool(
        url,
        min_size=min(workers, pool_size),
        max_size=pool_size,
        open=False,
        connection_class=CountingConnection,
        configure=configure,
        kwargs={"application_name": WRITE_APPLICATION_NAME, "connect_timeout": CONNECT_TIMEOUT_S},
        name="prebuilds-baseline-write",
    )
    pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    return pool


def apply_plans(
    pool: ConnectionPool[CountingConnection],
    plans: Sequence[PresetPlan],
    workers: int,
    on_outcome: Callable[[BaselineOutcome], None] | None = None,
) -> list[BaselineOutcome]:
    """One task per preset (also those with nothing to do), ``workers`` at a time."""
    outcomes: list[BaselineOutcome] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="baseline-preset") as executor:
        for result in executor.map(lambda p: reconcile_preset(pool, p), plans):
            for outcome in result:
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
    return outcomes


def run_baseline_cycle(
    url: str,
    *,
    spec_semantics: bool = True,
    workers: int = 5,
    pool_size: int = 10,
    apply: bool = True,
    variant: Variant = "coder",
) -> BaselineCycleResult:
    """Lock, snapshot, plan and (unless ``apply`` is false) apply, Coder's way; with timings and
    the client-side count of statements and round trips."""
    started = time.perf_counter()
    reads, writes = RoundTrips(), RoundTrips()
    with connect_counting(url, reads) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        connected = time.perf_counter()
        with conn.transaction():
            row = conn.execute(query("take_lock"), {"key": locks.RECONCILE}).fetchone()
            if not (row and row[0]):
                status: Literal["done", "lock_busy", "paused"] = "lock_busy"
                snapshot = None
            else:
                snapshot = read_snapshot(conn, variant=variant)
                status = "paused" if snapshot.settings.paused else "done"
            snapshotted = time.perf_counter()
            plans: list[PresetPlan] = []
            if snapshot is not None and status == "done":
                plans = plan_presets(snapshot, snapshot.now, spec_semantics=spec_semantics)
            planned = time.perf_counter()
            outcomes: list[BaselineOutcome] = []
            if apply and plans:
                with open_write_pool(url, writes, workers=workers, pool_size=pool_size) as pool:
                    outcomes = apply_plans(pool, plans, workers)
            applied = time.perf_counter()
        finished = time.perf_counter()
    return BaselineCycleResult(
        status=status,
        presets=len(plans),
        actions=tuple(a for p in plans for a in p.actions()),
        outcomes=tuple(outcomes),
        connect_seconds=connected - started,
        snapshot_seconds=snapshotted - connected,
        plan_seconds=planned - snapshotted,
        apply_seconds=applied - planned,
        total_seconds=finished - started,
        read_statements=reads.statements,
        read_round_trips=reads.round_trips,
        write_statements=writes.statements,
        write_round_trips=writes.round_trips,
    )
