-- Provisioner jobs: the unit of work a provisioner picks up to run a build.
-- Written by the write functions (insert), acquire_job, heartbeat_job, complete_job and fail_job
-- (progress).

create table prebuilds.provisioner_jobs (
    id uuid primary key default gen_random_uuid(),
    initiator_id uuid not null references prebuilds.users (id),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    completed_at timestamptz,
    canceled_at timestamptz,
    error text,
    worker_id text,
    status text not null generated always as (
        case
            when completed_at is not null and canceled_at is not null then 'canceled'
            when completed_at is not null and error is not null then 'failed'
            when completed_at is not null then 'succeeded'
            when canceled_at is not null then 'canceling'
            when started_at is not null then 'running'
            else 'pending'
        end
    ) stored,
    updated_at timestamptz,
    constraint provisioner_jobs_error_needs_completion
    check (error is null or completed_at is not null)
);

-- The queue: only jobs nobody has picked up, so the index stays as small as the backlog.
create index provisioner_jobs_queue_idx
on prebuilds.provisioner_jobs (created_at) where started_at is null and canceled_at is null;

-- Failed jobs, newest first: prebuild_failures reads them without touching the rest of history.
create index provisioner_jobs_failed_idx
on prebuilds.provisioner_jobs (completed_at desc, id desc)
where error is not null and canceled_at is null;

comment on table prebuilds.provisioner_jobs is
'Build jobs run by provisioners; status is derived from the timestamps.';
comment on column prebuilds.provisioner_jobs.id is 'Primary key.';
comment on column prebuilds.provisioner_jobs.initiator_id is
'Who asked for the job; jobs of people are served before jobs of the system user.';
comment on column prebuilds.provisioner_jobs.created_at is 'When the job was queued.';
comment on column prebuilds.provisioner_jobs.started_at is 'When a provisioner picked it up.';
comment on column prebuilds.provisioner_jobs.completed_at is
'When it finished (success, failure or cancel).';
comment on column prebuilds.provisioner_jobs.canceled_at is 'When cancellation was requested.';
comment on column prebuilds.provisioner_jobs.error is
'Failure message; set only on completed jobs.';
comment on column prebuilds.provisioner_jobs.worker_id is 'The provisioner that acquired the job.';
comment on column prebuilds.provisioner_jobs.status is
'Derived: pending, running, succeeded, failed, canceling or canceled.';
comment on column prebuilds.provisioner_jobs.updated_at is
'Heartbeat: when the provisioner running the job last said it is alive (set by acquire_job and '
'heartbeat_job); null until picked up. A running job whose heartbeat is too old is hung.';
comment on index prebuilds.provisioner_jobs_queue_idx is
'Jobs waiting for a provisioner, oldest first (acquire_job).';
comment on index prebuilds.provisioner_jobs_failed_idx is
'Failed jobs, newest first (the view prebuild_failures).';
