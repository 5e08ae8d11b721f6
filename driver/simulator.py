"""A simulated provisioner: closes the loop without real infrastructure.

It uses only the provisioner-side functions (``acquire_job``, ``heartbeat_job``,
``complete_job``, ``report_agent_lifecycle``), exactly as a real provisioner daemon would: it
heartbeats each job it runs before finishing it. Start builds succeed and their agent reports
``ready``, unless the build's preset is listed in ``failing_presets``. For the self-healing
scenarios (SPEC 5) it can also fail each workspace's first ``failing_deletes`` delete builds, and
abandon jobs of the presets in ``abandon`` as a provisioner that died mid-build would (the job
stays running, with no more heartbeats, until the reconciler fails it as hung).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from .queries import query

SIMULATED_START_ERROR = "simulated failure: terraform apply exited 1"
SIMULATED_DELETE_ERROR = "simulated failure: terraform destroy exited 1"


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
        failing_deletes: int = 0,
        abandon: Mapping[UUID, int] | None = None,
    ) -> None:
        if not conn.autocommit:
            raise ValueError("the simulated provisioner needs an autocommit connection")
        self.conn = conn
        self.worker_id = worker_id
        #: Presets whose start builds fail; change it to make them recover.
        self.failing_presets: set[UUID] = set(failing_presets)
        #: Each workspace's first this-many delete builds fail.
        self.failing_deletes = failing_deletes
        #: How many more jobs of each preset to abandon mid-build (never completed).
        self.abandon: Counter[UUID] = Counter(abandon or {})
        self.delete_attempts: Counter[UUID] = Counter()

    def acquire(self) -> AcquiredJob | None:
        with self.conn.cursor(row_factory=class_row(AcquiredJob)) as cur:
            return cur.execute(query("acquire_job"), {"worker_id": self.worker_id}).fetchone()

    def heartbeat(self, job: AcquiredJob) -> bool:
        """Tell the database the job is alive; False once it is not ours any more."""
        row = self.conn.execute(query("heartbeat_job"), {"job_id": job.job_id}).fetchone()
        return bool(row and row[0])

    def run_job(self, job: AcquiredJob) -> str:
        """Finish an acquired job; returns ``succeeded``, ``failed``, ``hung`` (abandoned) or
        ``lost`` (failed as hung by the reconciler before it finished)."""
        if job.preset_id is not None and self.abandon[job.preset_id] > 0:
            self.abandon[job.preset_id] -= 1
            return "hung"
        if not self.heartbeat(job):
            return "lost"
        error: str | None = None
        if job.transition == "start" and job.preset_id in self.failing_presets:
            error = SIMULATED_START_ERROR
        elif job.transition == "delete":
            self.delete_attempts[job.workspace_id] += 1
            if self.delete_attempts[job.workspace_id] <= self.failing_deletes:
                error = SIMULATED_DELETE_ERROR
        if error is not None:
            self.conn.execute(query("complete_job"), {"job_id": job.job_id, "error": error})
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
