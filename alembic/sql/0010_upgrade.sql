-- Revision 0010. Written by hand above the marker, in sections (one per piece of work).

-- >>> self-healing pools (issue 10, SPEC 5) ------------------------------------------------------
-- The plan's functions and views change columns: dropped here, re-created below the marker.
drop view prebuilds.reconciliation_actions;
drop view prebuilds.preset_state;
drop function prebuilds.planned_actions_at(timestamptz);
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.preset_plan_at(timestamptz);
drop function prebuilds.next_change_at(timestamptz);
drop function prebuilds.apply_action(bigint, int, text, uuid, uuid, text);
drop function prebuilds.delete_prebuild(uuid);
drop function prebuilds.cancel_prebuild(uuid);
drop function prebuilds.complete_job(uuid, text);
drop function prebuilds.count_claim(uuid, bool);
drop function prebuilds.count_prebuild_event(uuid, text);
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();
drop trigger workspace_builds_track_latest on prebuilds.workspace_builds;
drop function prebuilds.track_latest_build();

alter table prebuilds.settings
add column delete_retry_interval interval not null default '1 minute'
check (delete_retry_interval > interval '0'),
add column delete_retry_limit int not null default 5 check (delete_retry_limit between 0 and 100),
add column job_heartbeat_timeout interval not null default '5 minutes'
check (job_heartbeat_timeout > interval '0'),
add column job_pending_timeout interval not null default '30 minutes'
check (job_pending_timeout > interval '0'),
add column hard_limit_cooldown interval default '1 hour'
check (hard_limit_cooldown > interval '0'),
add column failed_prebuild_retention interval
check (failed_prebuild_retention > interval '0');
comment on column prebuilds.settings.delete_retry_interval is
'Base of the exponential backoff between attempts to delete a prebuild whose delete failed: '
'retry n waits delete_retry_interval * 2^(n-1) after the failure, at most one hour.';
comment on column prebuilds.settings.delete_retry_limit is
'Retries of a failed delete; a prebuild whose delete failed more often than this is quarantined '
'(no more retries, counted in preset_state.quarantined). 0 = never retry.';
comment on column prebuilds.settings.job_heartbeat_timeout is
'A running prebuild job whose last heartbeat (provisioner_jobs.updated_at) is older than this is '
'hung: the reconciler fails it.';
comment on column prebuilds.settings.job_pending_timeout is
'A prebuild job that no provisioner picked up for this long is hung: the reconciler fails it.';
comment on column prebuilds.settings.hard_limit_cooldown is
'A hard-limited preset gets one probe build this long after its last failure; null = only '
'resume_preset clears a hard limit.';
comment on column prebuilds.settings.failed_prebuild_retention is
'Failed and stopped prebuilds whose latest build finished longer ago than this are deleted; '
'null = kept for investigation.';

alter table prebuilds.workspaces
add column delete_failures int not null default 0 check (delete_failures >= 0);
comment on column prebuilds.workspaces.delete_failures is
'Consecutive failed delete builds that end the workspace''s history: counted by complete_job and '
'fail_job when a delete fails, reset when a build other than a delete is added (maintained by '
'trigger). The delete retry backoff and quarantine read it instead of the build history.';
-- Once, from history: the failed deletes in a row that end each live prebuild's builds.
update prebuilds.workspaces as w
set delete_failures = (
    select count(*)
    from prebuilds.workspace_builds as b
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    where
        b.workspace_id = w.id
        and b.build_number > coalesce((
            select max(b2.build_number)
            from prebuilds.workspace_builds as b2
            inner join prebuilds.provisioner_jobs as j2 on b2.job_id = j2.id
            where
                b2.workspace_id = w.id
                and not (b2.transition = 'delete' and j2.status = 'failed')
        ), 0)
)
from prebuilds.workspace_builds as lb
inner join prebuilds.provisioner_jobs as lj on lb.job_id = lj.id
where
    lb.id = w.latest_build_id
    and not w.deleted
    and lb.transition = 'delete'
    and lj.status = 'failed';

alter table prebuilds.preset_counters
add column hung_failed bigint not null default 0 check (hung_failed >= 0),
add column delete_retried bigint not null default 0 check (delete_retried >= 0);
comment on column prebuilds.preset_counters.hung_failed is
'Prebuild jobs failed by fail_job because they hung (SPEC 5.2).';
comment on column prebuilds.preset_counters.delete_retried is
'Deletes queued again by delete_prebuild after a failed delete (SPEC 5.1).';

create index provisioner_jobs_failed_idx
on prebuilds.provisioner_jobs (completed_at desc, id desc)
where error is not null and canceled_at is null;
comment on index prebuilds.provisioner_jobs_failed_idx is
'Failed jobs, newest first (the view prebuild_failures).';

alter table prebuilds.reconciliation_action_log
drop constraint reconciliation_action_log_action_check,
add constraint reconciliation_action_log_action_check
check (action in ('cancel', 'fail_job', 'delete', 'create', 'backoff'));
comment on column prebuilds.reconciliation_action_log.action is
'cancel, fail_job, delete, create or backoff.';

comment on type prebuilds.planned_work is
'A planned cancel, fail_job or delete: action, target workspace and the reason an operator '
'reads.';
comment on column prebuilds.planned_work.action is 'cancel, fail_job or delete.';
comment on column prebuilds.planned_work.workspace_id is
'The workspace to cancel, delete, or whose hung job to fail.';
-- <<< self-healing pools -------------------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/track_latest_build.sql
-- Trigger function: keeps workspaces.latest_build_*, current_preset_id and delete_failures in step
-- with the builds, so readers find a workspace's state in one primary-key lookup instead of
-- scanning its history.
-- Called by the trigger workspace_builds_track_latest after every build insert.

create function prebuilds.track_latest_build()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    -- The comparison runs on the row version this update locks, so two builds inserted
    -- concurrently for one workspace still leave the higher number in place.
    update prebuilds.workspaces as w
    set latest_build_id = new.id,
        latest_build_number = new.build_number,
        current_preset_id = coalesce(new.preset_id, w.current_preset_id),
        -- Failed deletes in a row end the history: any other build ends the run. A delete build
        -- inserted already failed (an import, a test fixture) counts as one more.
        delete_failures = case
            when new.transition <> 'delete' then 0
            when exists (
                select from prebuilds.provisioner_jobs as j
                where j.id = new.job_id and j.status = 'failed'
            ) then w.delete_failures + 1
            else w.delete_failures
        end
    where w.id = new.workspace_id
      and (w.latest_build_number is null or w.latest_build_number < new.build_number);
    return null;
end;
$$;

comment on function prebuilds.track_latest_build() is
'Trigger: points workspaces.latest_build_id and current_preset_id at the newest build and '
'resets delete_failures unless the new build is a delete.';

-- >>> db/triggers/workspace_builds_track_latest.sql
-- Maintains the latest-build pointer on workspaces for every writer, not only our functions.
-- Builds are append-only: updating a build's number, workspace or preset is not supported.

create trigger workspace_builds_track_latest
after insert on prebuilds.workspace_builds
for each row execute function prebuilds.track_latest_build();

comment on trigger workspace_builds_track_latest on prebuilds.workspace_builds is
'Keeps workspaces.latest_build_id, latest_build_number and current_preset_id current.';

-- >>> db/functions/delete_retry_at.sql
-- The delete retry schedule (SPEC 5.1), shared by the plan and delete_prebuild's re-check: retry
-- n (after n failed deletes in a row) is due p_interval * 2^(n-1) after the last failure, at most
-- one hour after it.

create function prebuilds.delete_retry_at(
    p_failed_at timestamptz,
    p_attempts int,
    p_interval interval
)
returns timestamptz
language sql
immutable
parallel safe
-- 2^20 times any positive interval is past the hour: the exponent stops there (no overflow).
return p_failed_at + least(
    p_interval * power(2, least(greatest(p_attempts, 1), 21) - 1),
    interval '1 hour'
);

comment on function prebuilds.delete_retry_at(timestamptz, int, interval) is
'When the retry of a delete that failed at p_failed_at, after p_attempts failed deletes in a '
'row, is due: p_interval * 2^(p_attempts - 1) later, capped at one hour.';

-- >>> db/functions/describe_age.sql
-- Internal: an age in the largest whole unit, for reasons an operator reads ("2 days",
-- "5 hours", "1 minute"). Used by the plan's cleanup reasons and cleanup_prebuilds.

create function prebuilds.describe_age(p_age interval)
returns text
language sql
immutable
parallel safe
return (
    select
        case
            when s.secs >= 86400 then (s.secs / 86400)::text || ' day'
            when s.secs >= 3600 then (s.secs / 3600)::text || ' hour'
            when s.secs >= 60 then (s.secs / 60)::text || ' minute'
            else s.secs::text || ' second'
        end
        || case
            when s.secs / (
                    case
                        when s.secs >= 86400 then 86400
                        when s.secs >= 3600 then 3600
                        when s.secs >= 60 then 60
                        else 1
                    end
                ) = 1 then ''
            else 's'
        end
    from (select greatest(floor(extract(epoch from p_age)), 0)::bigint as secs) as s
);

comment on function prebuilds.describe_age(interval) is
'Internal: p_age in its largest whole unit, e.g. ''2 days'', ''1 hour'', ''30 seconds''.';

-- >>> db/functions/preset_plan_at.sql
-- The whole reconciliation calculation (SPEC 4.1, 4.2, 4.4, 5) as one query: state and work per
-- preset.
-- preset_state_at shows its state columns; reconciliation_actions_at unnests its work. Both read
-- the live prebuilds exactly once, through this function; nothing else computes a rule.
--
-- Inlined into its callers (no SET options, not security definer); their plans are cached.
-- Cost follows the live fleet: the live prebuilds come from a partial index holding only them,
-- each joined by primary key to its latest build and job; active presets come from the live
-- templates through presets' (template_version_id, name) key. Old presets and build history are
-- never scanned.

create function prebuilds.preset_plan_at(p_now timestamptz)
returns table (
    preset_id uuid,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    is_active bool,
    desired int,
    actual int,
    eligible int,
    expired int,
    extraneous int,
    starting int,
    stopping int,
    deleting int,
    pending_cancelable int,
    failures int,
    backoff_until timestamptz,
    hard_limited bool,
    blocked_reason text,
    creates_wanted int,
    creates int,
    creates_reason text,
    backoff_reason text,
    schedule_note text,
    demand int,
    desired_reason text,
    last_error text,
    retrying_deletes int,
    quarantined int,
    work prebuilds.planned_work[]
)
language sql
stable
-- No SET options and not security definer: the function stays inlinable, so its body becomes part
-- of the plan of the wrappers that read it (reconciliation_actions_at, preset_state_at), which
-- cache that plan per connection and turn JIT off (SPEC 3).
rows 200
begin atomic
    with
    cfg as (
        select
            s.reconciliation_paused as paused,
            s.backoff_interval,
            s.backoff_lookback,
            s.failure_hard_limit,
            s.max_pending_creates,
            s.delete_retry_interval,
            s.delete_retry_limit,
            s.job_heartbeat_timeout,
            s.job_pending_timeout,
            s.hard_limit_cooldown,
            s.failed_prebuild_retention
        from prebuilds.settings as s
        -- The table has exactly one row (keep_settings_row), which the planner cannot know for a
        -- table too small to be analysed: without the limit it assumes hundreds and multiplies
        -- every estimate joined to cfg by them, which made plans flip (users ×5 at 4× dogfood).
        limit 1  -- noqa: AM09
    ),

    -- Every live prebuild with the state of its latest build: the only read of fleet data.
    live as materialized (
        select
            w.id as workspace_id,
            w.created_at,
            w.current_preset_id as preset_id,
            w.delete_failures,
            lb.build_number,
            lb.transition,
            lb.build_created_at,
            lb.job_id,
            lb.job_status,
            lb.job_created_at,
            lb.heartbeat_at,
            lb.finished_at,
            lb.job_error,
            lb.initiator_id = prebuilds.system_user_id() as by_system,
            lb.initiator_id = prebuilds.system_user_id()
            and lb.job_status in ('pending', 'running') as in_flight
        from prebuilds.workspaces as w
        -- Two primary-key lookups per live prebuild, whatever the statistics say: the fence
        -- (offset 0) keeps the planner from hashing the whole build history instead.
        cross join
            lateral (
                select
                    b.build_number,
                    b.transition,
                    b.created_at as build_created_at,
                    b.job_id,
                    b.initiator_id,
                    j.status as job_status,
                    j.created_at as job_created_at,
                    -- A job picked up before heartbeats were recorded beats at its start.
                    coalesce(j.updated_at, j.started_at) as heartbeat_at,
                    j.completed_at as finished_at,
                    j.error as job_error
                from prebuilds.workspace_builds as b
                inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
                where b.id = w.latest_build_id
                offset 0  -- noqa: AM09
            ) as lb
        where w.owner_id = prebuilds.system_user_id() and not w.deleted
    ),

    -- Presets of active template versions that have a pool (SPEC 4.1, first half).
    pooled as (
        select p.id as preset_id
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        where
            not t.deleted
            and not t.deprecated
            and (
                p.desired_instances is not null
                or p.max_instances is not null
                or exists (
                    select from prebuilds.preset_schedules as ps
                    where ps.preset_id = p.id
                )
            )
        union
        -- Presets holding live prebuilds; the filter below keeps those with cleanup to do.
        select distinct l.preset_id
        from live as l
        where l.preset_id is not null
    ),

    candidate as (
        select
            d.preset_id,
            d.organization_name,
            d.template_name,
            d.template_version_name,
            d.preset_name,
            d.ttl_seconds,
            d.last_invalidated_at,
            d.failures_reset_at,
            d.is_active,
            d.is_active
            and (
                d.desired_instances is not null or d.max_instances is not null or d.has_schedules
            ) as has_pool,
            case when d.is_active then size.desired else 0 end as desired,
            size.schedule_note,
            size.demand,
            size.desired_reason as size_reason,
            case
                when d.template_deleted then 'template ' || d.template_name || ' deleted'
                when d.template_deprecated then 'template ' || d.template_name || ' deprecated'
                when d.active_version_name is null
                    then 'template ' || d.template_name || ' has no active version'
                else
                    'outdated version ' || d.template_version_name || ' (active: '
                    || d.active_version_name || ')'
            end as inactive_reason
        from pooled
        -- One primary-key lookup per candidate. The fence (offset 0) keeps the planner from
        -- turning it into a scan of every preset and version to hash-join a hundred rows.
        cross join
            lateral (
                select
                    p.id as preset_id,
                    o.name as organization_name,
                    t.name as template_name,
                    v.name as template_version_name,
                    p.name as preset_name,
                    p.desired_instances,
                    p.min_instances,
                    p.max_instances,
                    p.ttl_seconds,
                    p.last_invalidated_at,
                    p.failures_reset_at,
                    p.scheduling_timezone,
                    t.deleted as template_deleted,
                    t.deprecated as template_deprecated,
                    av.name as active_version_name,
                    coalesce(
                        t.active_version_id = p.template_version_id
                        and not t.deleted
                        and not t.deprecated,
                        false
                    ) as is_active,
                    -- Here, behind the fence, it stays a column: pulled up, it would be the EXISTS
                    -- itself, and a function whose arguments hold a sub-select is not inlined
                    -- (pool_size_at would then be planned on every call: 0.6 ms per preset).
                    exists(
                        select from prebuilds.preset_schedules as s
                        where s.preset_id = p.id
                    ) as has_schedules
                from prebuilds.presets as p
                inner join prebuilds.template_versions as v on p.template_version_id = v.id
                inner join prebuilds.templates as t on v.template_id = t.id
                inner join prebuilds.organizations as o on t.organization_id = o.id
                left join prebuilds.template_versions as av on t.active_version_id = av.id
                where p.id = pooled.preset_id
                offset 0  -- noqa: AM09
            ) as d
        -- The pool's size (SPEC 4.2, 4.3, 6.3), computed only for active presets.
        left join lateral (
            select
                ps.desired,
                ps.demand,
                ps.desired_reason,
                ps.schedule_note
            from prebuilds.pool_size_at(
                    d.preset_id, d.desired_instances, d.min_instances, d.max_instances,
                    d.scheduling_timezone, d.has_schedules, p_now
                ) as ps
            where d.is_active
            -- Keeps the condition a gate in front of the call (not a filter after it).
            offset 0  -- noqa: AM09
        ) as size on true
    ),

    -- Each live prebuild of a candidate, classified by the rules of SPEC 4.2.
    classified as (
        select
            l.*,
            c.is_active,
            c.desired,
            l.transition = 'start' and l.job_status = 'succeeded' as running,
            l.transition = 'start' and l.job_status = 'succeeded'
            and prebuilds.is_expired(
                l.created_at, c.ttl_seconds, c.last_invalidated_at, p_now
            ) as expired,
            l.build_number = 1 and l.transition = 'start' and l.by_system
            and l.job_status = 'pending' as queued_initial,
            -- Failure history: latest builds that are starts, since the last reset.
            l.transition = 'start'
            and (c.failures_reset_at is null or l.build_created_at >= c.failures_reset_at)
                as in_history,
            -- SPEC 5.2: a job of the system user that stopped beating, or that nobody picked up.
            case
                when l.by_system and l.job_status = 'running'
                    and l.heartbeat_at < p_now - cfg.job_heartbeat_timeout
                    then 'hung: no heartbeat for '
                        || date_trunc('second', p_now - l.heartbeat_at)::text
                when l.by_system and l.job_status = 'pending'
                    and l.job_created_at < p_now - cfg.job_pending_timeout
                    then 'hung: not picked up for '
                        || date_trunc('second', p_now - l.job_created_at)::text
            end as hung_reason,
            -- SPEC 5.1: a failed delete, retried until delete_retry_limit retries failed too.
            l.transition = 'delete' and l.job_status = 'failed' as failed_delete,
            l.transition = 'delete' and l.job_status = 'failed'
            and greatest(l.delete_failures, 1) > cfg.delete_retry_limit as quarantined,
            l.transition = 'delete' and l.job_status = 'failed'
            and greatest(l.delete_failures, 1) <= cfg.delete_retry_limit
            and prebuilds.delete_retry_at(
                l.finished_at, l.delete_failures, cfg.delete_retry_interval
            ) <= p_now as retry_due,
            -- SPEC 5.5: failed starts and stops, and stopped prebuilds, past the retention.
            (
                (l.transition in ('start', 'stop') and l.job_status = 'failed')
                or (l.transition = 'stop' and l.job_status = 'succeeded')
            )
            and l.finished_at < p_now - cfg.failed_prebuild_retention as cleanup_due
        from live as l
        inner join candidate as c on l.preset_id = c.preset_id
        cross join cfg
    ),

    ranked as (
        select
            cl.*,
            coalesce(rd.ready, false) as eligible,
            cl.job_status = 'failed'
            and cl.build_created_at >= p_now - cfg.backoff_lookback as recent_failure,
            -- Oldest first among the unexpired running prebuilds: surplus deletion order.
            row_number() over (
                partition by cl.preset_id, cl.running and not cl.expired
                order by cl.created_at, cl.workspace_id
            ) as age_rank,
            -- Most recent first among the failure history: backoff and hard-limit windows.
            row_number() over (
                partition by cl.preset_id, cl.in_history
                order by cl.build_created_at desc, cl.workspace_id asc
            ) as history_rank,
            -- The same among finished builds only: the hard limit looks at results, so a probe
            -- in flight neither ends nor extends it (SPEC 5.4).
            row_number() over (
                partition by cl.preset_id, cl.in_history and not cl.in_flight
                order by cl.build_created_at desc, cl.workspace_id asc
            ) as settled_rank,
            -- Newest first among the queued initial builds: surplus cancel order (SPEC 5.3).
            row_number() over (
                partition by cl.preset_id, cl.queued_initial
                order by cl.created_at desc, cl.workspace_id desc
            ) as queued_rank
        from classified as cl
        cross join cfg
        -- Readiness is looked up only for the prebuilds it can make eligible (the condition is a
        -- gate in front of the lookup, not a filter after it).
        left join lateral (
            select r.ready
            from prebuilds.agent_readiness(cl.job_id) as r
            where cl.running and not cl.expired and cl.is_active
            offset 0  -- noqa: AM09
        ) as rd on true
    ),

    tally as (
        select
            r.preset_id,
            count(*) filter (where r.running) as actual,
            count(*) filter (where r.expired) as expired,
            count(*) filter (where r.eligible) as eligible,
            count(*) filter (where r.in_flight and r.transition = 'start') as starting,
            count(*) filter (where r.in_flight and r.transition = 'stop') as stopping,
            count(*) filter (where r.in_flight and r.transition = 'delete') as deleting,
            count(*) filter (where r.queued_initial and not r.is_active) as pending_cancelable,
            count(*) filter (where r.in_history and r.recent_failure) as failures,
            max(r.build_created_at) filter (
                where r.in_history and r.recent_failure
            ) as last_failure_at,
            -- Backoff looks at the `desired` most recent builds only (SPEC 4.2).
            bool_or(
                r.in_history and r.recent_failure and r.history_rank <= r.desired
            ) as failed_recently,
            count(*) filter (
                where r.in_history and r.job_status = 'failed'
                and r.settled_rank <= cfg.failure_hard_limit
            ) as hard_limit_failures,
            -- The oldest of the failures that make the hard limit, and the most recent failure
            -- (when it finished): the probe's cooldown runs from there (SPEC 5.4).
            min(r.build_created_at) filter (
                where r.in_history and r.job_status = 'failed'
                and r.settled_rank <= cfg.failure_hard_limit
            ) as hard_limited_since,
            max(coalesce(r.finished_at, r.build_created_at)) filter (
                where r.in_history and r.job_status = 'failed'
            ) as last_failed_at,
            (
                array_agg(r.job_error order by r.build_created_at desc, r.workspace_id asc)
                filter (where r.in_history and r.recent_failure)
            )[1] as last_error,
            count(*) filter (where r.queued_initial) as queued,
            count(*) filter (where r.failed_delete and not r.quarantined) as retrying_deletes,
            count(*) filter (where r.quarantined) as quarantined,
            -- Work of SPEC 5 that keeps a preset under consideration (SPEC 4.1).
            count(*) filter (
                where r.hung_reason is not null or r.failed_delete or r.cleanup_due
            ) as self_healing
        from ranked as r
        cross join cfg
        group by r.preset_id
    ),

    state as (
        select
            c.*,
            coalesce(tl.actual, 0)::int as actual,
            coalesce(tl.expired, 0)::int as expired,
            coalesce(tl.eligible, 0)::int as eligible,
            coalesce(tl.starting, 0)::int as starting,
            coalesce(tl.stopping, 0)::int as stopping,
            coalesce(tl.deleting, 0)::int as deleting,
            coalesce(tl.pending_cancelable, 0)::int as pending_cancelable,
            coalesce(tl.failures, 0)::int as failures,
            coalesce(tl.queued, 0)::int as queued,
            coalesce(tl.retrying_deletes, 0)::int as retrying_deletes,
            coalesce(tl.quarantined, 0)::int as quarantined,
            tl.last_error,
            tl.hard_limited_since,
            tl.last_failed_at,
            c.is_active
            and cfg.failure_hard_limit > 0
            and coalesce(tl.hard_limit_failures, 0) = cfg.failure_hard_limit as hard_limited,
            case
                when
                    c.is_active and tl.failed_recently
                    and tl.last_failure_at + tl.failures * cfg.backoff_interval > p_now
                    then tl.last_failure_at + tl.failures * cfg.backoff_interval
            end as backoff_until,
            cfg.paused,
            cfg.hard_limit_cooldown
        from candidate as c
        cross join cfg
        left join tally as tl on c.preset_id = tl.preset_id
        -- SPEC 4.1: a pool on an active version, or something left to clean up.
        where c.has_pool or tl.actual > 0 or tl.pending_cancelable > 0 or tl.self_healing > 0
    ),

    wanted as (
        select
            st.*,
            case
                when st.is_active then greatest(st.actual - st.expired - st.desired, 0)
                else 0
            end as extraneous,
            case
                when st.is_active
                    then greatest(st.desired - (st.actual - st.expired) - st.starting, 0)
                else 0
            end as creates_wanted,
            -- SPEC 5.3: queued initial builds beyond what the pool needs, cancelled newest first.
            case
                when st.is_active
                    then least(
                            st.queued,
                            greatest(st.actual - st.expired + st.starting - st.desired, 0)
                        )
                else 0
            end as surplus_queued,
            -- SPEC 5.4: one probe build once the cooldown after the last failure is over.
            coalesce(
                st.hard_limited
                and st.last_failed_at + st.hard_limit_cooldown <= p_now
                and st.starting = 0,
                false
            ) as probing
        from state as st
    ),

    -- Creates interleaved across presets (every preset's first, then every preset's second, …)
    -- so that a deployment-wide cap never starves a preset.
    create_slots as (
        select
            wn.preset_id,
            row_number() over (
                order by
                    slot.n, wn.organization_name, wn.template_name, wn.template_version_name,
                    wn.preset_name, wn.preset_id
            ) as global_rank
        from wanted as wn
        cross join
            lateral generate_series(
                1,
                case
                    when wn.hard_limited and wn.probing then least(wn.creates_wanted, 1)
                    when wn.hard_limited or wn.backoff_until is not null then 0
                    else wn.creates_wanted
                end
            ) as slot (n)
        where not wn.paused
    ),

    -- How many more prebuild start jobs may be queued; null when there is no cap.
    create_budget as (
        select
            cfg.max_pending_creates - (
                select count(*)
                from live as l
                where l.in_flight and l.transition = 'start'
            ) as budget
        from cfg
    ),

    allowed as (
        select
            cs.preset_id,
            count(*) filter (
                where cb.budget is null or cs.global_rank <= cb.budget
            )::int as creates
        from create_slots as cs
        cross join create_budget as cb
        group by cs.preset_id
    ),

    -- What to do with each live prebuild, if anything: one action per workspace.
    decided as (
        select
            r.preset_id,
            r.workspace_id,
            r.created_at,
            r.expired,
            r.queued_rank,
            case
                when r.queued_initial and not wn.is_active then 'cancel'
                when r.queued_initial and r.queued_rank <= wn.surplus_queued then 'cancel'
                when r.hung_reason is not null then 'fail_job'
                when r.retry_due or r.cleanup_due then 'delete'
                when not wn.is_active and r.running then 'delete'
                when wn.is_active and r.expired then 'delete'
                when
                    wn.is_active and r.running and not r.expired
                    and r.age_rank <= wn.extraneous
                    then 'delete'
            end as action,
            case
                when r.queued_initial and not wn.is_active
                    then wn.inactive_reason || ': initial build still queued'
                when r.queued_initial and r.queued_rank <= wn.surplus_queued
                    then 'surplus: ' || (wn.actual - wn.expired) || ' running, '
                        || wn.starting || ' starting, ' || wn.desired
                        || ' desired: initial build still queued'
                when r.hung_reason is not null then r.hung_reason
                when r.retry_due
                    then 'retry ' || greatest(r.delete_failures, 1) || ' of '
                        || cfg.delete_retry_limit || ': last delete failed at '
                        || to_char(r.finished_at, 'YYYY-MM-DD HH24:MI:SSOF') || ': '
                        || coalesce(r.job_error, 'no error recorded')
                when r.cleanup_due
                    then 'cleanup: '
                        || case when r.job_status = 'failed' then 'failed ' else '' end
                        || r.transition || ' finished '
                        || prebuilds.describe_age(p_now - r.finished_at) || ' ago'
                when not wn.is_active then wn.inactive_reason
                when r.created_at < wn.last_invalidated_at
                    then 'expired: created before invalidation at '
                        || to_char(wn.last_invalidated_at, 'YYYY-MM-DD HH24:MI:SSOF')
                when r.expired
                    then 'expired: older than ttl ' || wn.ttl_seconds || 's'
                else
                    'surplus: ' || (wn.actual - wn.expired) || ' running, '
                    || wn.desired || ' desired'
            end as reason,
            r.queued_initial and wn.is_active as surplus_cancel
        from ranked as r
        inner join wanted as wn on r.preset_id = wn.preset_id
        cross join cfg
        where not wn.paused
    ),

    -- Per preset: cancels (surplus ones newest first), then failed hung jobs, then deletes
    -- (expired first, then oldest first), so queued work goes before any running prebuild.
    work as (
        select
            d.preset_id,
            array_agg(
                row(d.action, d.workspace_id, d.reason)::prebuilds.planned_work
                order by
                    case d.action when 'cancel' then 0 when 'fail_job' then 1 else 2 end,
                    case when d.surplus_cancel then d.queued_rank end,
                    d.expired desc, d.created_at asc, d.workspace_id asc
            ) as work
        from decided as d
        where d.action is not null
        group by d.preset_id
    )

    select
        wn.preset_id,
        wn.organization_name,
        wn.template_name,
        wn.template_version_name,
        wn.preset_name,
        wn.is_active,
        wn.desired,
        wn.actual,
        wn.eligible,
        wn.expired,
        wn.extraneous,
        wn.starting,
        wn.stopping,
        wn.deleting,
        wn.pending_cancelable,
        wn.failures,
        wn.backoff_until,
        wn.hard_limited,
        case
            when wn.paused then 'paused'
            when wn.creates_wanted = 0 then null
            when wn.hard_limited then 'hard_limited'
            when wn.backoff_until is not null then 'backoff'
            when coalesce(a.creates, 0) < wn.creates_wanted then 'capped'
        end as blocked_reason,
        wn.creates_wanted,
        coalesce(a.creates, 0) as creates,
        case
            when wn.hard_limited
                then 'probe: hard-limited since '
                    || to_char(wn.hard_limited_since, 'YYYY-MM-DD HH24:MI:SSOF')
                    || ', last failure ' || to_char(wn.last_failed_at, 'YYYY-MM-DD HH24:MI:SSOF')
                    || ', cooldown ' || wn.hard_limit_cooldown::text
            else
                'missing: ' || (wn.actual - wn.expired) || ' running, ' || wn.starting
                || ' starting, ' || wn.desired || ' desired'
        end as creates_reason,
        case
            when wn.backoff_until is not null
                then 'backoff: ' || wn.failures || ' failed build(s) in the last '
                    || (select cfg.backoff_lookback from cfg)::text || ', creates wait until '
                    || to_char(wn.backoff_until, 'YYYY-MM-DD HH24:MI:SSOF')
        end as backoff_reason,
        wn.schedule_note,
        wn.demand,
        case
            when wn.is_active then wn.size_reason
            else 'inactive: ' || wn.inactive_reason
        end as desired_reason,
        wn.last_error,
        wn.retrying_deletes,
        wn.quarantined,
        coalesce(wk.work, '{}') as work
    from wanted as wn
    left join allowed as a on wn.preset_id = a.preset_id
    left join work as wk on wn.preset_id = wk.preset_id;
end;

comment on function prebuilds.preset_plan_at(timestamptz) is
'Internal: the reconciliation state and planned work of every preset under consideration at '
'p_now. Read it through preset_state_at and reconciliation_actions_at.';

-- >>> db/functions/next_change_after.sql
-- Internal: the rules of next_change_at (SPEC 6.1): one row, the earliest instant after p_now at
-- which a rule driven by the clock alone flips, with no write at all, or null. Plain SQL, so the
-- planner inlines it into next_change_at's plan, which is cached per connection.
-- Each time-driven rule is one branch of the union below: a set of candidate instants. A branch
-- may offer instants at which nothing ends up changing (the loop then runs an empty cycle); it
-- must never miss one. Schedules are looked ahead 48 hours (the longest --interval is a day: the
-- loop asks again before anything further away is due).

create function prebuilds.next_change_after(p_now timestamptz)
returns table (at timestamptz)
language sql
stable
rows 1
begin atomic
    select min(c.at) as at
    from (
        -- TTL: a running prebuild is expired once older than ttl_seconds (is_expired).
        select w.created_at + make_interval(secs => p.ttl_seconds + 0.000001) as at
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        inner join prebuilds.presets as p on w.current_preset_id = p.id
        where
            w.owner_id = prebuilds.system_user_id()
            and not w.deleted
            and b.transition = 'start'
            and j.status = 'succeeded'
            and p.ttl_seconds > 0
            and w.created_at + make_interval(secs => p.ttl_seconds) >= p_now

        union all

        -- Backoff (SPEC 4.2): it ends at last failure + failures × backoff_interval, and the
        -- count drops when the oldest counted failure leaves backoff_lookback. The same failures
        -- preset_plan_at counts: failed latest start builds of live prebuilds, since the reset.
        select
            unnest(array[
                f.last_failure_at + f.failures * f.backoff_interval,
                f.first_failure_at + f.backoff_lookback
            ]) as at
        from (
            select
                max(b.created_at) as last_failure_at,
                min(b.created_at) as first_failure_at,
                count(*) as failures,
                min(s.backoff_interval) as backoff_interval,
                min(s.backoff_lookback) as backoff_lookback
            from prebuilds.workspaces as w
            inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
            inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
            inner join prebuilds.presets as p on w.current_preset_id = p.id
            cross join prebuilds.settings as s
            where
                w.owner_id = prebuilds.system_user_id()
                and not w.deleted
                and b.transition = 'start'
                and j.status = 'failed'
                and b.created_at >= p_now - s.backoff_lookback
                and (p.failures_reset_at is null or b.created_at >= p.failures_reset_at)
            group by w.current_preset_id
        ) as f

        union all

        -- Schedules (SPEC 4.3): the first local hour boundary at which the pool size the
        -- schedules give differs from now, for active presets with schedules and a known zone.
        select nxt.at
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        cross join
            lateral (
                select
                    prebuilds.local_time(p_now, p.scheduling_timezone) as local_now,
                    (
                        select s.desired
                        from prebuilds.preset_schedule_at(p.id, p.scheduling_timezone, p_now) as s
                    ) as desired_now
            ) as z
        cross join
            lateral (
                select h.at
                from generate_series(1, 48) as g (n)
                cross join
                    lateral (
                        select
                            (date_trunc('hour', z.local_now) + g.n * interval '1 hour')
                            at time zone p.scheduling_timezone as at
                    ) as h
                where
                    (
                        select s.desired
                        from prebuilds.preset_schedule_at(p.id, p.scheduling_timezone, h.at) as s
                    ) is distinct from z.desired_now
                order by g.n
                limit 1
            ) as nxt
        where
            not t.deleted
            and not t.deprecated
            and p.scheduling_timezone <> ''
            and z.local_now is not null
            and exists (select from prebuilds.preset_schedules as ps where ps.preset_id = p.id)

        union all

        -- Demand (SPEC 6.3): a demand-sized preset's demand changes when its oldest counted claim
        -- bucket leaves demand_window, and its build time when its oldest counted build leaves
        -- the 24 hours (pool_size_at counts the same rows, through the same keys).
        select
            unnest(array[
                (
                    select min(cs.bucket)
                    from prebuilds.claim_stats as cs
                    where
                        cs.preset_id = p.id
                        and cs.bucket > p_now - s.demand_window
                        and cs.bucket <= p_now
                ) + s.demand_window,
                (
                    select min(wb.created_at)
                    from prebuilds.workspace_builds as wb
                    where
                        wb.preset_id = p.id
                        and wb.transition = 'start'
                        and wb.initiator_id = prebuilds.system_user_id()
                        and wb.created_at > p_now - interval '24 hours'
                        and wb.created_at <= p_now
                ) + interval '24 hours'
            ]) as at
        from prebuilds.templates as t
        inner join prebuilds.presets as p on t.active_version_id = p.template_version_id
        cross join prebuilds.settings as s
        where not t.deleted and not t.deprecated and p.max_instances is not null

        union all

        -- Self-healing (SPEC 5), per live prebuild, from its latest build's job as the plan reads
        -- it: a failed delete's retry is due (5.1); a system job in flight becomes hung just after
        -- its heartbeat or its queueing plus the timeout (5.2); a failed or stopped prebuild
        -- passes the retention just after it finished plus failed_prebuild_retention (5.5).
        select
            unnest(array[
                case
                    when
                        b.transition = 'delete' and j.status = 'failed'
                        and greatest(w.delete_failures, 1) <= s.delete_retry_limit
                        then
                            prebuilds.delete_retry_at(
                                j.completed_at, w.delete_failures, s.delete_retry_interval
                            )
                end,
                case
                    when b.initiator_id = prebuilds.system_user_id() and j.status = 'running'
                        then coalesce(j.updated_at, j.started_at) + s.job_heartbeat_timeout
                            + interval '1 microsecond'
                    when b.initiator_id = prebuilds.system_user_id() and j.status = 'pending'
                        then j.created_at + s.job_pending_timeout + interval '1 microsecond'
                end,
                case
                    when
                        (b.transition in ('start', 'stop') and j.status = 'failed')
                        or (b.transition = 'stop' and j.status = 'succeeded')
                        then j.completed_at + s.failed_prebuild_retention
                            + interval '1 microsecond'
                end
            ]) as at
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        cross join prebuilds.settings as s
        where w.owner_id = prebuilds.system_user_id() and not w.deleted

        union all

        -- Hard-limit probe (SPEC 5.4): hard_limit_cooldown after a preset's last failed start
        -- finished (offered for every preset with one; the plan decides whether it is limited).
        select max(coalesce(j.completed_at, b.created_at)) + min(s.hard_limit_cooldown) as at
        from prebuilds.workspaces as w
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
        inner join prebuilds.presets as p on w.current_preset_id = p.id
        cross join prebuilds.settings as s
        where
            w.owner_id = prebuilds.system_user_id()
            and not w.deleted
            and b.transition = 'start'
            and j.status = 'failed'
            and s.hard_limit_cooldown is not null
            and (p.failures_reset_at is null or b.created_at >= p.failures_reset_at)
        group by w.current_preset_id
    ) as c
    where c.at > p_now;
end;

comment on function prebuilds.next_change_after(timestamptz) is
'Internal: one row, the earliest instant after p_now at which the plan changes with no write, '
'or null; read it through next_change_at, which caches its plan.';

-- >>> db/functions/next_change_at.sql
-- When does the plan next change by itself (SPEC 6.1)? The earliest instant after p_now at which
-- a rule driven by the clock alone flips, with no write at all; null when none is known. The loop
-- (`prebuilds run`) sleeps until then, unless a notification or its --interval wakes it first.
-- The rules are in next_change_after; this PL/pgSQL wrapper plans them once per connection, as
-- reconciliation_actions_at does the plan (planning them cost more than running them).

create function prebuilds.next_change_at(p_now timestamptz)
returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    return (select n.at from prebuilds.next_change_after(p_now) as n);
end;
$$;

comment on function prebuilds.next_change_at(timestamptz) is
'The earliest instant after p_now at which the plan changes with no write (a TTL expiry, the '
'end of a backoff, a schedule boundary, claims or builds leaving the demand windows, a delete '
'retry, a job timeout, a hard-limit cooldown, a retention); null when none is known. prebuilds '
'run wakes then.';

revoke execute on function prebuilds.next_change_at(timestamptz) from public;
grant execute on function prebuilds.next_change_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/preset_state_at.sql
-- "Why is my pool not being filled?": one row per preset under consideration at p_now (SPEC 3).
-- Operators read it through the view preset_state; tests call it with fixed instants.
-- PL/pgSQL for its cached plan, with preset_plan_at inlined (see reconciliation_actions_at).
-- The plan columns come from preset_plan_at; the claim counts from claim_stats.

create function prebuilds.preset_state_at(p_now timestamptz)
returns table (
    preset_id uuid,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    is_active bool,
    desired int,
    actual int,
    eligible int,
    expired int,
    extraneous int,
    starting int,
    stopping int,
    deleting int,
    pending_cancelable int,
    failures int,
    backoff_until timestamptz,
    hard_limited bool,
    blocked_reason text,
    creates_planned int,
    schedule_note text,
    demand int,
    desired_reason text,
    claims_last_hour int,
    misses_last_hour int,
    last_error text,
    retrying_deletes int,
    quarantined int
)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
rows 200
as $$
begin
    return query
        select
            pp.preset_id,
            pp.organization_name,
            pp.template_name,
            pp.template_version_name,
            pp.preset_name,
            pp.is_active,
            pp.desired,
            pp.actual,
            pp.eligible,
            pp.expired,
            pp.extraneous,
            pp.starting,
            pp.stopping,
            pp.deleting,
            pp.pending_cancelable,
            pp.failures,
            pp.backoff_until,
            pp.hard_limited,
            pp.blocked_reason,
            pp.creates,
            pp.schedule_note,
            pp.demand,
            pp.desired_reason,
            cs.hits,
            cs.misses,
            pp.last_error,
            pp.retrying_deletes,
            pp.quarantined
        from prebuilds.preset_plan_at(p_now) as pp
        -- Claims in the hour before p_now (SPEC 6.2): the minute buckets that started in it,
        -- found through claim_stats' primary key.
        cross join lateral (
            select
                coalesce(sum(c.hits), 0)::int as hits,
                coalesce(sum(c.misses), 0)::int as misses
            from prebuilds.claim_stats as c
            where
                c.preset_id = pp.preset_id
                and c.bucket > p_now - interval '1 hour'
                and c.bucket <= p_now
        ) as cs
        order by
            pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
            pp.preset_id;
end;
$$;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit, '
'why creates are blocked; claims and misses in the last hour; and the self-healing state (last '
'error, deletes being retried, quarantined prebuilds).';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.preset_state_at(timestamptz) from public;
grant execute on function prebuilds.preset_state_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/planned_actions_at.sql
-- Internal: the plan's actions at p_now, in the order to apply them (SPEC 3, 4.4). Cancels and
-- deletes first, then creates interleaved across presets, then informational backoff rows.
-- Actions past settings.max_actions_per_cycle are `deferred`: the next cycles take them.
-- Inlinable (plain SQL, no SET options): reconciliation_actions_at wraps it with a cached plan.

create function prebuilds.planned_actions_at(p_now timestamptz)
returns table (
    seq int,
    preset_id uuid,
    action text,
    workspace_id uuid,
    reason text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    backoff_until timestamptz,
    deferred bool
)
language sql
stable
rows 100
begin atomic
    with
    plan as materialized (
        select pp.* from prebuilds.preset_plan_at(p_now) as pp
    ),

    items as (
        select
            1 as phase,
            w.ordinality as n,
            pl.preset_id,
            w.action,
            w.workspace_id,
            w.reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            null::timestamptz as backoff_until
        from plan as pl
        cross join lateral unnest(pl.work) with ordinality as w (action, workspace_id, reason)
        union all
        select
            2 as phase,
            slot.n,
            pl.preset_id,
            'create' as action,
            null as workspace_id,
            pl.creates_reason as reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            null as backoff_until
        from plan as pl
        cross join lateral generate_series(1, pl.creates) as slot (n)
        union all
        select
            3 as phase,
            1 as n,
            pl.preset_id,
            'backoff' as action,
            null as workspace_id,
            pl.backoff_reason as reason,
            pl.organization_name,
            pl.template_name,
            pl.template_version_name,
            pl.preset_name,
            pl.backoff_until
        from plan as pl
        where pl.blocked_reason = 'backoff'
    ),

    numbered as (
        select
            it.*,
            (
                row_number() over (
                    order by
                        it.phase,
                        -- Creates are interleaved: every preset's first, then every second, …
                        case when it.phase = 2 then it.n end,
                        it.organization_name, it.template_name, it.template_version_name,
                        it.preset_name, it.preset_id, it.n
                )
            )::int as seq
        from items as it
    )

    select
        nb.seq,
        nb.preset_id,
        nb.action,
        nb.workspace_id,
        nb.reason,
        nb.organization_name,
        nb.template_name,
        nb.template_version_name,
        nb.preset_name,
        nb.backoff_until,
        -- Work comes before the backoff notes, so its seq is its rank among the work.
        coalesce(
            nb.phase < 3
            and nb.seq > (select s.max_actions_per_cycle from prebuilds.settings as s),
            false
        ) as deferred
    from numbered as nb
    order by nb.seq;
end;

comment on function prebuilds.planned_actions_at(timestamptz) is
'Internal: every action of the plan at p_now, in order; read it through reconciliation_actions_at, '
'which caches its plan.';

-- >>> db/views/preset_state.sql
-- The state of every preset under consideration, now. For operators in psql and `prebuilds status`.

create view prebuilds.preset_state as
select
    ps.preset_id,
    ps.organization_name,
    ps.template_name,
    ps.template_version_name,
    ps.preset_name,
    ps.is_active,
    ps.desired,
    ps.actual,
    ps.eligible,
    ps.expired,
    ps.extraneous,
    ps.starting,
    ps.stopping,
    ps.deleting,
    ps.pending_cancelable,
    ps.failures,
    ps.backoff_until,
    ps.hard_limited,
    ps.blocked_reason,
    ps.creates_planned,
    ps.schedule_note,
    ps.claims_last_hour,
    ps.misses_last_hour,
    ps.demand,
    ps.desired_reason,
    ps.last_error,
    ps.retrying_deletes,
    ps.quarantined
from prebuilds.preset_state_at(now()) as ps;

comment on view prebuilds.preset_state is
'One row per preset under consideration now (active with a pool, or with prebuilds to clean up). '
'blocked_reason says why a pool is not being filled: paused, hard_limited, backoff or capped.';
comment on column prebuilds.preset_state.preset_id is 'The preset.';
comment on column prebuilds.preset_state.organization_name is 'Organization of the template.';
comment on column prebuilds.preset_state.template_name is 'Template name.';
comment on column prebuilds.preset_state.template_version_name is 'Version the preset belongs to.';
comment on column prebuilds.preset_state.preset_name is 'Preset name.';
comment on column prebuilds.preset_state.is_active is
'Version is the template''s active one and the template is neither deleted nor deprecated.';
comment on column prebuilds.preset_state.desired is
'Pool size wanted now (desired_reason says why); 0 when inactive.';
comment on column prebuilds.preset_state.actual is
'Running prebuilds: latest build a succeeded start, counted in this preset.';
comment on column prebuilds.preset_state.eligible is
'Running, unexpired and ready prebuilds: what a claim can take now (active presets only).';
comment on column prebuilds.preset_state.expired is
'Running prebuilds past the TTL or created before the last invalidation.';
comment on column prebuilds.preset_state.extraneous is
'Unexpired running prebuilds beyond desired; deleted oldest first (active presets only).';
comment on column prebuilds.preset_state.starting is 'Prebuild start builds pending or running.';
comment on column prebuilds.preset_state.stopping is 'Prebuild stop builds pending or running.';
comment on column prebuilds.preset_state.deleting is 'Prebuild delete builds pending or running.';
comment on column prebuilds.preset_state.pending_cancelable is
'Queued initial builds of an inactive preset that the next cycle cancels.';
comment on column prebuilds.preset_state.failures is
'Failed latest start builds within the backoff lookback (since the last resume).';
comment on column prebuilds.preset_state.backoff_until is
'Creates wait until this instant because of recent failures; null when not backing off.';
comment on column prebuilds.preset_state.hard_limited is
'The failure_hard_limit most recent builds all failed; creates stop until prebuilds resume-preset.';
comment on column prebuilds.preset_state.blocked_reason is
'Why wanted creates are held back: paused, hard_limited, backoff or capped; null otherwise.';
comment on column prebuilds.preset_state.creates_planned is 'Creates the next cycle will apply.';
comment on column prebuilds.preset_state.schedule_note is
'Which schedule sets desired now, or why the preset''s schedules are ignored (no time zone, '
'unknown zone, invalid or overlapping expressions); null when the preset has no schedules.';
comment on column prebuilds.preset_state.last_error is
'Error of the most recent failed start counted in failures; null when none.';
comment on column prebuilds.preset_state.retrying_deletes is
'Prebuilds whose delete failed and that wait for (or get) a retry with exponential backoff.';
comment on column prebuilds.preset_state.quarantined is
'Prebuilds whose delete failed more than settings.delete_retry_limit retries: no more retries; '
'see prebuilds.prebuild_failures, then delete them by hand or with prebuilds cleanup.';

comment on column prebuilds.preset_state.claims_last_hour is
'Claims that got a prebuild in the last hour (claim_stats hits).';
comment on column prebuilds.preset_state.misses_last_hour is
'Claims that found no eligible prebuild in the last hour (claim_stats misses).';
comment on column prebuilds.preset_state.demand is
'Demand-sized presets (max_instances set): ceil(claims in settings.demand_window × median build '
'time / window), the claims expected while a replacement builds; null otherwise.';
comment on column prebuilds.preset_state.desired_reason is
'Why desired is what it is: desired_instances, the schedule in force, or the demand sentence '
'(claims × build time = demand, min, max); inactive presets say why they are inactive.';

grant select on prebuilds.preset_state
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/views/reconciliation_actions.sql
-- What the next reconciliation cycle will do, now, and why. The driver's one read goes here.

create view prebuilds.reconciliation_actions as
select
    ra.seq,
    ra.preset_id,
    ra.action,
    ra.workspace_id,
    ra.reason,
    ra.organization_name,
    ra.template_name,
    ra.template_version_name,
    ra.preset_name,
    ra.backoff_until,
    ra.deferred
from prebuilds.reconciliation_actions_at(now()) as ra;

comment on view prebuilds.reconciliation_actions is
'The plan of the next reconciliation cycle: one row per unit of work in the order the driver '
'applies it. Empty while paused.';
comment on column prebuilds.reconciliation_actions.seq is 'Position in the plan, from 1.';
comment on column prebuilds.reconciliation_actions.preset_id is 'Preset the action is for.';
comment on column prebuilds.reconciliation_actions.action is
'cancel (queued initial build of an inactive preset, or beyond an active pool''s need), '
'fail_job (a hung job of a prebuild), delete (a running prebuild, a failed delete due for a '
'retry, a failed or stopped prebuild past its retention), create (one new prebuild, or a hard '
'limit''s probe) or backoff (informational: creates held back).';
comment on column prebuilds.reconciliation_actions.workspace_id is
'Workspace to cancel, delete or whose job to fail; null for create and backoff.';
comment on column prebuilds.reconciliation_actions.reason is 'Why, in words.';
comment on column prebuilds.reconciliation_actions.organization_name is
'Organization of the template.';
comment on column prebuilds.reconciliation_actions.template_name is 'Template name.';
comment on column prebuilds.reconciliation_actions.template_version_name is
'Version of the preset.';
comment on column prebuilds.reconciliation_actions.preset_name is 'Preset name.';
comment on column prebuilds.reconciliation_actions.backoff_until is
'For backoff rows: when creates may resume.';
comment on column prebuilds.reconciliation_actions.deferred is
'Past settings.max_actions_per_cycle: this cycle leaves it for the next ones.';

grant select on prebuilds.reconciliation_actions
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/views/prebuild_failures.sql
-- Every failed build of a prebuild, newest first (SPEC 5.5): what failed, where, when, and the
-- provisioner's error. For operators in psql, `prebuilds failures` and dashboards.
-- Cost follows the rows read: failed jobs come newest first from provisioner_jobs_failed_idx,
-- each joined by unique keys to its build, workspace, preset, version, template and organization;
-- a `limit` or a `failed_at >` filter stops the index scan early.

create view prebuilds.prebuild_failures as
select
    j.completed_at as failed_at,
    o.name as organization_name,
    t.name as template_name,
    v.name as template_version_name,
    p.name as preset_name,
    w.id as workspace_id,
    w.name as workspace_name,
    b.build_number,
    b.transition,
    j.error,
    j.id as job_id,
    j.worker_id,
    coalesce(b.preset_id, w.current_preset_id) as preset_id,
    w.deleted as workspace_deleted
from prebuilds.provisioner_jobs as j
inner join prebuilds.workspace_builds as b on j.id = b.job_id
inner join prebuilds.workspaces as w on b.workspace_id = w.id
inner join prebuilds.template_versions as v on b.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
left join prebuilds.presets as p on coalesce(b.preset_id, w.current_preset_id) = p.id
where
    j.error is not null
    and j.canceled_at is null
    -- The system user's fixed id (SPEC 2), spelled out: the roles that read this view may not
    -- call prebuilds.system_user_id(), and a view's function calls run as its reader.
    and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
order by j.completed_at desc, j.id desc;

comment on view prebuilds.prebuild_failures is
'One row per failed build (start, stop or delete) of a system-owned workspace, newest first: '
'where it failed (organization, template, version, preset, workspace, build), when, and the '
'provisioner''s error.';
comment on column prebuilds.prebuild_failures.failed_at is 'When the job completed as failed.';
comment on column prebuilds.prebuild_failures.organization_name is 'Organization of the template.';
comment on column prebuilds.prebuild_failures.template_name is 'Template name.';
comment on column prebuilds.prebuild_failures.template_version_name is 'Version built.';
comment on column prebuilds.prebuild_failures.preset_name is
'Preset of the build (else the one the workspace counts in); null when neither names one.';
comment on column prebuilds.prebuild_failures.workspace_id is 'The prebuild.';
comment on column prebuilds.prebuild_failures.workspace_name is 'Its name.';
comment on column prebuilds.prebuild_failures.build_number is 'Which build of the workspace.';
comment on column prebuilds.prebuild_failures.transition is 'start, stop or delete.';
comment on column prebuilds.prebuild_failures.error is
'The provisioner''s error (or the reconciler''s, for a job failed as hung).';
comment on column prebuilds.prebuild_failures.job_id is 'The failed provisioner job.';
comment on column prebuilds.prebuild_failures.worker_id is
'Provisioner that ran the job; null when none picked it up.';
comment on column prebuilds.prebuild_failures.preset_id is 'The preset (preset_name).';
comment on column prebuilds.prebuild_failures.workspace_deleted is
'The workspace has been deleted since (cleaned up, or a later delete succeeded).';

grant select on prebuilds.prebuild_failures
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards.

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.preset_counters as c (
        preset_id, shard, created, failed, claimed, missed, hung_failed, delete_retried
    )
    values (
        p_preset_id,
        pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int,
        (p_event = 'missed')::int,
        (p_event = 'hung_failed')::int,
        (p_event = 'delete_retried')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed,
            missed = c.missed + excluded.missed,
            hung_failed = c.hung_failed + excluded.hung_failed,
            delete_retried = c.delete_retried + excluded.delete_retried;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed, claimed, missed, hung_failed or '
'delete_retried) for a preset, in the shard row of the calling backend.';

-- >>> db/functions/count_claim.sql
-- Internal: record one call of claim_prebuild (SPEC 6.2), in the claim's own transaction: its
-- minute in claim_stats and the preset's lifetime counter (claimed or missed), each in the shard
-- row of the calling backend, so concurrent claims of one preset never queue on one row.

create function prebuilds.count_claim(p_preset_id uuid, p_hit bool)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.claim_stats as c (preset_id, bucket, shard, hits, misses)
    values (
        p_preset_id,
        date_trunc('minute', now()),
        pg_backend_pid() % 16,
        p_hit::int,
        (not p_hit)::int
    )
    on conflict (preset_id, bucket, shard) do update
        set
            hits = c.hits + excluded.hits,
            misses = c.misses + excluded.misses;
    select prebuilds.count_prebuild_event(
        p_preset_id, case when p_hit then 'claimed' else 'missed' end
    );
end;

comment on function prebuilds.count_claim(uuid, bool) is
'Internal: counts a claim (p_hit) or a miss of a preset in claim_stats (this minute) and in '
'preset_counters (lifetime), in the shard rows of the calling backend.';

-- >>> db/functions/delete_prebuild.sql
-- Apply a `delete` action: queue a delete build for a prebuild (SPEC 4.5, 5.1, 5.5): a running
-- one, one whose last delete failed and whose retry is due, or a failed or stopped one past
-- settings.failed_prebuild_retention. Called by the driver (through apply_action). Locks the
-- workspace row, so it serialises with claim_prebuild: a workspace claimed first is no longer a
-- prebuild and is left alone.

create function prebuilds.delete_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_settings prebuilds.settings;
    v_transition text;
    v_version_id uuid;
    v_status text;
    v_finished_at timestamptz;
    v_retry bool := false;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.transition, b.template_version_id, j.status, j.completed_at
    into v_transition, v_version_id, v_status, v_finished_at
    from prebuilds.workspace_builds as b
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where b.id = v_workspace.latest_build_id;
    select s.* into v_settings from prebuilds.settings as s;

    if v_transition = 'start' and v_status = 'succeeded' then
        null;  -- a running prebuild
    elsif v_transition = 'delete' and v_status = 'failed' then
        -- A retry: not quarantined, and its backoff is over (SPEC 5.1).
        if greatest(v_workspace.delete_failures, 1) > v_settings.delete_retry_limit
           or prebuilds.delete_retry_at(
               v_finished_at, v_workspace.delete_failures, v_settings.delete_retry_interval
           ) > now() then
            return false;
        end if;
        v_retry := true;
    elsif ((v_transition in ('start', 'stop') and v_status = 'failed')
           or (v_transition = 'stop' and v_status = 'succeeded'))
          and v_finished_at < now() - v_settings.failed_prebuild_retention then
        null;  -- failed or stopped, past the retention (SPEC 5.5)
    else
        -- Never one in flight, canceled, failed or stopped within its retention.
        return false;
    end if;

    perform prebuilds.queue_build(
        p_workspace_id, v_version_id, v_workspace.current_preset_id, 'delete',
        prebuilds.system_user_id()
    );
    if v_retry and v_workspace.current_preset_id is not null then
        perform prebuilds.count_prebuild_event(v_workspace.current_preset_id, 'delete_retried');
    end if;
    return true;
end;
$$;

comment on function prebuilds.delete_prebuild(uuid) is
'Queues a delete build for a prebuild that is still running, whose failed delete is due for a '
'retry (not quarantined), or that failed or stopped longer ago than failed_prebuild_retention; '
'returns false (and does nothing) otherwise: claimed, deleted, in flight, or not due.';

-- >>> db/functions/cancel_prebuild.sql
-- Apply a `cancel` action: a queued initial build of an inactive preset (SPEC 4.5), or of an
-- active preset with more prebuilds on the way than it needs (SPEC 5.3). Called by the driver.
-- Cancels the job only if no provisioner has picked it up (acquire_job locks jobs with skip
-- locked, so exactly one of the two wins), records an orphan delete build
-- completed at once and marks the workspace deleted.

create function prebuilds.cancel_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_build prebuilds.workspace_builds;
    v_preset prebuilds.presets;
    v_active bool;
    v_have int;
    v_orphan_job uuid;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.* into v_build
    from prebuilds.workspace_builds as b
    where b.id = v_workspace.latest_build_id;
    if v_build.build_number is distinct from 1 or v_build.transition <> 'start'
       or v_build.initiator_id <> prebuilds.system_user_id() then
        return false;
    end if;

    -- The preset's row lock (as create_prebuild takes it) makes the surplus below stable.
    select p.* into v_preset
    from prebuilds.presets as p
    where p.id = v_workspace.current_preset_id
    for no key update;
    select coalesce(t.active_version_id = v.id and not t.deleted and not t.deprecated, false)
    into v_active
    from prebuilds.template_versions as v
    join prebuilds.templates as t on t.id = v.template_id
    where v.id = v_preset.template_version_id;
    if v_active is null then
        return false;
    end if;
    if v_active then
        -- An active preset keeps its queued builds unless it still has a surplus: running
        -- unexpired prebuilds plus those starting (this one among them) beyond desired.
        select count(*) into v_have
        from prebuilds.workspaces as w
        join prebuilds.workspace_builds as b on b.id = w.latest_build_id
        join prebuilds.provisioner_jobs as j on j.id = b.job_id
        where w.current_preset_id = v_preset.id
          and w.owner_id = prebuilds.system_user_id()
          and not w.deleted
          and b.transition = 'start'
          and (
              (j.status = 'succeeded' and not prebuilds.is_expired(
                  w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
              or (j.status in ('pending', 'running')
                  and b.initiator_id = prebuilds.system_user_id())
          );
        if v_have <= coalesce(
            (select s.desired from prebuilds.preset_schedule_at(
                v_preset.id, v_preset.scheduling_timezone, now()) as s),
            v_preset.desired_instances,
            0
        ) then
            return false;
        end if;
    end if;

    update prebuilds.provisioner_jobs as j
    set canceled_at = now(), completed_at = now()
    where j.id = v_build.job_id
      and j.started_at is null and j.canceled_at is null and j.completed_at is null;
    if not found then
        return false;
    end if;

    -- The orphan delete: nothing was provisioned, so there is nothing for a provisioner to do.
    v_orphan_job := prebuilds.queue_build(
        p_workspace_id, v_build.template_version_id, v_build.preset_id, 'delete',
        prebuilds.system_user_id()
    );
    update prebuilds.provisioner_jobs
    set started_at = now(), completed_at = now()
    where id = v_orphan_job;

    update prebuilds.workspaces set deleted = true where id = p_workspace_id;
    return true;
end;
$$;

comment on function prebuilds.cancel_prebuild(uuid) is
'Cancels the still-unpicked initial build of a prebuild whose preset is inactive, or active with '
'more prebuilds running and starting than desired (re-checked under the preset''s row lock), '
'records an orphan delete build and marks the workspace deleted; false when a provisioner '
'already took the job, or the preset no longer has a surplus.';

-- >>> db/functions/fail_job.sql
-- Apply a `fail_job` action (SPEC 5.2): complete the hung job of a prebuild's latest build as
-- failed, with an error that says why. Called by the driver (through apply_action). Re-checks,
-- under the workspace's and the job's row locks, that the job is still the system user's, still
-- hung at now(): a heartbeat or a completion that committed first wins, and the provisioner
-- learns from its next heartbeat (false) that the job is no longer its own.

create function prebuilds.fail_job(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_build prebuilds.workspace_builds;
    v_job prebuilds.provisioner_jobs;
    v_settings prebuilds.settings;
    v_error text;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.* into v_build
    from prebuilds.workspace_builds as b
    where b.id = v_workspace.latest_build_id;
    -- People's jobs are never touched (SPEC 5.2).
    if not found or v_build.initiator_id <> prebuilds.system_user_id() then
        return false;
    end if;

    -- The job row lock waits for a heartbeat or a completion in progress, then reads its result.
    select j.* into v_job
    from prebuilds.provisioner_jobs as j
    where j.id = v_build.job_id
    for no key update;
    select s.* into v_settings from prebuilds.settings as s;
    if v_job.status = 'running'
       and coalesce(v_job.updated_at, v_job.started_at)
           < now() - v_settings.job_heartbeat_timeout then
        v_error := 'hung: no heartbeat for '
            || date_trunc('second', now() - coalesce(v_job.updated_at, v_job.started_at))::text;
    elsif v_job.status = 'pending'
          and v_job.created_at < now() - v_settings.job_pending_timeout then
        v_error := 'hung: not picked up for '
            || date_trunc('second', now() - v_job.created_at)::text;
    else
        return false;
    end if;

    update prebuilds.provisioner_jobs as j
    set started_at = coalesce(j.started_at, now()), completed_at = now(), error = v_error
    where j.id = v_job.id;

    -- From here on the ordinary rules apply: a failed start counts for backoff, a failed delete
    -- is retried.
    if v_build.transition = 'delete' then
        update prebuilds.workspaces as w
        set delete_failures = w.delete_failures + 1
        where w.id = p_workspace_id;
    elsif v_build.transition = 'start' and v_build.preset_id is not null then
        perform prebuilds.count_prebuild_event(v_build.preset_id, 'failed');
    end if;
    if v_workspace.current_preset_id is not null then
        perform prebuilds.count_prebuild_event(v_workspace.current_preset_id, 'hung_failed');
    end if;
    return true;
end;
$$;

comment on function prebuilds.fail_job(uuid) is
'Completes the hung job of a prebuild''s latest build as failed (error ''hung: no heartbeat '
'for …'' or ''hung: not picked up for …''), if the build is the system user''s and the job is '
'still running without a recent heartbeat or still pending past job_pending_timeout; false '
'otherwise.';

-- >>> db/functions/cleanup_prebuilds.sql
-- Operator-driven cleanup (SPEC 5.5): delete failed, stopped and quarantined prebuilds now,
-- whatever settings.failed_prebuild_retention says. Called by `prebuilds cleanup` (with its
-- filters, and p_dry_run for --dry-run, which reports exactly the rows a real run would act on).
-- Each workspace is re-checked under its row lock (skip locked: one a claim or a delete is busy
-- with is reported as skipped), so a claimed workspace is never deleted.

create function prebuilds.cleanup_prebuilds(
    p_kinds text[],
    p_organization text default null,
    p_template text default null,
    p_preset text default null,
    p_finished_before timestamptz default null,
    p_limit int default 100,
    p_dry_run bool default true
)
returns table (
    workspace_id uuid,
    workspace_name text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    state text,
    finished_at timestamptz,
    error text,
    outcome text
)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_unknown text;
    v_settings prebuilds.settings;
    v_locked prebuilds.workspaces;
begin
    select k into v_unknown
    from unnest(p_kinds) as k
    where k is null or k not in ('failed', 'stopped', 'quarantined')
    limit 1;
    if found or coalesce(cardinality(p_kinds), 0) = 0 then
        raise exception
            'cleanup_prebuilds: kinds must be some of failed, stopped, quarantined (got %)',
            coalesce(quote_literal(v_unknown), 'none')
            using errcode = 'invalid_parameter_value';
    end if;
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'cleanup_prebuilds: limit must be between 1 and 10000 (got %)', p_limit
            using errcode = 'invalid_parameter_value';
    end if;
    select s.* into v_settings from prebuilds.settings as s;

    for workspace_id, workspace_name, organization_name, template_name, template_version_name,
        preset_name, state, finished_at, error, outcome in
        select
            c.workspace_id, c.workspace_name, c.organization_name, c.template_name,
            c.template_version_name, c.preset_name, c.state, c.finished_at, c.error, null
        from (
            select
                w.id as workspace_id,
                w.name as workspace_name,
                o.name as organization_name,
                t.name as template_name,
                v.name as template_version_name,
                p.name as preset_name,
                case
                    when b.transition = 'delete' and j.status = 'failed'
                         and greatest(w.delete_failures, 1) > v_settings.delete_retry_limit
                        then 'quarantined'
                    when b.transition in ('start', 'stop') and j.status = 'failed'
                        then 'failed ' || b.transition
                    when b.transition = 'stop' and j.status = 'succeeded' then 'stopped'
                end as state,
                j.completed_at as finished_at,
                j.error
            from prebuilds.workspaces as w
            join prebuilds.workspace_builds as b on b.id = w.latest_build_id
            join prebuilds.provisioner_jobs as j on j.id = b.job_id
            join prebuilds.presets as p on p.id = w.current_preset_id
            join prebuilds.template_versions as v on v.id = p.template_version_id
            join prebuilds.templates as t on t.id = v.template_id
            join prebuilds.organizations as o on o.id = t.organization_id
            where w.owner_id = prebuilds.system_user_id()
              and not w.deleted
              and (p_organization is null or o.name = p_organization)
              and (p_template is null or t.name = p_template)
              and (p_preset is null or p.name = p_preset)
              and (p_finished_before is null or j.completed_at < p_finished_before)
        ) as c
        where c.state is not null
          and split_part(c.state, ' ', 1) = any(p_kinds)
        order by c.finished_at, c.workspace_id
        limit p_limit
    loop
        if p_dry_run then
            outcome := 'would delete';
            return next;
            continue;
        end if;
        -- Re-check under the row lock: still a prebuild, and still in the state listed.
        select w.* into v_locked
        from prebuilds.workspaces as w
        where w.id = workspace_id
        for no key update skip locked;
        if not found then
            outcome := 'skipped: busy (a claim or a delete holds it)';
        elsif v_locked.deleted or v_locked.owner_id <> prebuilds.system_user_id() then
            outcome := 'skipped: no longer a prebuild';
        elsif not exists (
            select from prebuilds.workspace_builds as b
            join prebuilds.provisioner_jobs as j on j.id = b.job_id
            where b.id = v_locked.latest_build_id
              and j.completed_at = finished_at
              and (j.status = 'failed' or (b.transition = 'stop' and j.status = 'succeeded'))
        ) then
            outcome := 'skipped: changed since it was listed';
        else
            perform prebuilds.queue_build(
                workspace_id,
                (select b.template_version_id from prebuilds.workspace_builds as b
                 where b.id = v_locked.latest_build_id),
                v_locked.current_preset_id, 'delete', prebuilds.system_user_id()
            );
            outcome := 'delete queued';
        end if;
        return next;
    end loop;
end;
$$;

comment on function prebuilds.cleanup_prebuilds(text[], text, text, text, timestamptz, int, bool) is
'Queues a delete build for each prebuild whose latest build failed (start or stop: kind failed), '
'stopped (stopped) or whose delete failed past delete_retry_limit (quarantined), filtered by '
'organization, template, preset and finish time, oldest first, at most p_limit; each re-checked '
'under its row lock. With p_dry_run, changes nothing and returns the same rows as ''would '
'delete''.';

revoke execute on function prebuilds.cleanup_prebuilds(
    text[], text, text, text, timestamptz, int, bool
) from public;
grant execute on function prebuilds.cleanup_prebuilds(
    text[], text, text, text, timestamptz, int, bool
) to prebuilds_reconciler;

-- >>> db/functions/complete_job.sql
-- Provisioner side: finish a job (SPEC 4.5). A successful delete build marks its workspace
-- deleted, which removes it from the live prebuilds; a failed one counts in
-- workspaces.delete_failures (SPEC 5.1). Completing is also a last heartbeat (updated_at).
-- Used by the provisioners (prebuilds provision, the simulated one) and tests.
-- The completion of a prebuild's or a claim's job notifies the reconciler loops (SPEC 6.1).

create function prebuilds.complete_job(p_job_id uuid, p_error text default null)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_status text;
    v_workspace_id uuid;
    v_transition text;
    v_preset_id uuid;
    v_initiator_id uuid;
begin
    update prebuilds.provisioner_jobs as j
    set completed_at = now(), updated_at = now(), error = nullif(p_error, '')
    where j.id = p_job_id and j.completed_at is null and j.started_at is not null
    returning j.status into v_status;
    if not found then
        if not exists (select from prebuilds.provisioner_jobs as j where j.id = p_job_id) then
            raise exception 'complete_job: no provisioner job with id %', p_job_id
                using errcode = 'no_data_found';
        end if;
        return false;  -- already completed, or never started
    end if;

    select b.workspace_id, b.transition, b.preset_id, b.initiator_id
    into v_workspace_id, v_transition, v_preset_id, v_initiator_id
    from prebuilds.workspace_builds as b
    where b.job_id = p_job_id;
    if v_status = 'succeeded' and v_transition = 'delete' then
        update prebuilds.workspaces set deleted = true where id = v_workspace_id;
    elsif v_status = 'failed' and v_transition = 'delete' then
        -- One more failed delete at the end of the history (SPEC 5.1), unless a later build
        -- was added meanwhile.
        update prebuilds.workspaces as w
        set delete_failures = w.delete_failures + 1
        from prebuilds.workspace_builds as b
        where b.job_id = p_job_id and w.id = b.workspace_id and w.latest_build_id = b.id;
    elsif v_status = 'failed' and v_transition = 'start' and v_preset_id is not null
          and v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.count_prebuild_event(v_preset_id, 'failed');
    end if;
    -- The end of a prebuild's job, or of a claim's (a build with a preset), can change the plan
    -- (SPEC 6.1); people's other jobs cannot.
    if v_preset_id is not null or v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.notify_reconcile('job ' || p_job_id || ' ' || v_status);
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted, a failed delete adds to workspaces.delete_failures. False when the job was already '
'completed or never started.';

-- >>> db/functions/check_settings.sql
-- Trigger function: the settings row is checked when written, with a message that names the
-- setting and its rule (the CHECK constraints stay as the backstop). Called by the trigger
-- settings_check.

create function prebuilds.check_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_problem text;
begin
    if new.backoff_interval <= interval '0' then
        v_problem := format('backoff_interval must be positive (got %s)', new.backoff_interval);
    elsif new.backoff_lookback <= interval '0' then
        v_problem := format('backoff_lookback must be positive (got %s)', new.backoff_lookback);
    elsif new.failure_hard_limit < 0 then
        v_problem := format(
            'failure_hard_limit must be 0 (disabled) or more (got %s)', new.failure_hard_limit
        );
    elsif new.max_pending_creates not between 1 and 100000 then
        v_problem := format(
            'max_pending_creates must be between 1 and 100000, or null for no cap (got %s)',
            new.max_pending_creates
        );
    elsif new.run_retention < interval '1 hour' then
        v_problem := format('run_retention must be at least 1 hour (got %s)', new.run_retention);
    elsif new.max_actions_per_cycle not between 1 and 100000 then
        v_problem := format(
            'max_actions_per_cycle must be between 1 and 100000 (got %s)',
            new.max_actions_per_cycle
        );
    elsif new.claim_stats_retention < interval '1 hour' then
        v_problem := format(
            'claim_stats_retention must be at least 1 hour (got %s)', new.claim_stats_retention
        );
    elsif new.demand_window not between interval '1 minute' and interval '7 days' then
        v_problem := format(
            'demand_window must be between 1 minute and 7 days (got %s)', new.demand_window
        );
    elsif new.default_build_time not between interval '1 second' and interval '1 day' then
        v_problem := format(
            'default_build_time must be between 1 second and 1 day (got %s)',
            new.default_build_time
        );
    elsif new.delete_retry_interval <= interval '0' then
        v_problem := format(
            'delete_retry_interval must be positive (got %s)', new.delete_retry_interval
        );
    elsif new.delete_retry_limit not between 0 and 100 then
        v_problem := format(
            'delete_retry_limit must be between 0 (never retry) and 100 (got %s)',
            new.delete_retry_limit
        );
    elsif new.job_heartbeat_timeout <= interval '0' then
        v_problem := format(
            'job_heartbeat_timeout must be positive (got %s)', new.job_heartbeat_timeout
        );
    elsif new.job_pending_timeout <= interval '0' then
        v_problem := format(
            'job_pending_timeout must be positive (got %s)', new.job_pending_timeout
        );
    elsif new.hard_limit_cooldown <= interval '0' then
        v_problem := format(
            'hard_limit_cooldown must be positive, or null for no probe (got %s)',
            new.hard_limit_cooldown
        );
    elsif new.failed_prebuild_retention <= interval '0' then
        v_problem := format(
            'failed_prebuild_retention must be positive, or null to keep failed and stopped '
            'prebuilds (got %s)',
            new.failed_prebuild_retention
        );
    end if;
    if v_problem is not null then
        raise exception 'invalid setting: %', v_problem
            using errcode = 'check_violation', table = 'settings', schema = 'prebuilds';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_settings() is
'Trigger: rejects a settings value that breaks its rule, with a message naming the setting.';

-- >>> db/triggers/settings_check.sql
-- Settings are validated when written, with messages naming the setting (issue 7).

create trigger settings_check
before insert or update on prebuilds.settings
for each row execute function prebuilds.check_settings();

comment on trigger settings_check on prebuilds.settings is
'Rejects a settings value that breaks its rule, with a message naming the setting.';

-- >>> db/functions/apply_action.sql
-- Apply one planned action of a run and log its outcome, in one transaction (SPEC 4.6). Called
-- by the driver's write connections, one call per action. The action is applied only while the
-- run's plan transaction still holds the reconcile lock (checked after taking the write fence
-- shared, so a later run's start_run waits for this transaction): a driver whose plan connection
-- died stops at its next action, whatever its write connections can still reach.

create function prebuilds.apply_action(
    p_run_id bigint,
    p_seq int,
    p_action text,
    p_preset_id uuid,
    p_workspace_id uuid,
    p_reason text
)
returns table (outcome text, workspace_id uuid)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_run prebuilds.reconciliation_runs;
    v_started timestamptz;
begin
    select r.* into v_run from prebuilds.reconciliation_runs as r where r.id = p_run_id;
    if not found then
        raise exception 'no reconciliation run %', p_run_id using errcode = 'PBL01';
    end if;
    perform pg_catalog.pg_advisory_xact_lock_shared(
        prebuilds.write_fence_key(v_run.lock_key, 1), prebuilds.write_fence_key(v_run.lock_key, 2)
    );
    v_started := clock_timestamp();
    if not prebuilds.reconcile_lock_held(v_run.lock_key, v_run.lock_token) then
        raise exception 'run % lost the reconcile lock (its plan connection, backend %, is gone)',
            p_run_id, v_run.lock_pid
            using errcode = 'PBL01';
    end if;

    case p_action
        when 'create' then
            workspace_id := prebuilds.create_prebuild(p_preset_id);
            outcome := case when workspace_id is null then 'skipped' else 'applied' end;
        when 'delete' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.delete_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        when 'cancel' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.cancel_prebuild(p_workspace_id)
                            then 'applied' else 'skipped' end;
        when 'fail_job' then
            workspace_id := p_workspace_id;
            outcome := case when prebuilds.fail_job(p_workspace_id)
                            then 'applied' else 'skipped' end;
        else
            raise exception 'unknown action %', quote_literal(p_action)
                using errcode = 'invalid_parameter_value';
    end case;

    insert into prebuilds.reconciliation_action_log (
        run_id, seq, preset_id, action, workspace_id, reason, outcome, started_at
    )
    values (
        p_run_id, p_seq, p_preset_id, p_action, workspace_id, p_reason, outcome, v_started
    );
    return next;
end;
$$;

comment on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) is
'Applies one action (create, delete, cancel or fail_job) of run p_run_id and logs its outcome, '
'if the run still holds the reconcile lock (else SQLSTATE PBL01); returns applied or skipped '
'and the workspace.';

revoke execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text) from public;
grant execute on function prebuilds.apply_action(bigint, int, text, uuid, uuid, text)
to prebuilds_reconciler;

-- >>> db/grants/provisioner.sql
-- What the role prebuilds_provisioner may call (SPEC 7): acquire jobs, complete them, report
-- agent lifecycle (heartbeat_job joins them with SPEC 5.2). Kept apart from the functions' own
-- files, whose bodies change with the provisioner work: these statements hold for any body.

alter function prebuilds.acquire_job(text) security definer set search_path = '';
revoke execute on function prebuilds.acquire_job(text) from public;
grant execute on function prebuilds.acquire_job(text) to prebuilds_provisioner;

alter function prebuilds.complete_job(uuid, text) security definer set search_path = '';
revoke execute on function prebuilds.complete_job(uuid, text) from public;
grant execute on function prebuilds.complete_job(uuid, text) to prebuilds_provisioner;

alter function prebuilds.report_agent_lifecycle(uuid, text, text)
security definer set search_path = '';
revoke execute on function prebuilds.report_agent_lifecycle(uuid, text, text) from public;
grant execute on function prebuilds.report_agent_lifecycle(uuid, text, text)
to prebuilds_provisioner;

alter function prebuilds.heartbeat_job(uuid) security definer set search_path = '';
revoke execute on function prebuilds.heartbeat_job(uuid) from public;
grant execute on function prebuilds.heartbeat_job(uuid) to prebuilds_provisioner;

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
