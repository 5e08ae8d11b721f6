-- Provisioner side: "I am still running this job" (SPEC 5.2). Sets provisioner_jobs.updated_at,
-- which tells a slow but live job from a hung one. Called by `prebuilds provision` every
-- --heartbeat seconds while a job's command runs.

create function prebuilds.heartbeat_job(p_job_id uuid)
returns bool
language sql
volatile
begin atomic
    with beat as (
        update prebuilds.provisioner_jobs as j
        set updated_at = now()
        where
            j.id = p_job_id
            and j.started_at is not null
            and j.completed_at is null
            and j.canceled_at is null
        returning j.id
    )

    select exists(select from beat);
end;

comment on function prebuilds.heartbeat_job(uuid) is
'Records a heartbeat of a running job and returns true; false (and nothing written) when the job '
'is not running any more: completed (perhaps failed as hung), canceled or canceling, never '
'started, or unknown. On false the provisioner stops the job''s command.';
