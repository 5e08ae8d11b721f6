"""A simulated provisioner: closes the loop without real infrastructure.

It uses only the provisioner-side functions (``acquire_job``, ``complete_job``,
``report_agent_lifecycle``), exactly as a real provisioner daemon would. Start builds succeed and
their agent reports ``ready``, unless the build's preset is listed in ``failing_presets``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from .queries import query


@dataclass(frozen=True)
class AcquiredJob:
    job_id: UUID
    workspace_id: UUID
    build_number: int
    transition: str
    preset_id: UUID | None
    initiator_id: UUID


class SimulatedProvisioner:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        worker_id: str = "simulated-provisioner",
        failing_presets: Collection[UUID] = (),
    ) -> None:
        if not conn.autocommit:
            raise ValueError("the simulated provisioner needs an autocommit connection")
        self.conn = conn
        self.worker_id = worker_id
        self.failing_presets = frozenset(failing_presets)

    def acquire(self) -> AcquiredJob | None:
        with self.conn.cursor(row_factory=class_row(AcquiredJob)) as cur:
            return cur.execute(query("acquire_job"), {"worker_id": self.worker_id}).fetchone()

    def run_job(self, job: AcquiredJob) -> str:
        """Finish an acquired job; returns ``succeeded`` or ``failed``."""
        if job.transition == "start" and job.preset_id in self.failing_presets:
            self.conn.execute(
                query("complete_job"),
                {"job_id": job.job_id, "error": "simulated failure: terraform apply exited 1"},
            )
            return "failed"
        self.conn.execute(query("complete_job"), {"job_id": job.job_id, "error": None})
        if job.transition == "start":
            self.conn.execute(
                query("report_agent_lifecycle"),
                {"job_id": job.job_id, "agent_name": "main", "state": "ready"},
            )
        return "succeeded"

    def drain(self, limit: int | None = None) -> Counter[str]:
        """Run queued jobs until the queue is empty (or ``limit`` jobs ran); counts by outcome."""
        done: Counter[str] = Counter()
        while limit is None or done.total() < limit:
            job = self.acquire()
            if job is None:
                break
            done[f"{job.transition} {self.run_job(job)}"] += 1
        return done
