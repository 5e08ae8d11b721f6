-- Statements of the benchmark harness (bench/harness.py), by name.

-- name: add_creates
-- A new active template whose presets want %(creates)s prebuilds in all, ten per preset. The
-- template and its version point at each other; both foreign keys are checked at the end of the
-- statement, when both rows exist.
with
ids as (
    select
        gen_random_uuid() as template_id,
        gen_random_uuid() as version_id,
        (select o.id from prebuilds.organizations as o order by o.name limit 1) as organization_id
),

tpl as (
    insert into prebuilds.templates (id, organization_id, name, active_version_id)
    select ids.template_id, ids.organization_id, 'bench-apply', ids.version_id
    from ids
    returning id
),

ver as (
    insert into prebuilds.template_versions (id, template_id, name)
    select ids.version_id, ids.template_id, 'v1'
    from ids
    returning id
)

insert into prebuilds.presets (template_version_id, name, desired_instances)
select
    ids.version_id,
    'p' || g.n,
    least(10, %(creates)s - (g.n - 1) * 10)
from ids
cross join generate_series(1, ceil(%(creates)s / 10.0)::int) as g (n);

-- name: bench_presets
select p.id
from prebuilds.presets as p
inner join prebuilds.template_versions as v on p.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
where t.name = 'bench-apply'
order by p.name;

-- name: physical_run
-- The run row the physical reference's action log rows belong to (written before the clock).
insert into prebuilds.reconciliation_runs (hostname, actions_planned)
values ('bench-physical', %(creates)s)
returning id;

-- name: writer_session
-- The reference's connections (and apply_pieces' create_prebuild alone) run with the search_path
-- that our functions set for every write.
-- Under any other, PostgreSQL re-planned six of the foreign-key checks of each create (measured:
-- pg_stat_statements with track_planning, 240 plans in 600 checks of 40 creates; none with ''):
-- a cached plan is rebuilt when the search_path differs from the one it was made under, and
-- track_latest_build, the trigger of the build insert, runs its update with search_path ''. A
-- ceiling should not pay for that.
set search_path = '';

-- name: physical_create
-- The rows an applied create writes, in one statement: the workspace, its pending job, build 1
-- (whose trigger points the workspace at it), the preset's counter (in the backend's shard, as
-- count_prebuild_event does) and the action's log row. No lock, no re-check, no licence check.
with
preset as (
    select p.id, p.template_version_id, t.id as template_id, t.organization_id
    from prebuilds.presets as p
    inner join prebuilds.template_versions as v on p.template_version_id = v.id
    inner join prebuilds.templates as t on v.template_id = t.id
    where p.id = %(preset_id)s
),

ws as (
    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
    select
        preset.organization_id,
        preset.template_id,
        prebuilds.system_user_id(),
        'prebuild-' || left(replace(gen_random_uuid()::text, '-', ''), 12)
    from preset
    returning id
),

job as (
    insert into prebuilds.provisioner_jobs (initiator_id)
    values (prebuilds.system_user_id())
    returning id
),

build as (
    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition, initiator_id,
        job_id
    )
    select
        ws.id, 1, preset.template_version_id, preset.id, 'start', prebuilds.system_user_id(),
        job.id
    from ws, job, preset
    returning id
),

counted as (
    insert into prebuilds.preset_counters as c (preset_id, shard, created)
    select preset.id, pg_backend_pid() %% 16, 1 from preset
    on conflict (preset_id, shard) do update set created = c.created + 1
)

insert into prebuilds.reconciliation_action_log (
    run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
)
select %(run_id)s, %(seq)s, preset.id, 'create', ws.id, 'bench', 'applied', clock_timestamp()
from preset, ws;

-- name: physical_create_unlogged
-- The reference before it wrote the log row (kept to compare, python -m bench.apply_pieces):
-- the workspace, job, build and counter (shard 0) only.
with
preset as (
    select p.id, p.template_version_id, t.id as template_id, t.organization_id
    from prebuilds.presets as p
    inner join prebuilds.template_versions as v on p.template_version_id = v.id
    inner join prebuilds.templates as t on v.template_id = t.id
    where p.id = %(preset_id)s
),

ws as (
    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
    select
        preset.organization_id,
        preset.template_id,
        prebuilds.system_user_id(),
        'prebuild-' || left(replace(gen_random_uuid()::text, '-', ''), 12)
    from preset
    returning id
),

job as (
    insert into prebuilds.provisioner_jobs (initiator_id)
    values (prebuilds.system_user_id())
    returning id
),

build as (
    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition, initiator_id,
        job_id
    )
    select
        ws.id, 1, preset.template_version_id, preset.id, 'start', prebuilds.system_user_id(),
        job.id
    from ws, job, preset
    returning id
)

insert into prebuilds.preset_counters as c (preset_id, created)
select preset.id, 1 from preset
on conflict (preset_id, shard) do update set created = c.created + 1;
