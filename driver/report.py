"""Terminal output: plans, outcomes and state tables as aligned text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from driver.model import Outcome, Plan, PlannedAction


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    return str(value)


def _is_number_column(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(
            isinstance(row[i], int) and not isinstance(row[i], bool)
            for row in rows
            if row[i] is not None
        )
        and any(row[i] is not None for row in rows)
        for i in range(len(headers))
    ]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def describe(action: PlannedAction) -> str:
    target = f" {action.workspace_id}" if action.workspace_id else ""
    return f"{action.action:<7} {action.preset_path}{target}: {action.reason}"


def format_plan(plan: Plan) -> str:
    if plan.paused:
        return "reconciliation is paused: the plan is empty"
    if not plan.actions:
        return "nothing to do"
    return table(
        ["seq", "action", "preset", "workspace", "reason"],
        [[a.seq, a.action, a.preset_path, a.workspace_id, a.reason] for a in plan.actions],
    )


def format_outcome(outcome: Outcome) -> str:
    a = outcome.action
    target = outcome.workspace_id or a.workspace_id
    text = f"#{a.seq} {outcome.outcome:<7} {a.action:<7} {a.preset_path}"
    if target:
        text += f" {target}"
    text += f": {a.reason}"
    if outcome.error:
        text += f" -- error: {outcome.error}"
    return text


STATE_COLUMNS = (
    "organization_name",
    "template_name",
    "template_version_name",
    "preset_name",
    "is_active",
    "desired",
    "actual",
    "eligible",
    "expired",
    "starting",
    "deleting",
    "failures",
    "hard_limited",
    "blocked_reason",
)
STATE_HEADERS = (
    "org",
    "template",
    "version",
    "preset",
    "active",
    "desired",
    "actual",
    "eligible",
    "expired",
    "starting",
    "deleting",
    "failures",
    "hard_limited",
    "blocked",
)


def format_state_table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    index = [names.index(c) for c in STATE_COLUMNS]
    return table(STATE_HEADERS, [[row[i] for i in index] for row in rows])
