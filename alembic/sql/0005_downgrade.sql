-- Downgrade of revision 0005 to 0004. Written by hand above the marker; below it, the 0004 text
-- of the objects 0005 re-created.

-- provisioner: heartbeats and job details
drop function prebuilds.heartbeat_job(uuid);
drop function prebuilds.acquire_job(text);
alter table prebuilds.presets drop column parameters;
alter table prebuilds.provisioner_jobs drop column updated_at;
-- end provisioner: heartbeats and job details

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/acquire_job.sql
-- Provisioner side: take the next queued job (SPEC 4.5). Jobs initiated by people come before
-- the system user's prebuild jobs; `skip locked` lets many provisioners poll at once and makes a
-- job being canceled invisible. Used by the simulated provisioner and by tests.

create function prebuilds.acquire_job(p_worker_id text)
returns table (
    job_id uuid,
    workspace_id uuid,
    build_number int,
    transition text,
    preset_id uuid,
    initiator_id uuid
)
language sql
volatile
begin atomic
    with next_job as (
        select j.id
        from prebuilds.provisioner_jobs as j
        where j.started_at is null and j.canceled_at is null and j.completed_at is null
        order by j.initiator_id = prebuilds.system_user_id(), j.created_at, j.id
        limit 1
        for update skip locked
    ),

    taken as (
        update prebuilds.provisioner_jobs as j
        set started_at = now(), worker_id = p_worker_id
        from next_job
        where j.id = next_job.id
        returning j.id, j.initiator_id
    )

    select
        taken.id,
        b.workspace_id,
        b.build_number,
        b.transition,
        b.preset_id,
        taken.initiator_id
    from taken
    inner join prebuilds.workspace_builds as b on taken.id = b.job_id;
end;

comment on function prebuilds.acquire_job(text) is
'Marks the next queued job (people''s first, then oldest) as started by p_worker_id and returns '
'it; no row when the queue is empty.';
