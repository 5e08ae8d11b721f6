"""Rows the driver reads and the results it reports, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

ActionKind = Literal["cancel", "fail_job", "delete", "create", "backoff"]
OutcomeKind = Literal["applied", "skipped", "failed", "noted"]


class MissingSettings(ValueError):
    """The settings row is gone: no cycle can run until it is restored."""


#: A row of the ``read_plan`` query: the plan's header (paused, schema_revision,
#: max_actions_per_cycle, deferred_count) repeated, then one action's columns in PlannedAction's
#: field order, or nulls when the plan is empty. Read as a plain tuple: building two frozen
#: dataclasses per action cost about half a millisecond per read at dogfood scale (issue 9).
PlanRow = tuple[Any, ...]
PLAN_HEADER_COLUMNS = 4


@dataclass(frozen=True)
class PlannedAction:
    """One row of ``prebuilds.reconciliation_actions``."""

    seq: int
    preset_id: UUID
    action: ActionKind
    workspace_id: UUID | None
    reason: str
    organization_name: str
    template_name: str
    template_version_name: str
    preset_name: str
    backoff_until: datetime | None

    @property
    def preset_path(self) -> str:
        return (
            f"{self.organization_name}/{self.template_name}@{self.template_version_name}"
            f"/{self.preset_name}"
        )


@dataclass(frozen=True)
class BlockedPreset:
    """A pool whose creates are held back (``preset_state.blocked_reason``)."""

    preset: str
    blocked_reason: str
    backoff_until: datetime | None
    failures: int

    def describe(self) -> str:
        return f"{self.preset} {self.blocked_reason}"


@dataclass(frozen=True)
class Plan:
    paused: bool
    schema_revision: str | None
    actions: tuple[PlannedAction, ...]
    #: Actions past settings.max_actions_per_cycle: counted, not read; later cycles apply them.
    deferred: int = 0
    max_actions_per_cycle: int | None = None
    #: Pools whose creates are held back; read for `plan`, and after a cycle that had no work.
    blocked: tuple[BlockedPreset, ...] = ()

    @property
    def has_work(self) -> bool:
        return any(a.action != "backoff" for a in self.actions)

    @classmethod
    def from_rows(cls, rows: list[PlanRow]) -> Plan:
        if not rows:
            raise MissingSettings(
                "prebuilds.settings has no row; restore it with "
                "`insert into prebuilds.settings default values`"
            )
        actions = tuple(
            PlannedAction(*r[PLAN_HEADER_COLUMNS:])
            for r in rows
            if r[PLAN_HEADER_COLUMNS] is not None
        )
        paused, schema_revision, max_actions_per_cycle, deferred = rows[0][:PLAN_HEADER_COLUMNS]
        return cls(
            paused,
            schema_revision,
            actions,
            deferred=deferred or 0,
            max_actions_per_cycle=max_actions_per_cycle,
        )

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.action == kind)


@dataclass(frozen=True)
class Outcome:
    action: PlannedAction
    outcome: OutcomeKind
    workspace_id: UUID | None
    error: str | None = None
    #: The action failed waiting for a row lock (lock_timeout).
    lock_timeout: bool = False
    #: The action was cancelled: past the statement timeout (the server's, or the driver's
    #: deadline for a pipelined action).
    statement_timeout: bool = False


@dataclass(frozen=True)
class CycleResult:
    """What one reconciliation cycle did."""

    status: Literal["lock_busy", "paused", "done", "dry_run"]
    plan: Plan | None = None
    run_id: int | None = None
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)
    interrupted: bool = False
    plan_seconds: float = 0.0
    apply_seconds: float = 0.0
    #: Why the run stopped applying because its lock was lost (plan connection gone), or None.
    lock_lost: str | None = None

    def tally(self, outcome: OutcomeKind, action: ActionKind | None = None) -> int:
        return sum(
            1
            for o in self.outcomes
            if o.outcome == outcome and (action is None or o.action.action == action)
        )

    @property
    def failed(self) -> int:
        return self.tally("failed")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.lock_lost else 0
