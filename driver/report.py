"""Terminal output: plans, outcomes and state tables as aligned text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import Outcome, Plan, PlannedAction


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
    blocked = format_blocked(plan)
    if not plan.actions:
        return "nothing to do" + (f"\n\n{blocked}" if blocked else "")
    text = table(
        ["seq", "action", "preset", "workspace", "reason"],
        [[a.seq, a.action, a.preset_path, a.workspace_id, a.reason] for a in plan.actions],
    )
    if plan.deferred:
        text += (
            f"\n{plan.deferred} more actions wait for later cycles: a cycle applies at most "
            f"{plan.max_actions_per_cycle} (prebuilds.settings.max_actions_per_cycle)"
        )
    if blocked:
        text += f"\n\n{blocked}"
    return text


def format_blocked(plan: Plan) -> str:
    """The pools whose creates are held back, and why (empty when none)."""
    if not plan.blocked:
        return ""
    return "pools held back (no creates until this clears):\n" + table(
        ["preset", "blocked", "failures", "until"],
        [[b.preset, b.blocked_reason, b.failures, b.backoff_until] for b in plan.blocked],
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


STATUS_COLUMNS = (
    ("organization_name", "ORG"),
    ("template_name", "TEMPLATE"),
    ("template_version_name", "VERSION"),
    ("preset_name", "PRESET"),
    ("blocked_reason", "BLOCKED"),
    ("is_active", "ACTIVE"),
    ("desired", "DESIRED"),
    ("demand", "DEMAND"),
    ("actual", "RUNNING"),
    ("eligible", "ELIGIBLE"),
    ("expired", "EXPIRED"),
    ("extraneous", "SURPLUS"),
    ("starting", "STARTING"),
    ("stopping", "STOPPING"),
    ("deleting", "DELETING"),
    ("pending_cancelable", "TO_CANCEL"),
    ("failures", "FAILURES"),
    ("backoff_until", "BACKOFF_UNTIL"),
    ("claims_last_hour", "CLAIMS_1H"),
    ("misses_last_hour", "MISSES_1H"),
    ("hit_rate_last_hour", "HIT_RATE_1H"),
    ("retrying_deletes", "RETRYING"),
    ("quarantined", "QUARANTINED"),
    ("schedule_note", "SCHEDULE"),
    ("desired_reason", "WHY_DESIRED"),
    ("last_error", "LAST_ERROR"),
)

_RED, _YELLOW, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[0m"


def _status_cell(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    if column == "hit_rate_last_hour" and value is not None:
        return f"{value:g}%"
    return value


def format_status(rows: Sequence[dict[str, Any]], *, color: bool = False) -> str:
    """preset_state as a table; BLOCKED comes right after the names so it is seen first."""
    if not rows:
        return "no preset under consideration (no active pools, nothing to clean up)"
    text = table(
        [h for _, h in STATUS_COLUMNS],
        [[_status_cell(r, c) for c, _ in STATUS_COLUMNS] for r in rows],
    )
    if not color:
        return text
    lines = text.splitlines()
    for i, row in enumerate(rows, start=2):
        if row["blocked_reason"] in ("hard_limited", "paused"):
            lines[i] = _RED + lines[i] + _RESET
        elif row["blocked_reason"]:
            lines[i] = _YELLOW + lines[i] + _RESET
    return "\n".join(lines)


def format_history(runs: Sequence[dict[str, Any]], failures: Sequence[dict[str, Any]]) -> str:
    if not runs:
        return "no recorded cycles"
    parts = [
        table(
            [
                "RUN",
                "STARTED",
                "STATUS",
                "PLANNED",
                "APPLIED",
                "SKIPPED",
                "FAILED",
                "PLAN_MS",
                "ERROR",
            ],
            [
                [
                    r["id"],
                    r["started_at"],
                    r["status"],
                    r["actions_planned"],
                    r["actions_applied"],
                    r["actions_skipped"],
                    r["actions_failed"],
                    None if r["plan_ms"] is None else round(r["plan_ms"]),
                    r["error"],
                ]
                for r in runs
            ],
        )
    ]
    if failures:
        parts.append("failed actions:")
        parts.append(
            table(
                ["RUN", "SEQ", "ACTION", "PRESET", "WORKSPACE", "ERROR", "REASON"],
                [
                    [
                        f["run_id"],
                        f["seq"],
                        f["action"],
                        f["preset"],
                        f["workspace_id"],
                        f["error"],
                        f["reason"],
                    ]
                    for f in failures
                ],
            )
        )
    else:
        parts.append("no failed actions in these cycles")
    return "\n\n".join(parts)


def format_failures(rows: Sequence[dict[str, Any]]) -> str:
    """prebuild_failures as a table, newest first."""
    if not rows:
        return "no failed prebuild builds"
    return table(
        ["FAILED_AT", "PRESET", "WORKSPACE", "BUILD", "TRANSITION", "ERROR"],
        [
            [
                r["failed_at"],
                f"{r['organization_name']}/{r['template_name']}@{r['template_version_name']}"
                f"/{r['preset_name'] or ''}",
                r["workspace_name"] + (" (deleted)" if r["workspace_deleted"] else ""),
                r["build_number"],
                r["transition"],
                r["error"],
            ]
            for r in rows
        ],
    )


def format_cleanup(rows: Sequence[dict[str, Any]], *, dry_run: bool) -> str:
    """What cleanup did (or, in a dry run, would do), one prebuild per row."""
    if not rows:
        return "no prebuild to clean up"
    text = table(
        ["OUTCOME", "PRESET", "WORKSPACE", "STATE", "FINISHED_AT", "ERROR"],
        [
            [
                r["outcome"],
                f"{r['organization_name']}/{r['template_name']}@{r['template_version_name']}"
                f"/{r['preset_name']}",
                r["workspace_name"],
                r["state"],
                r["finished_at"],
                r["error"],
            ]
            for r in rows
        ],
    )
    if dry_run:
        text += f"\n\ndry run: {len(rows)} prebuild(s) would be deleted; nothing changed"
    return text
