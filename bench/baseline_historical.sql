-- HISTORICAL baseline (`python -m bench --baseline historical`; never a headline number): the
-- snapshot queries of bench/baseline.sql with Coder's `workspace_latest_builds` view as it was in
-- migration 000314 (a DISTINCT ON over ALL builds joined with their jobs), which Coder replaced in
-- May 2025 (migration 000323, PR #17789), months before the seed issue (coder/coder#20606,
-- 2025-10-31). It answers "how slow was the first design", not "how much faster than Coder".
-- The faithful baseline is bench/baseline.sql.
--
-- The per-preset baseline's SQL (bench/baseline.py): Coder's prebuild reconciler queries
-- (coderd/database/queries/prebuilds.sql, presets.sql, the workspace_latest_builds view of
-- migration 000314), ported to the `prebuilds` schema with Coder's query shapes. Not used by the
-- product. `-- name: x` starts a query; parameters are psycopg named placeholders.
--
-- `workspace_latest_builds` is Coder's view (its columns, its DISTINCT ON over ALL builds joined
-- with their jobs), inlined as a CTE in every query that reads it since no view may be added to
-- db/. It deliberately ignores our maintained workspaces.latest_build_id / current_preset_id
-- pointers, which are the database-first design's optimisation. (A later Coder migration rewrote
-- the view as a LATERAL lookup per non-deleted workspace; the baseline is the design of the seed
-- issue.) The system user id is Coder's literal.

-- name: take_lock
-- Coder's TryAcquireLock(LockIDReconcilePrebuilds): transaction-scoped, so held until the lock
-- transaction commits after the last write.
select pg_try_advisory_xact_lock(%(key)s) as acquired;

-- name: get_prebuilds_settings
-- Coder's GetPrebuildsSettings (a JSON site config there, a one-row table here), plus the
-- transaction's now(): the snapshot's clock, so that a plan can be compared with ours.
select
    s.reconciliation_paused as paused,
    s.backoff_interval,
    s.backoff_lookback,
    s.failure_hard_limit,
    s.max_pending_creates,
    now() as now
from prebuilds.settings as s;

-- name: get_template_presets_with_prebuilds
-- Coder's GetTemplatePresetsWithPrebuilds(template_id => null): EVERY preset with a pool, of
-- every version of every template (deleted ones included). Ours also has pools made only of
-- schedules (desired_instances null), which count as a pool (SPEC 2).
select
    t.id as template_id,
    t.name as template_name,
    o.id as organization_id,
    o.name as organization_name,
    tv.id as template_version_id,
    tv.name as template_version_name,
    coalesce(tv.id = t.active_version_id, false) as using_active_version,
    p.id,
    p.name,
    p.desired_instances,
    p.scheduling_timezone,
    p.ttl_seconds as ttl,
    p.last_invalidated_at,
    t.deleted,
    t.deprecated
from prebuilds.templates as t
inner join prebuilds.template_versions as tv on t.id = tv.template_id
inner join prebuilds.presets as p on tv.id = p.template_version_id
inner join prebuilds.organizations as o on t.organization_id = o.id
where
    p.desired_instances is not null
    or exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id);

-- name: get_presets_by_ids
-- Not a Coder query: the presets without a pool that still hold running prebuilds or queued
-- initial builds (SPEC 4.1: a removed pool means desired 0). Coder cannot see them; the baseline
-- reads them only when the snapshot references such a preset, and plans them only with
-- spec_semantics.
select
    t.id as template_id,
    t.name as template_name,
    o.id as organization_id,
    o.name as organization_name,
    tv.id as template_version_id,
    tv.name as template_version_name,
    coalesce(tv.id = t.active_version_id, false) as using_active_version,
    p.id,
    p.name,
    p.desired_instances,
    p.scheduling_timezone,
    p.ttl_seconds as ttl,
    p.last_invalidated_at,
    t.deleted,
    t.deprecated
from prebuilds.presets as p
inner join prebuilds.template_versions as tv on p.template_version_id = tv.id
inner join prebuilds.templates as t on tv.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
where p.id = any(%(ids)s);

-- name: get_active_preset_prebuild_schedules
-- Coder's GetActivePresetPrebuildSchedules: schedules of presets on the active version of a
-- template that is neither deleted nor deprecated.
select
    ps.id,
    ps.preset_id,
    ps.cron_expression,
    ps.desired_instances
from prebuilds.preset_schedules as ps
inner join prebuilds.presets as p on ps.preset_id = p.id
inner join prebuilds.template_versions as tv on p.template_version_id = tv.id
inner join prebuilds.templates as t on tv.template_id = t.id
where
    tv.id = t.active_version_id
    and not t.deleted
    and not t.deprecated;

-- name: get_running_prebuilt_workspaces
-- Coder's GetRunningPrebuiltWorkspaces: prebuilds whose latest build is a succeeded start, the
-- preset of their latest build that names one (SPEC 4.2; Coder also requires that build to be a
-- start), and whether all their agents are ready.
with
workspace_latest_builds as (
    select distinct on (wb.workspace_id)
        wb.id,
        wb.workspace_id,
        wb.template_version_id,
        wb.job_id,
        wb.preset_id,
        wb.transition,
        wb.created_at,
        pj.status as job_status
    from prebuilds.workspace_builds as wb
    inner join prebuilds.provisioner_jobs as pj on wb.job_id = pj.id
    order by wb.workspace_id asc, wb.build_number desc
),

latest_prebuilds as (
    select
        w.id,
        w.name,
        w.template_id,
        wlb.template_version_id,
        wlb.job_id,
        w.created_at
    from workspace_latest_builds as wlb
    inner join prebuilds.workspaces as w on wlb.workspace_id = w.id
    where
        wlb.transition = 'start'
        and wlb.job_status = 'succeeded'
        and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
        and not w.deleted
),

workspace_latest_presets as (
    select distinct on (lp.id)
        lp.id as workspace_id,
        wb.preset_id as current_preset_id
    from latest_prebuilds as lp
    inner join prebuilds.workspace_builds as wb on lp.id = wb.workspace_id
    where wb.preset_id is not null
    order by lp.id asc, wb.build_number desc
),

ready_agents as (
    select
        lp.job_id,
        bool_and(wa.lifecycle_state = 'ready') as ready
    from latest_prebuilds as lp
    inner join prebuilds.workspace_agents as wa on lp.job_id = wa.job_id
    where not wa.deleted
    group by lp.job_id
)

select
    lp.id,
    lp.name,
    lp.template_id,
    lp.template_version_id,
    wlp.current_preset_id,
    coalesce(ra.ready, false) as ready,
    lp.created_at
from latest_prebuilds as lp
left join ready_agents as ra on lp.job_id = ra.job_id
left join workspace_latest_presets as wlp on lp.id = wlp.workspace_id
order by lp.id;

-- name: count_in_progress_prebuilds
-- Coder's CountInProgressPrebuilds: latest builds initiated by the system user (Coder's
-- workspace_prebuild_builds view) with a pending or running job, on active versions, per preset
-- and transition.
with
workspace_latest_builds as (
    select distinct on (wb.workspace_id)
        wb.id,
        wb.workspace_id,
        wb.template_version_id,
        wb.job_id,
        wb.preset_id,
        wb.transition,
        wb.created_at,
        pj.status as job_status
    from prebuilds.workspace_builds as wb
    inner join prebuilds.provisioner_jobs as pj on wb.job_id = pj.id
    order by wb.workspace_id asc, wb.build_number desc
),

workspace_prebuild_builds as (
    select
        wb.id,
        wb.template_version_id,
        wb.transition
    from prebuilds.workspace_builds as wb
    where wb.initiator_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
)

select
    t.id as template_id,
    wpb.template_version_id,
    wpb.transition,
    count(wpb.transition)::int as count,
    wlb.preset_id
from workspace_latest_builds as wlb
inner join workspace_prebuild_builds as wpb on wlb.id = wpb.id
inner join prebuilds.templates as t on wlb.template_version_id = t.active_version_id
where wlb.job_status in ('pending', 'running')
group by t.id, wpb.template_version_id, wpb.transition, wlb.preset_id;

-- name: get_pending_prebuilds_to_cancel
-- Coder's CountPendingNonActivePrebuilds, listing the workspaces instead of counting them (the
-- plan names each cancel): initial start builds of prebuilds whose job no provisioner has picked
-- up, on a version that is not live. Coder's condition is `version != active_version_id`
-- (returned as version_not_active); SPEC 4.1 also counts deleted and deprecated templates.
select
    wpb.preset_id,
    w.id as workspace_id,
    wpb.template_version_id,
    coalesce(wpb.template_version_id != t.active_version_id, false) as version_not_active
from prebuilds.workspace_builds as wpb
inner join prebuilds.provisioner_jobs as pj on wpb.job_id = pj.id
inner join prebuilds.workspaces as w on wpb.workspace_id = w.id
inner join prebuilds.templates as t on w.template_id = t.id
where
    wpb.initiator_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
    and (
        wpb.template_version_id is distinct from t.active_version_id
        or t.deleted
        or t.deprecated
    )
    and wpb.build_number = 1
    and wpb.transition = 'start'
    and pj.status = 'pending'
    and pj.worker_id is null
    and pj.canceled_at is null
    and pj.completed_at is null
    and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
    and not w.deleted;

-- name: get_presets_backoff
-- Coder's GetPresetsBackoff: over the latest start builds of system-owned workspaces, per preset
-- on an active version of a live template: failures since @lookback and the time of the most
-- recent one. Coder keeps only presets whose N most recent builds (N = desired_instances) hold a
-- failure since @lookback (`rn <= desired_instances`); here the rank of the most recent such
-- failure is returned (first_failed_rank) and the N cut is made in Python, because SPEC's N is
-- the desired size in force (schedules). Adaptations to our schema: builds before the preset's
-- failures_reset_at are ignored (resume_preset), deleted workspaces too (SPEC 4.2), and ties in
-- created_at are broken by workspace id (Coder leaves them arbitrary).
with
workspace_latest_builds as (
    select distinct on (wb.workspace_id)
        wb.id,
        wb.workspace_id,
        wb.template_version_id,
        wb.job_id,
        wb.preset_id,
        wb.transition,
        wb.created_at,
        pj.status as job_status
    from prebuilds.workspace_builds as wb
    inner join prebuilds.provisioner_jobs as pj on wb.job_id = pj.id
    order by wb.workspace_id asc, wb.build_number desc
),

filtered_builds as (
    select
        wlb.template_version_id,
        wlb.created_at,
        wlb.workspace_id,
        p.id as preset_id,
        wlb.job_status,
        p.desired_instances
    from prebuilds.presets as p
    inner join workspace_latest_builds as wlb on p.id = wlb.preset_id
    inner join prebuilds.workspaces as w on wlb.workspace_id = w.id
    inner join prebuilds.template_versions as tv on wlb.template_version_id = tv.id
    inner join prebuilds.templates as t on tv.template_id = t.id and tv.id = t.active_version_id
    where
        (
            p.desired_instances is not null
            or exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id)
        )
        and wlb.transition = 'start'
        and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
        and not w.deleted
        and not t.deleted
        and (p.failures_reset_at is null or wlb.created_at >= p.failures_reset_at)
),

time_sorted_builds as (
    select
        fb.template_version_id,
        fb.created_at,
        fb.preset_id,
        fb.job_status,
        fb.desired_instances,
        row_number() over (
            partition by fb.preset_id order by fb.created_at desc, fb.workspace_id asc
        ) as rn
    from filtered_builds as fb
),

failed_count as (
    select
        fb.preset_id,
        count(*) as num_failed
    from filtered_builds as fb
    where fb.job_status = 'failed' and fb.created_at >= %(lookback)s
    group by fb.preset_id
)

select
    tsb.template_version_id,
    tsb.preset_id,
    coalesce(fc.num_failed, 0)::int as num_failed,
    max(tsb.created_at) as last_build_at,
    min(tsb.rn)::int as first_failed_rank,
    tsb.desired_instances
from time_sorted_builds as tsb
left join failed_count as fc on tsb.preset_id = fc.preset_id
where
    tsb.job_status = 'failed'
    and tsb.created_at >= %(lookback)s
group by tsb.template_version_id, tsb.preset_id, fc.num_failed, tsb.desired_instances;

-- name: get_presets_at_failure_limit
-- Coder's GetPresetsAtFailureLimit: presets on an active version whose @hard_limit most recent
-- latest start builds all failed (none when @hard_limit is 0). Same adaptations as
-- get_presets_backoff.
with
workspace_latest_builds as (
    select distinct on (wb.workspace_id)
        wb.id,
        wb.workspace_id,
        wb.template_version_id,
        wb.job_id,
        wb.preset_id,
        wb.transition,
        wb.created_at,
        pj.status as job_status
    from prebuilds.workspace_builds as wb
    inner join prebuilds.provisioner_jobs as pj on wb.job_id = pj.id
    order by wb.workspace_id asc, wb.build_number desc
),

filtered_builds as (
    select
        wlb.template_version_id,
        wlb.created_at,
        wlb.workspace_id,
        p.id as preset_id,
        wlb.job_status,
        p.desired_instances
    from prebuilds.presets as p
    inner join workspace_latest_builds as wlb on p.id = wlb.preset_id
    inner join prebuilds.workspaces as w on wlb.workspace_id = w.id
    inner join prebuilds.template_versions as tv on wlb.template_version_id = tv.id
    inner join prebuilds.templates as t on tv.template_id = t.id and tv.id = t.active_version_id
    where
        (
            p.desired_instances is not null
            or exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id)
        )
        and wlb.transition = 'start'
        and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
        and not w.deleted
        and (p.failures_reset_at is null or wlb.created_at >= p.failures_reset_at)
),

time_sorted_builds as (
    select
        fb.template_version_id,
        fb.created_at,
        fb.preset_id,
        fb.job_status,
        fb.desired_instances,
        row_number() over (
            partition by fb.preset_id order by fb.created_at desc, fb.workspace_id asc
        ) as rn
    from filtered_builds as fb
)

select
    tsb.template_version_id,
    tsb.preset_id
from time_sorted_builds as tsb
where
    tsb.rn <= %(hard_limit)s
    and tsb.job_status = 'failed'
group by tsb.template_version_id, tsb.preset_id
having count(*) = %(hard_limit)s;

-- name: count_pending_prebuild_creates
-- Not a Coder query (Coder has no max_pending_creates): prebuild start jobs pending or running in
-- the whole deployment, read only when the cap is set. Same latest-build shape.
with
workspace_latest_builds as (
    select distinct on (wb.workspace_id)
        wb.id,
        wb.workspace_id,
        wb.template_version_id,
        wb.job_id,
        wb.preset_id,
        wb.transition,
        wb.created_at,
        pj.status as job_status
    from prebuilds.workspace_builds as wb
    inner join prebuilds.provisioner_jobs as pj on wb.job_id = pj.id
    order by wb.workspace_id asc, wb.build_number desc
),

workspace_prebuild_builds as (
    select wb.id
    from prebuilds.workspace_builds as wb
    where wb.initiator_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
)

select count(*)::int as pending_creates
from workspace_latest_builds as wlb
inner join workspace_prebuild_builds as wpb on wlb.id = wpb.id
inner join prebuilds.workspaces as w on wlb.workspace_id = w.id
where
    wlb.transition = 'start'
    and wlb.job_status in ('pending', 'running')
    and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
    and not w.deleted;

-- name: create_prebuild
-- The writes are ours (SPEC 4.5), so that both designs write the same rows; each is sent in its
-- own repeatable-read transaction, like Coder's createPrebuiltWorkspace / deletePrebuiltWorkspace.
select prebuilds.create_prebuild(%(preset_id)s) as workspace_id;

-- name: delete_prebuild
select prebuilds.delete_prebuild(%(workspace_id)s) as done;

-- name: cancel_prebuild
select prebuilds.cancel_prebuild(%(workspace_id)s) as done;
