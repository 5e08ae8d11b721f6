-- Provisioner side: take the next queued job (SPEC 4.5). Jobs initiated by people come before
-- the system user's prebuild jobs; `skip locked` lets many provisioners poll at once and makes a
-- job being canceled invisible. Returns everything a provisioner needs to build (names, the
-- preset's parameters), so a job costs one round trip to start. Called by `prebuilds provision`
-- (driver/provision.py), the simulated provisioner and tests.

create function prebuilds.acquire_job(p_worker_id text)
returns table (
    job_id uuid,
    workspace_id uuid,
    build_number int,
    transition text,
    preset_id uuid,
    initiator_id uuid,
    workspace_name text,
    owner_name text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    parameters jsonb
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
        set started_at = now(), updated_at = now(), worker_id = p_worker_id
        from next_job
        where j.id = next_job.id
        returning j.id, j.initiator_id
    )

    select
        taken.id as job_id,
        b.workspace_id,
        b.build_number,
        b.transition,
        b.preset_id,
        taken.initiator_id,
        w.name as workspace_name,
        u.username as owner_name,
        o.name as organization_name,
        t.name as template_name,
        v.name as template_version_name,
        coalesce(p.name, '') as preset_name,
        coalesce(p.parameters, '{}') as parameters
    from taken
    inner join prebuilds.workspace_builds as b on taken.id = b.job_id
    inner join prebuilds.workspaces as w on b.workspace_id = w.id
    inner join prebuilds.users as u on w.owner_id = u.id
    inner join prebuilds.organizations as o on w.organization_id = o.id
    inner join prebuilds.templates as t on w.template_id = t.id
    inner join prebuilds.template_versions as v on b.template_version_id = v.id
    -- A build without a preset (a person's stop) builds the preset its workspace counts in.
    left join prebuilds.presets as p on coalesce(b.preset_id, w.current_preset_id) = p.id;
end;

comment on function prebuilds.acquire_job(text) is
'Marks the next queued job (people''s first, then oldest) as started by p_worker_id, with a first '
'heartbeat, and returns it with what to build: workspace, owner, organization, template, '
'version and preset names and the preset''s parameters (an empty name and {} without a preset); '
'no row when the queue is empty.';
