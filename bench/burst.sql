-- Statements of the burst simulation (bench/burst.py): the real plan at a virtual instant, and
-- the rows the write functions would write, with the simulation's timestamps instead of now().

-- name: publish
select prebuilds.publish_template_version(
    'sim', 'web', 'v1', jsonb_build_array(%(preset)s::jsonb)
) as version_id;

-- name: preset_id
select p.id from prebuilds.presets as p where p.name = 'pool';

-- name: settings
update prebuilds.settings
set demand_window = %(demand_window)s, default_build_time = %(build_time)s;

-- name: claimant
select prebuilds.register_user('someone') as user_id;

-- name: plan
-- The plan at the virtual instant: what a cycle would apply.
select a.action, a.workspace_id
from prebuilds.reconciliation_actions_at(%(now)s) as a
where a.action in ('create', 'delete', 'cancel') and not a.deferred
order by a.seq;

-- name: create
-- What create_prebuild writes (workspace, running start job, build 1), at the virtual instant.
with
preset as (
    select p.id, p.template_version_id, t.id as template_id, t.organization_id
    from prebuilds.presets as p
    inner join prebuilds.template_versions as v on p.template_version_id = v.id
    inner join prebuilds.templates as t on v.template_id = t.id
    where p.id = %(preset_id)s
),

ws as (
    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name, created_at)
    select
        preset.organization_id,
        preset.template_id,
        prebuilds.system_user_id(),
        'prebuild-' || left(replace(gen_random_uuid()::text, '-', ''), 12),
        %(now)s
    from preset
    returning id
),

job as (
    insert into prebuilds.provisioner_jobs (initiator_id, created_at, started_at)
    values (prebuilds.system_user_id(), %(now)s, %(now)s)
    returning id
)

insert into prebuilds.workspace_builds (
    workspace_id, build_number, template_version_id, preset_id, transition, initiator_id,
    job_id, created_at
)
select
    ws.id, 1, preset.template_version_id, preset.id, 'start', prebuilds.system_user_id(),
    job.id, %(now)s
from ws, job, preset
returning workspace_id, job_id;

-- name: complete
-- The build finished: its job succeeded and its agent is ready.
with done as (
    update prebuilds.provisioner_jobs
    set completed_at = %(now)s
    where id = %(job_id)s
    returning id
)

insert into prebuilds.workspace_agents (job_id, lifecycle_state, created_at)
select done.id, 'ready', %(now)s from done;

-- name: delete
-- A surplus prebuild deleted (at once: deleting takes no pool slot in this simulation).
update prebuilds.workspaces set deleted = true where id = %(workspace_id)s;

-- name: claim
-- A person took the prebuild: it leaves the pool.
update prebuilds.workspaces set owner_id = %(user_id)s where id = %(workspace_id)s;

-- name: count_claim
-- What claim_prebuild counts (SPEC 6.2), in the virtual minute.
insert into prebuilds.claim_stats as c (preset_id, bucket, hits, misses)
values (%(preset_id)s, date_trunc('minute', %(now)s::timestamptz), %(hits)s, %(misses)s)
on conflict (preset_id, bucket, shard) do update
set hits = c.hits + excluded.hits, misses = c.misses + excluded.misses;
