"""Prometheus metrics: per-preset pool state, lifetime prebuild counters, and the cycles.

Pool state and the lifetime counters come from the database (``preset_state`` and
``preset_counters``), so they survive restarts of the driver and agree between replicas. They are
read after each cycle on the cycle's plan connection (no extra connection), and
served from that snapshot: a scrape never opens a connection. In loop mode the registry is served
over HTTP (``--metrics-port``); in cron mode it is written atomically to a file for
node_exporter's textfile collector (``--metrics-file``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import class_row

from .model import CycleResult
from .queries import query

PRESET_LABELS = ["organization", "template", "preset"]
BLOCK_REASONS = ("paused", "hard_limited", "backoff", "capped")


@dataclass(frozen=True)
class PresetMetricsRow:
    organization_name: str
    template_name: str
    preset_name: str
    desired: int
    running: int
    eligible: int
    expired: int
    starting: int
    retrying_deletes: int
    quarantined: int
    blocked_reason: str | None


@dataclass(frozen=True)
class PresetClaimsRow:
    organization_name: str
    template_name: str
    preset_name: str
    hits: int
    misses: int


@dataclass
class Snapshot:
    presets: list[PresetMetricsRow] = field(default_factory=list)
    created: int = 0
    failed: int = 0
    claimed: int = 0
    hung_failed: int = 0
    delete_retried: int = 0
    #: Unix time the last cycle without failures finished, by any driver (None: never).
    last_success: float | None = None
    claims: list[PresetClaimsRow] = field(default_factory=list)


class DatabaseCollector(Collector):
    """Exposes the last snapshot read from the database; nothing until the first read, so that a
    scrape before it (or while the database is away at start) never sees the lifetime counters
    drop to 0, which Prometheus would take for a counter reset."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        gauges = {
            "desired": "Prebuilds the pool should hold now (schedule or desired_instances).",
            "running": "Running prebuilds of the preset, all versions, expired ones included.",
            "eligible": "Prebuilds ready to be claimed now.",
            "expired": "Running prebuilds past their TTL or invalidated, waiting for deletion.",
            "starting": "Prebuild start builds pending or running.",
            "retrying_deletes": "Prebuilds whose delete failed, waiting for a retry (SPEC 5.1).",
            "quarantined": "Prebuilds whose delete failed past settings.delete_retry_limit: "
            "no more retries until an operator cleans them up (SPEC 5.1).",
        }
        # Presets of several versions of one template share a name; their pools add up.
        totals: dict[tuple[str, str, str], dict[str, int]] = {}
        blocked: dict[tuple[str, str, str], str | None] = {}
        for row in snap.presets:
            key = (row.organization_name, row.template_name, row.preset_name)
            acc = totals.setdefault(key, dict.fromkeys(gauges, 0))
            for name in gauges:
                acc[name] += getattr(row, name)
            blocked[key] = blocked.get(key) or row.blocked_reason
        for name, help_text in gauges.items():
            family = GaugeMetricFamily(f"prebuilds_preset_{name}", help_text, labels=PRESET_LABELS)
            for key, acc in totals.items():
                family.add_metric(list(key), acc[name])
            yield family
        family = GaugeMetricFamily(
            "prebuilds_preset_blocked",
            "1 when the pool's creates are held back, by reason (paused, hard_limited, backoff, "
            "capped); 0 otherwise.",
            labels=[*PRESET_LABELS, "reason"],
        )
        for key, reason in blocked.items():
            for candidate in BLOCK_REASONS:
                family.add_metric([*key, candidate], 1 if reason == candidate else 0)
        yield family
        for name, value, help_text in (
            ("created", snap.created, "Prebuilds created, over the deployment's lifetime."),
            ("failed", snap.failed, "Prebuild start builds that failed, lifetime."),
            ("claimed", snap.claimed, "Prebuilds claimed by people, lifetime."),
            (
                "hung_jobs_failed",
                snap.hung_failed,
                "Prebuild jobs failed by the reconciler because they hung (no heartbeat, or "
                "never picked up), lifetime.",
            ),
            (
                "delete_retries",
                snap.delete_retried,
                "Deletes of prebuilds queued again after a failed delete, lifetime.",
            ),
        ):
            yield CounterMetricFamily(f"prebuilds_{name}", help_text, value=value)
        claims_family = CounterMetricFamily(
            "prebuilds_preset_claims",
            "Calls of claim_prebuild per preset over the deployment's lifetime, by result: hit "
            "(a prebuild was handed over) or miss (none was eligible).",
            labels=[*PRESET_LABELS, "result"],
        )
        for claims in snap.claims:
            names = [claims.organization_name, claims.template_name, claims.preset_name]
            claims_family.add_metric([*names, "hit"], claims.hits)
            claims_family.add_metric([*names, "miss"], claims.misses)
        yield claims_family
        yield GaugeMetricFamily(
            "prebuilds_reconcile_last_success_timestamp_seconds",
            "Unix time at which the last cycle without failures finished, whichever driver ran "
            "it (from prebuilds.reconciliation_runs); 0 when none ever did.",
            value=snap.last_success or 0,
        )


class Metrics:
    """Every metric the driver exports, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.database = DatabaseCollector()
        self.registry.register(self.database)
        self.duration = Histogram(
            "prebuilds_reconcile_duration_seconds",
            "Wall time of a reconciliation cycle that held the lock.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.actions = Counter(
            "prebuilds_reconcile_actions",
            "Actions applied by this driver process, by kind and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.cycles = Counter(
            "prebuilds_reconcile_cycles",
            "Cycles run by this driver process, by result (done, paused, lock_busy, error).",
            ["result"],
            registry=self.registry,
        )
        self.wakeups = Counter(
            "prebuilds_reconcile_wakeups",
            "Times prebuilds run woke for a cycle, by reason (notification, next_change_at, "
            "interval).",
            ["reason"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "prebuilds_reconcile_notifications",
            "Notifications on prebuilds_reconcile received by prebuilds run (a burst wakes it "
            "once).",
            registry=self.registry,
        )
        self.lock_busy = Gauge(
            "prebuilds_reconcile_lock_busy",
            "1 when the last cycle found another reconciler holding the lock.",
            registry=self.registry,
        )
        self.paused = Gauge(
            "prebuilds_reconcile_paused",
            "1 when reconciliation is paused (prebuilds.settings.reconciliation_paused).",
            registry=self.registry,
        )

    def observe(self, result: CycleResult, seconds: float) -> None:
        self.cycles.labels(result.status).inc()
        self.lock_busy.set(1 if result.status == "lock_busy" else 0)
        if result.status == "lock_busy":
            return
        self.paused.set(1 if result.status == "paused" else 0)
        self.duration.observe(seconds)
        for outcome in result.outcomes:
            self.actions.labels(outcome.action.action, outcome.outcome).inc()

    def observe_wakeup(self, reason: str, notifications: int) -> None:
        self.wakeups.labels(reason).inc()
        self.notifications.inc(notifications)

    def observe_error(self) -> None:
        self.cycles.labels("error").inc()

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        """Read pool state, lifetime counters, claims per preset and the last successful cycle
        (one transaction, three statements)."""
        with conn.transaction(), conn.cursor(row_factory=class_row(PresetMetricsRow)) as cur:
            presets = cur.execute(query("metrics_presets")).fetchall()
            counters = conn.execute(query("metrics_counters")).fetchone()
            with conn.cursor(row_factory=class_row(PresetClaimsRow)) as claims_cur:
                claims = claims_cur.execute(query("metrics_claims")).fetchall()
        assert counters is not None
        created, failed, claimed, hung_failed, delete_retried, last_success = counters
        self.database.snapshot = Snapshot(
            presets, created, failed, claimed, hung_failed, delete_retried, last_success, claims
        )

    def write_textfile(self, path: str) -> None:
        """Atomically replace ``path`` (a temporary file renamed over it)."""
        write_to_textfile(path, self.registry)
