-- Named statements of the benchmark fleet generator (bench/fleet.py), run in this order in one
-- transaction on an empty database migrated to head. Everything is set-based: each statement
-- generates all rows of one kind from generate_series and small temp tables.
--
-- Determinism: ids are md5-based uuids of (seed, kind, number), time-ordered for workspaces,
-- builds, jobs and agents (fleet_time_uuid), and every random draw is fleet_rand(seed, kind,
-- number), so one seed gives the same rows. Timestamps are `anchor - interval`: the anchor is
-- now() at generation (or a caller-supplied instant), because the plan is evaluated at now() and
-- ages (TTL, backoff, in-flight jobs) must be relative to it.
--
-- Staging (temp tables, dropped at commit): fleet_params → fleet_templates → fleet_versions →
-- fleet_presets (with each active preset's situation) → fleet_live (live prebuilds),
-- fleet_user_ws and fleet_hist_ws (workspaces) → fleet_ws, fleet_builds (every workspace and
-- build, with its job outcome and agents) and fleet_latest → the prebuilds tables, in one of
-- three load modes (bench/fleet.py LOAD_STEPS): replica (no per-row triggers, then
-- verify_fleet), trigger_disabled, checked.

-- name: parameters
-- noqa: disable=all
create temp table fleet_params on commit drop as
select
    %(seed)s::int as seed,
    coalesce(%(anchor)s::timestamptz, now()) as anchor,
    %(organizations)s::int as organizations,
    %(templates)s::int as templates,
    %(presets)s::int as presets,
    %(active_presets)s::int as active_presets,
    %(live_prebuilds)s::int as live_prebuilds,
    %(user_workspaces)s::int as user_workspaces,
    %(historical_builds)s::int as historical_builds,
    %(users)s::int as users,
    prebuilds.system_user_id() as system_id;
-- noqa: enable=all

-- name: generation_settings
-- Sorts and hashes of a few million staging rows stay in memory.
set local work_mem = '256MB';

-- name: staging_buffers
-- Staging tables in memory too; possible only before the session's first temp table.
select set_config('temp_buffers', '1GB', true) as temp_buffers
where pg_my_temp_schema() = 0;

-- name: analyze_parameters
-- One row, not the 920 the planner assumes of a fresh temp table.
analyze fleet_params;

-- name: fleet_uuid
-- The id of the n-th object of a kind. Helpers are immutable SQL expressions, so the planner
-- inlines them (explicit ::text casts: `int || text` is only stable and would prevent it).
create or replace function pg_temp.fleet_uuid(p_seed int, p_kind text, p_n bigint)
returns uuid
language sql
immutable
parallel safe
return md5(p_seed::text || ':' || p_kind || ':' || p_n::text)::uuid;

-- name: fleet_time_uuid
-- The id of a workspace, build, job or agent created p_age before the anchor: time-ordered like
-- PostgreSQL 18's uuidv7() (48 bits of milliseconds, then version 7, then 74 bits of md5), so rows
-- inserted in creation order append to their indexes instead of splitting random pages: 2–3 times
-- faster at history10. The time field counts from a fixed origin (2^44 ms before the anchor), not
-- from the Unix epoch, so ids do not depend on the anchor. Coder uses random (v4) ids; what
-- changes is only where in an index recent rows sit, not the size of anything.
create or replace function pg_temp.fleet_time_uuid(
    p_seed int, p_kind text, p_n bigint, p_age interval
)
returns uuid
language sql
immutable
parallel safe
return overlay(
    left(
        lpad(to_hex(17592186044416 - floor(extract(epoch from p_age) * 1000)::bigint), 12, '0')
        || '7' || md5(p_seed::text || ':' || p_kind || ':' || p_n::text),
        32
    ) placing '8' from 17 for 1
)::uuid;

-- name: fleet_rand
-- A uniform draw in [0, 1) for the n-th object of a kind (hash functions, much cheaper than md5).
create or replace function pg_temp.fleet_rand(p_seed int, p_kind text, p_n bigint)
returns double precision
language sql
immutable
parallel safe
return (hashint8extended(p_n, p_seed::bigint + hashtext(p_kind)) & 4294967295)
/ 4294967296.0::double precision;

-- name: plan_templates
-- Templates in organizations (the first organization holds the most, as in Coder's dogfood),
-- every 20th deleted and every 20th (offset 10) deprecated. Each live template's last version is
-- active and holds its share of active_presets; a deleted or deprecated template's last version
-- holds 2 (now inactive) presets; the remaining presets are spread over old versions in
-- proportion to a random weight, so version histories vary in length.
create temp table fleet_templates on commit drop as
with drawn as (
    select
        g.t,
        pg_temp.fleet_uuid(p.seed, 'template', g.t) as id,
        case
            when pg_temp.fleet_rand(p.seed, 'template-main-org', g.t) < 0.4 then 1
            else 1 + floor(pg_temp.fleet_rand(p.seed, 'template-org', g.t) * p.organizations)::int
        end as org_no,
        (array[
            'dogfood', 'coder', 'docker', 'kubernetes', 'aws-linux', 'aws-windows', 'gcp-linux',
            'azure-linux', 'devcontainer', 'jetbrains', 'python', 'go', 'rust', 'node', 'java',
            'data-science', 'gpu-ml', 'nix', 'vscode-web', 'cursor'
        ])[1 + mod(g.t - 1, 20)]
        || case when g.t > 20 then '-' || ((g.t - 1) / 20 + 1) else '' end as name,
        mod(g.t, 20) = 0 as deleted,
        mod(g.t, 20) = 10 or (p.templates between 2 and 9 and g.t = p.templates) as deprecated,
        1 + floor(pg_temp.fleet_rand(p.seed, 'template-weight', g.t) * 6)::int as weight,
        p.anchor
        - interval '1 day' * (7 + 14 * pg_temp.fleet_rand(p.seed, 'template-active-age', g.t))
            as active_created_at,
        interval '1 day' * (300 + 400 * pg_temp.fleet_rand(p.seed, 'template-span', g.t))
            as history_span
    from fleet_params as p
    cross join generate_series(1, p.templates) as g (t)
),

ranked as (
    select
        d.*,
        not d.deleted and not d.deprecated as live,
        row_number() over (
            partition by not d.deleted and not d.deprecated order by d.t
        ) as live_rank,
        count(*) filter (where not d.deleted and not d.deprecated) over () as live_count,
        count(*) filter (where d.deleted or d.deprecated) over () as dead_count,
        sum(d.weight) over (order by d.t) as weight_to,
        sum(d.weight) over () as weight_total
    from drawn as d
),

sized as (
    select
        r.*,
        case
            when r.live
                then
                    p.active_presets * r.live_rank / r.live_count
                    - p.active_presets * (r.live_rank - 1) / r.live_count
            else 2
        end::int as last_presets,
        (
            o.old_total * r.weight_to / r.weight_total
            - o.old_total * (r.weight_to - r.weight) / r.weight_total
        )::int as old_presets
    from ranked as r
    cross join fleet_params as p
    cross join
        lateral (
            select greatest(p.presets - p.active_presets - 2 * r.dead_count, 0) as old_total
        ) as o
)

select
    s.t,
    s.id,
    pg_temp.fleet_uuid(p.seed, 'organization', s.org_no) as org_id,
    s.name,
    s.deleted,
    s.deprecated,
    s.live,
    s.last_presets,
    s.old_presets,
    -- Old versions hold 2, 1, 2, 1, … presets; the last version comes on top.
    case when s.old_presets = 0 then 0 else (2 * (s.old_presets - 1)) / 3 + 1 end + 1 as versions,
    s.active_created_at,
    s.history_span
from sized as s
cross join fleet_params as p;

-- name: plan_versions
-- Versions v1…vN, evenly spaced over the template's history; the last one (active) was pushed
-- 7–21 days before the anchor. retired_at (the next version's push) bounds when history
-- workspaces of a version were created.
create temp table fleet_versions on commit drop as
with versions as (
    select
        t.t,
        g.v,
        pg_temp.fleet_uuid(p.seed, 'version', t.t * 100000 + g.v) as id,
        t.id as template_id,
        t.org_id,
        t.live,
        'v' || g.v as name,
        g.v = t.versions as is_last,
        t.active_created_at
        - t.history_span * (t.versions - g.v)::double precision / t.versions as created_at
    from fleet_templates as t
    cross join fleet_params as p
    cross join generate_series(1, t.versions) as g (v)
)

select
    v.*,
    coalesce(
        lead(v.created_at) over (partition by v.t order by v.v),
        p.anchor - interval '1 day'
    ) as retired_at,
    row_number() over (order by v.t, v.v) as rn_all,
    case when v.live then row_number() over (partition by v.live order by v.t, v.v) end as rn_live
from versions as v
cross join fleet_params as p;

-- name: plan_presets
-- Every preset with its pool settings. Old versions: 70% kept a pool (desired 1–3), some TTLs,
-- invalidations and (2%) schedules: dead data the plan must not pay for. Active presets get their
-- settings from their situation (next statements).
create temp table fleet_presets on commit drop as
with slots as (
    select
        t.t,
        (2 * j.j) / 3 + 1 as v
    from fleet_templates as t
    cross join generate_series(0, t.old_presets - 1) as j (j)
    union all
    select
        t.t,
        t.versions as v
    from fleet_templates as t
    cross join generate_series(1, t.last_presets) as j (j)
),

numbered as (
    select
        s.t,
        s.v,
        row_number() over (partition by s.t, s.v) as slot
    from slots as s
),

keyed as (
    select
        n.*,
        row_number() over (order by n.t, n.v, n.slot) as k
    from numbered as n
)

select
    k.k,
    pg_temp.fleet_uuid(p.seed, 'preset', k.k) as id,
    k.t,
    k.v,
    k.slot,
    v.id as version_id,
    v.name as version_name,
    v.template_id,
    v.org_id,
    v.live,
    v.created_at,
    v.retired_at,
    case
        when v.is_last and v.live then 'active'
        when v.is_last then 'dead'
        else 'old'
    end as role,
    case
        when k.slot <= 8
            then
                (array[
                    'default', 'large', 'gpu', 'small', 'jetbrains', 'vscode', 'data', 'minimal'
                ])[k.slot]
        else 'preset-' || k.slot
    end as name,
    case
        when v.is_last or pg_temp.fleet_rand(p.seed, 'preset-pool', k.k) < 0.7
            then 1 + floor(pg_temp.fleet_rand(p.seed, 'preset-desired', k.k) * 3)::int
    end as desired,
    case
        when pg_temp.fleet_rand(p.seed, 'preset-ttl', k.k) < 0.2
            then
                (array[3600, 28800, 86400])[
                    1 + floor(pg_temp.fleet_rand(p.seed, 'preset-ttl-value', k.k) * 3)::int
                ]
    end as ttl_seconds,
    case
        when pg_temp.fleet_rand(p.seed, 'preset-invalidated', k.k) < 0.05
            then least(v.created_at + interval '2 days', p.anchor - interval '1 day')
    end as last_invalidated_at,
    null::timestamptz as failures_reset_at,
    case
        when pg_temp.fleet_rand(p.seed, 'preset-old-schedule', k.k) < 0.02 then 'UTC'
        else ''
    end as scheduling_timezone,
    null::text as kind,
    0 as pool_size
from keyed as k
inner join fleet_versions as v on k.t = v.t and k.v = v.v
cross join fleet_params as p;

-- name: situations
-- What each live prebuild of a preset looks like, by the preset's situation: `count` prebuilds
-- in `state` (the builds of fleet_state_builds) created at `age` (see plan_live), where
-- count = base + per_size * pool_size (pool_size: desired, or the healthy presets' share of the
-- live_prebuilds budget).
create temp table fleet_situations on commit drop as
select
    s.kind,
    s.ord,
    s.state,
    s.age,
    s.base,
    s.per_size
from (
    values
    ('healthy', 1, 'ready', 'fresh', 0, 1),
    ('not_ready', 1, 'ready', 'fresh', -1, 1),
    ('not_ready', 2, 'not_ready', 'fresh', 1, 0),
    ('missing', 1, 'ready', 'fresh', -2, 1),
    ('surplus', 1, 'ready', 'fresh', 1, 1),
    ('ttl_expired', 1, 'ready', 'fresh', -1, 1),
    ('ttl_expired', 2, 'ready', 'ttl_expired', 2, 0),
    ('invalidated', 1, 'ready', 'fresh', -1, 1),
    ('invalidated', 2, 'ready', 'before_invalidation', 2, 0),
    ('starting', 1, 'ready', 'fresh', -3, 1),
    ('starting', 2, 'start_pending', 'in_flight', 1, 0),
    ('starting', 3, 'start_running', 'in_flight', 1, 0),
    ('stopping', 1, 'ready', 'fresh', 0, 1),
    ('stopping', 2, 'stopping', 'fresh', 1, 0),
    ('stopping', 3, 'stopped', 'fresh', 1, 0),
    ('deleting', 1, 'ready', 'fresh', 0, 1),
    ('deleting', 2, 'deleting', 'fresh', 1, 0),
    -- Not hard-limited (the 3 most recent: failed, ready, failed); 8 failures in the last 37
    -- minutes, the last 2 minutes ago: backoff until about 6 minutes after the anchor.
    ('backoff', 1, 'ready', 'fresh', -2, 1),
    ('backoff', 2, 'ready', 'recent', 1, 0),
    ('backoff', 3, 'failed', 'recent_failure', 8, 0),
    -- The 3 most recent builds failed (5, 15 and 25 minutes ago), one more 3 hours ago.
    ('hard_limited', 1, 'ready', 'fresh', -1, 1),
    ('hard_limited', 2, 'failed', 'hard_failure', 3, 0),
    ('hard_limited', 3, 'failed', 'old_failure', 1, 0),
    ('scheduled', 1, 'ready', 'fresh', 0, 1),
    ('canceled', 1, 'ready', 'fresh', -1, 1),
    ('canceled', 2, 'canceled', 'fresh', 1, 0),
    -- Was hard-limited; resume_preset ran 20 minutes ago, after the 3 failures.
    ('resumed', 1, 'ready', 'fresh', -1, 1),
    ('resumed', 2, 'failed', 'before_reset', 3, 0),
    -- desired_instances set to null on an active preset: its prebuilds are surplus.
    ('pool_removed', 1, 'ready', 'fresh', 2, 0),
    -- Inactive presets with work left: running prebuilds to delete, queued builds to cancel (one
    -- more already picked up by a provisioner, so not cancelable).
    ('outdated_running', 1, 'ready', 'outdated', 2, 0),
    ('outdated_running', 2, 'not_ready', 'outdated', 1, 0),
    ('outdated_queued', 1, 'start_pending', 'queued', 2, 0),
    ('outdated_queued', 2, 'start_running', 'queued', 1, 0),
    ('deprecated_running', 1, 'ready', 'fresh', 2, 0)
) as s (kind, ord, state, age, base, per_size);

-- name: assign_active_situations
-- Active presets take situations from a fixed cycle of 24 (10 healthy), in an order shuffled by
-- the seed, so every scenario with 16+ active presets has every situation.
update fleet_presets as fp
set
    kind = r.kind,
    desired = case
        when r.kind = 'pool_removed' then null
        else
            greatest(
                1 + floor(pg_temp.fleet_rand(p.seed, 'active-desired', fp.k) * 5)::int,
                case
                    when r.kind in ('missing', 'backoff', 'starting') then 3
                    when
                        r.kind in (
                            'hard_limited', 'invalidated', 'not_ready', 'canceled', 'resumed'
                        )
                        then 2
                    else 1
                end
            )
    end,
    ttl_seconds = case
        when r.kind = 'ttl_expired'
            then
                (array[43200, 86400])[
                    1 + floor(pg_temp.fleet_rand(p.seed, 'active-ttl', fp.k) * 2)::int
                ]
        when
            r.kind = 'healthy' and pg_temp.fleet_rand(p.seed, 'active-healthy-ttl', fp.k) < 0.2
            then 86400
    end,
    last_invalidated_at = case
        when r.kind = 'invalidated' then p.anchor - interval '11 hours'
        -- Invalidated before any of its prebuilds was created: no effect.
        when
            r.kind = 'healthy'
            and pg_temp.fleet_rand(p.seed, 'active-healthy-invalidated', fp.k) < 0.1
            then p.anchor - interval '3 days'
    end,
    failures_reset_at = case
        when r.kind = 'resumed' then p.anchor - interval '20 minutes'
        when
            r.kind = 'healthy'
            and pg_temp.fleet_rand(p.seed, 'active-healthy-reset', fp.k) < 0.05
            then p.anchor - interval '2 days'
    end,
    scheduling_timezone = case
        when r.kind = 'scheduled' and pg_temp.fleet_rand(p.seed, 'active-tz', fp.k) < 0.5
            then 'UTC'
        when r.kind = 'scheduled' then 'Europe/Berlin'
        else ''
    end
from
    (
        select
            ap.k,
            (array[
                'backoff', 'hard_limited', 'surplus', 'ttl_expired', 'healthy', 'missing',
                'starting', 'healthy', 'invalidated', 'not_ready', 'healthy', 'deleting',
                'stopping', 'healthy', 'scheduled', 'canceled', 'healthy', 'resumed', 'healthy',
                'healthy', 'pool_removed', 'healthy', 'healthy', 'healthy'
            ])[
                1 + mod(
                    row_number() over (
                        order by pg_temp.fleet_rand(pp.seed, 'active-situation', ap.k), ap.k
                    ) - 1,
                    24
                )
            ] as kind
        from fleet_presets as ap
        cross join fleet_params as pp
        where ap.role = 'active'
    ) as r,
    fleet_params as p
where fp.k = r.k;

-- name: assign_inactive_situations
-- A few presets of the previous version of live templates still hold running prebuilds or
-- queued initial builds (about one per 25 active presets, at least 2); the first preset of each
-- deprecated template still holds running prebuilds.
update fleet_presets as fp
set
    kind = case
        when fp.role = 'dead' then 'deprecated_running'
        when mod(c.rank, 2) = 1 then 'outdated_running'
        else 'outdated_queued'
    end,
    desired = coalesce(fp.desired, 2)
from
    (
        select
            op.k,
            row_number() over (
                order by pg_temp.fleet_rand(p.seed, 'inactive-situation', op.k), op.k
            ) as rank,
            greatest(2, round(p.active_presets / 25.0)) as wanted
        from fleet_presets as op
        inner join fleet_templates as t on op.t = t.t
        cross join fleet_params as p
        where t.live and op.v = t.versions - 1 and op.slot = 1
        union all
        select
            dp.k,
            1 as rank,
            1 as wanted
        from fleet_presets as dp
        inner join fleet_templates as t on dp.t = t.t
        where dp.role = 'dead' and t.deprecated and dp.slot = 1
    ) as c
where fp.k = c.k and c.rank <= c.wanted;

-- name: size_pools
-- Non-healthy presets hold what their situation says; healthy presets share what is left of
-- live_prebuilds in proportion to a random weight (each 1–5), and desire what they hold.
with used as (
    select coalesce(sum(greatest(s.base + s.per_size * coalesce(fp.desired, 0), 0)), 0) as n
    from fleet_presets as fp
    inner join fleet_situations as s on fp.kind = s.kind
    where fp.kind <> 'healthy'
),

weighted as (
    select
        fp.k,
        1 + floor(pg_temp.fleet_rand(p.seed, 'healthy-weight', fp.k) * 5)::int as weight
    from fleet_presets as fp
    cross join fleet_params as p
    where fp.kind = 'healthy'
),

shares as (
    select
        w.k,
        w.weight,
        sum(w.weight) over (order by w.k) as weight_to,
        sum(w.weight) over () as weight_total,
        greatest(p.live_prebuilds - u.n, 0) as budget
    from weighted as w
    cross join used as u
    cross join fleet_params as p
),

sized as (
    select
        fp.k,
        case
            when fp.kind = 'healthy'
                then
                    greatest(least(
                        sh.budget * sh.weight_to / sh.weight_total
                        - sh.budget * (sh.weight_to - sh.weight) / sh.weight_total,
                        5
                    ), 1)::int
            else coalesce(fp.desired, 0)
        end as pool_size
    from fleet_presets as fp
    left join shares as sh on fp.k = sh.k
    where fp.kind is not null
)

update fleet_presets as fp
set
    pool_size = sz.pool_size,
    desired = case when fp.kind = 'healthy' then sz.pool_size else fp.desired end
from sized as sz
where fp.k = sz.k;

-- name: number_pooled_presets
-- Pick lists for the workspaces below: presets that have (or had) a pool, numbered over all
-- templates and over live templates only.
alter table fleet_presets
add column rn_pooled_all bigint,
add column rn_pooled_live bigint;

-- name: fill_pooled_numbers
update fleet_presets as fp
set
    rn_pooled_all = n.rn_all,
    rn_pooled_live = case when fp.live then n.rn_live end
from
    (
        select
            pp.k,
            row_number() over (order by pp.k) as rn_all,
            row_number() over (partition by pp.live order by pp.k) as rn_live
        from fleet_presets as pp
        where pp.desired is not null
    ) as n
where fp.k = n.k;

-- name: plan_live
-- Live prebuilds: every (situation row, item) of every preset with a situation. Ages: `fresh`
-- 2–8 hours (younger than any TTL, after any invalidation), `ttl_expired` 2+ hours past the
-- TTL, `before_invalidation` before last_invalidated_at, `recent` 3 minutes, failures minutes
-- ago, `in_flight`/`queued` minutes ago, `outdated` before the active version was pushed.
create temp table fleet_live on commit drop as
with items as (
    select
        row_number() over (order by fp.k, s.ord, g.item) as n,
        fp.k,
        fp.id as preset_id,
        fp.version_id,
        fp.template_id,
        fp.org_id,
        fp.kind,
        fp.ttl_seconds,
        fp.last_invalidated_at,
        fp.failures_reset_at,
        t.active_created_at,
        s.state,
        s.age,
        g.item
    from fleet_presets as fp
    inner join fleet_situations as s on fp.kind = s.kind
    inner join fleet_templates as t on fp.t = t.t
    cross join generate_series(1, greatest(s.base + s.per_size * fp.pool_size, 0)) as g (item)
),

aged as (
    select
        i.*,
        case i.age
            when 'fresh'
                then
                    p.anchor - interval '2 hours' - interval '50 minutes' * (i.item - 1)
                    - interval '40 minutes' * pg_temp.fleet_rand(p.seed, 'live-age', i.n)
            when 'ttl_expired'
                then
                    p.anchor - make_interval(secs => i.ttl_seconds) - interval '2 hours'
                    - interval '1 hour' * (i.item - 1)
            when 'before_invalidation'
                then i.last_invalidated_at - interval '1 hour' * i.item
            when 'recent' then p.anchor - interval '3 minutes'
            when 'recent_failure'
                then p.anchor - interval '2 minutes' - interval '5 minutes' * (i.item - 1)
            when 'hard_failure'
                then p.anchor - interval '5 minutes' - interval '10 minutes' * (i.item - 1)
            when 'old_failure'
                then p.anchor - interval '3 hours' - interval '1 hour' * (i.item - 1)
            when 'before_reset' then i.failures_reset_at - interval '5 minutes' * i.item
            when 'in_flight' then p.anchor - interval '1 minute' * i.item
            when 'queued' then p.anchor - interval '3 minutes' * i.item
            when 'outdated' then i.active_created_at - interval '3 hours' * i.item
        end as created_at
    from items as i
    cross join fleet_params as p
)

select
    a.*,
    pg_temp.fleet_time_uuid(p.seed, 'live-workspace', a.n, p.anchor - a.created_at)
        as workspace_id
from aged as a
cross join fleet_params as p;

-- name: plan_user_workspaces
-- Live workspaces of people: a quarter are claimed prebuilds (build 1 by the system user with a
-- preset, build 2 the claim), the rest built by their owner from any version of a live template;
-- 2–8 builds each, alternating start and stop.
create temp table fleet_user_ws on commit drop as
with drawn as (
    select
        g.w,
        pg_temp.fleet_rand(p.seed, 'user-workspace-claimed', g.w) < 0.25 as claimed,
        pg_temp.fleet_uuid(
            p.seed, 'user',
            1 + floor(pg_temp.fleet_rand(p.seed, 'user-workspace-owner', g.w) * p.users)::int
        ) as owner_id,
        2 + floor(pg_temp.fleet_rand(p.seed, 'user-workspace-builds', g.w) * 7)::int as builds,
        pg_temp.fleet_rand(p.seed, 'user-workspace-pick', g.w) as pick,
        pg_temp.fleet_rand(p.seed, 'user-workspace-age', g.w) as age
    from fleet_params as p
    cross join generate_series(1, p.user_workspaces) as g (w)
),

counts as (
    select
        (select count(*) from fleet_presets as fp where fp.rn_pooled_live is not null) as presets,
        (select count(*) from fleet_versions as v where v.rn_live is not null) as versions
)

select
    d.w,
    pg_temp.fleet_time_uuid(p.seed, 'user-workspace', d.w, p.anchor - w.created_at) as id,
    d.claimed,
    d.owner_id,
    d.builds,
    coalesce(fp.version_id, v.id) as version_id,
    fp.id as preset_id,
    coalesce(fp.template_id, v.template_id) as template_id,
    coalesce(fp.org_id, v.org_id) as org_id,
    w.created_at
from drawn as d
cross join counts as c
cross join fleet_params as p
left join fleet_presets as fp
    on d.claimed and fp.rn_pooled_live = 1 + floor(d.pick * c.presets)::int
left join fleet_versions as v
    on not d.claimed and v.rn_live = 1 + floor(d.pick * c.versions)::int
cross join
    lateral (
        select
            coalesce(fp.created_at, v.created_at)
            + (p.anchor - interval '3 hours' - coalesce(fp.created_at, v.created_at)) * d.age
                as created_at
    ) as w;

-- name: plan_history
-- Deleted workspaces, until their builds reach historical_builds: 45% deleted prebuilds (start,
-- delete), 35% claimed prebuilds used for weeks (4–19 builds), 20% people's own workspaces
-- (3–12 builds); each created while its version was current.
create temp table fleet_hist_ws on commit drop as
with drawn as materialized (
    select
        g.h,
        case
            when pg_temp.fleet_rand(p.seed, 'history-kind', g.h) < 0.45 then 'prebuild'
            when pg_temp.fleet_rand(p.seed, 'history-kind', g.h) < 0.80 then 'claimed'
            else 'user'
        end as kind,
        pg_temp.fleet_rand(p.seed, 'history-builds', g.h) as r_builds
    from fleet_params as p
    cross join generate_series(1, p.historical_builds / 3 + 10) as g (h)
),

sized as (
    select
        d.h,
        d.kind,
        case d.kind
            when 'prebuild' then 2
            when 'claimed' then 4 + floor(d.r_builds * 16)::int
            else 3 + floor(d.r_builds * 10)::int
        end as builds
    from drawn as d
),

counted as (
    select
        s.*,
        sum(s.builds) over (order by s.h) as builds_to
    from sized as s
),

kept as (
    select
        c.h,
        c.kind,
        c.builds,
        case
            when c.kind = 'prebuild' then p.system_id
            else
                pg_temp.fleet_uuid(
                    p.seed, 'user',
                    1 + floor(pg_temp.fleet_rand(p.seed, 'history-owner', c.h) * p.users)::int
                )
        end as owner_id,
        pg_temp.fleet_rand(p.seed, 'history-pick', c.h) as pick,
        pg_temp.fleet_rand(p.seed, 'history-age', c.h) as age,
        pg_temp.fleet_rand(p.seed, 'history-span', c.h) as span
    from counted as c
    cross join fleet_params as p
    where c.builds_to - c.builds < p.historical_builds
),

counts as (
    select
        (select count(*) from fleet_presets as fp where fp.rn_pooled_all is not null) as presets,
        (select count(*) from fleet_versions) as versions
)

select
    k.h,
    k.kind,
    k.builds,
    pg_temp.fleet_time_uuid(p.seed, 'history-workspace', k.h, p.anchor - w.created_at) as id,
    k.owner_id,
    coalesce(fp.version_id, v.id) as version_id,
    fp.id as preset_id,
    coalesce(fp.template_id, v.template_id) as template_id,
    coalesce(fp.org_id, v.org_id) as org_id,
    w.created_at,
    -- From the first build to the delete; at least 10 minutes, ending 10 minutes before the
    -- anchor at the latest.
    least(
        case k.kind
            when 'prebuild' then interval '10 minutes' + interval '3 days' * k.span
            when 'claimed' then interval '1 day' + interval '60 days' * k.span
            else interval '1 hour' + interval '30 days' * k.span
        end,
        p.anchor - interval '10 minutes' - w.created_at
    ) as lifetime
from kept as k
cross join counts as c
cross join fleet_params as p
left join fleet_presets as fp
    on k.kind <> 'user' and fp.rn_pooled_all = 1 + floor(k.pick * c.presets)::int
left join fleet_versions as v
    on k.kind = 'user' and v.rn_all = 1 + floor(k.pick * c.versions)::int
cross join
    lateral (
        select
            coalesce(fp.created_at, v.created_at)
            + (coalesce(fp.retired_at, v.retired_at) - coalesce(fp.created_at, v.created_at))
            * k.age as created_at
    ) as w;

-- name: plan_workspaces
-- Every workspace of the fleet.
create temp table fleet_ws on commit drop as
select
    l.workspace_id as id,
    l.org_id,
    l.template_id,
    p.system_id as owner_id,
    'prebuild-' || left(replace(l.workspace_id::text, '-', ''), 12) as name,
    l.created_at,
    false as deleted
from fleet_live as l
cross join fleet_params as p
union all
select
    u.id,
    u.org_id,
    u.template_id,
    u.owner_id,
    case when u.claimed then 'claimed-' else 'ws-' end || u.w as name,
    u.created_at,
    false as deleted
from fleet_user_ws as u
union all
select
    h.id,
    h.org_id,
    h.template_id,
    h.owner_id,
    case
        when h.kind = 'prebuild' then 'prebuild-' || left(replace(h.id::text, '-', ''), 12)
        else 'old-' || h.h
    end as name,
    h.created_at,
    true as deleted
from fleet_hist_ws as h;

-- name: plan_live_builds
-- Builds of live prebuilds: build 1 (start, by the system user, with the preset) and for some
-- states a second build. `outcome` becomes the job's timestamps in insert_jobs; `agent_state`
-- the lifecycle of its agent (`sidecar_state`: a second agent).
create temp table fleet_builds on commit drop as
with layout as (
    select
        s.state,
        s.build_number,
        s.transition,
        s.outcome,
        s.agent_state,
        s.timing
    from (
        values
        ('ready', 1, 'start', 'succeeded', 'ready', 'created'),
        ('not_ready', 1, 'start', 'succeeded', 'starting', 'created'),
        ('start_pending', 1, 'start', 'pending', null, 'created'),
        ('start_running', 1, 'start', 'running', null, 'created'),
        ('failed', 1, 'start', 'failed', null, 'created'),
        ('canceled', 1, 'start', 'canceled', null, 'created'),
        ('stopping', 1, 'start', 'succeeded', 'shutting_down', 'created'),
        ('stopping', 2, 'stop', 'running', null, 'in_flight'),
        ('stopped', 1, 'start', 'succeeded', 'off', 'created'),
        ('stopped', 2, 'stop', 'succeeded', null, 'later'),
        ('deleting', 1, 'start', 'succeeded', 'shutting_down', 'created'),
        ('deleting', 2, 'delete', 'pending_or_running', null, 'in_flight')
    ) as s (state, build_number, transition, outcome, agent_state, timing)
)

select
    l.workspace_id as ws_id,
    ly.build_number,
    l.n * 10 + ly.build_number as build_key,
    pg_temp.fleet_time_uuid(
        p.seed, 'live-build', l.n * 10 + ly.build_number, p.anchor - bt.created_at
    ) as id,
    pg_temp.fleet_time_uuid(
        p.seed, 'live-job', l.n * 10 + ly.build_number, p.anchor - bt.created_at
    ) as job_id,
    l.version_id as template_version_id,
    l.preset_id,
    ly.transition,
    p.system_id as initiator_id,
    bt.created_at,
    case
        when ly.outcome <> 'pending_or_running' then ly.outcome
        when mod(l.n, 2) = 0 then 'running'
        else 'pending'
    end as outcome,
    -- Not ready: either the only agent is starting, or a second agent is.
    case
        when ly.agent_state = 'starting' and mod(l.n, 2) = 0 then 'ready'
        else ly.agent_state
    end as agent_state,
    case
        when ly.agent_state = 'starting' and mod(l.n, 2) = 0 then 'starting'
    end as sidecar_state
from fleet_live as l
inner join layout as ly on l.state = ly.state
cross join fleet_params as p
cross join
    lateral (
        select
            case ly.timing
                when 'created' then l.created_at
                when 'in_flight' then p.anchor - interval '1 minute' * (1 + mod(l.n, 4))
                else l.created_at + interval '40 minutes'
            end as created_at
    ) as bt;

-- name: plan_user_builds
-- Builds of people's live workspaces, evenly spaced up to an hour before the anchor. Claimed:
-- start (system, preset), start (claim, preset), then stop, start, …; others start, stop, ….
-- 5% of latest builds failed, 3% of earlier ones; the latest successful start's agent is ready
-- (90%), starting or start_error, earlier agents are off.
insert into fleet_builds
select
    u.id as ws_id,
    b.b as build_number,
    10000000000 + u.w * 100 + b.b as build_key,
    pg_temp.fleet_time_uuid(p.seed, 'user-build', u.w * 100 + b.b, p.anchor - bt.created_at)
        as id,
    pg_temp.fleet_time_uuid(p.seed, 'user-job', u.w * 100 + b.b, p.anchor - bt.created_at)
        as job_id,
    u.version_id as template_version_id,
    case when u.claimed and b.b <= 2 then u.preset_id end as preset_id,
    x.transition,
    case when u.claimed and b.b = 1 then p.system_id else u.owner_id end as initiator_id,
    bt.created_at,
    x.outcome,
    case
        when x.transition <> 'start' or x.outcome <> 'succeeded' then null
        when b.b < u.builds then 'off'
        when x.r_agent < 0.90 then 'ready'
        when x.r_agent < 0.95 then 'starting'
        else 'start_error'
    end as agent_state,
    null as sidecar_state
from fleet_user_ws as u
cross join fleet_params as p
cross join generate_series(1, u.builds) as b (b)
cross join
    lateral (
        select
            u.created_at
            + (p.anchor - interval '1 hour' - u.created_at)
            * (b.b - 1)::double precision / u.builds as created_at
    ) as bt
cross join
    lateral (
        select
            case
                when u.claimed and b.b <= 2 then 'start'
                when u.claimed and mod(b.b, 2) = 1 then 'stop'
                when u.claimed then 'start'
                when mod(b.b, 2) = 1 then 'start'
                else 'stop'
            end as transition,
            case
                when
                    pg_temp.fleet_rand(p.seed, 'user-build-failed', u.w * 100 + b.b)
                    < case when b.b = u.builds then 0.05 else 0.03 end
                    then 'failed'
                else 'succeeded'
            end as outcome,
            pg_temp.fleet_rand(p.seed, 'user-build-agent', u.w * 100 + b.b) as r_agent
    ) as x;

-- name: plan_history_builds
-- Builds of deleted workspaces, spread over their lifetime; the last is a successful delete.
-- Prebuilds: start (10% failed, 2% canceled), delete; both by the system user with the preset.
-- Claimed: start (system), start (claim), stop, start, …, delete. People's: start, stop, …,
-- delete. 4% of other builds failed. Agents of successful starts are off.
insert into fleet_builds
select
    h.id as ws_id,
    b.b as build_number,
    20000000000 + h.h * 100 + b.b as build_key,
    pg_temp.fleet_time_uuid(p.seed, 'history-build', h.h * 100 + b.b, p.anchor - bt.created_at)
        as id,
    pg_temp.fleet_time_uuid(p.seed, 'history-job', h.h * 100 + b.b, p.anchor - bt.created_at)
        as job_id,
    h.version_id as template_version_id,
    case
        when h.kind = 'prebuild' or (h.kind = 'claimed' and b.b <= 2) then h.preset_id
    end as preset_id,
    x.transition,
    case
        when h.kind = 'prebuild' or (h.kind = 'claimed' and b.b = 1) then p.system_id
        else h.owner_id
    end as initiator_id,
    bt.created_at,
    x.outcome,
    case when x.transition = 'start' and x.outcome = 'succeeded' then 'off' end as agent_state,
    null as sidecar_state
from fleet_hist_ws as h
cross join fleet_params as p
cross join generate_series(1, h.builds) as b (b)
cross join
    lateral (
        select
            h.created_at
            + h.lifetime * (b.b - 1)::double precision / (h.builds - 1) as created_at
    ) as bt
cross join
    lateral (
        select
            case
                when b.b = h.builds then 'delete'
                when h.kind = 'claimed' and b.b <= 2 then 'start'
                when h.kind = 'claimed' and mod(b.b, 2) = 1 then 'stop'
                when h.kind = 'claimed' then 'start'
                when mod(b.b, 2) = 1 then 'start'
                else 'stop'
            end as transition,
            pg_temp.fleet_rand(p.seed, 'history-build-outcome', h.h * 100 + b.b) as r
    ) as t
cross join
    lateral (
        select
            t.transition,
            case
                when b.b = h.builds then 'succeeded'
                when h.kind = 'prebuild' and t.r < 0.10 then 'failed'
                when h.kind = 'prebuild' and t.r < 0.12 then 'canceled'
                when h.kind <> 'prebuild' and t.r < 0.04 then 'failed'
                else 'succeeded'
            end as outcome
    ) as x;

-- name: plan_latest_builds
-- What workspace_builds_track_latest leaves after inserts in build_number order: the highest
-- build, and the preset of the highest build that names one.
create temp table fleet_latest on commit drop as
select
    b.ws_id,
    max(b.build_number) as build_number,
    (array_agg(b.id order by b.build_number desc))[1] as id,
    (array_agg(b.transition order by b.build_number desc))[1] as transition,
    (array_agg(b.created_at order by b.build_number desc))[1] as created_at,
    (array_agg(b.initiator_id order by b.build_number desc))[1] as initiator_id,
    (array_agg(b.job_id order by b.build_number desc))[1] as job_id,
    (array_agg(b.preset_id order by b.build_number desc) filter (
        where b.preset_id is not null
    ))[1] as preset_id
from fleet_builds as b
group by b.ws_id;

-- name: insert_users
insert into prebuilds.users (id, username)
select
    pg_temp.fleet_uuid(p.seed, 'user', g.u) as id,
    (array[
        'alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy',
        'kate', 'leo', 'mallory', 'nina', 'oscar', 'peggy', 'quinn', 'rupert', 'sybil', 'trent',
        'ursula', 'victor', 'wendy', 'xavier'
    ])[1 + mod(g.u - 1, 24)] || '.' || g.u as username
from fleet_params as p
cross join generate_series(1, p.users) as g (u)
order by g.u;

-- name: insert_organizations
insert into prebuilds.organizations (id, name)
select
    pg_temp.fleet_uuid(p.seed, 'organization', g.o) as id,
    case
        when g.o <= 8
            then
                (array[
                    'coder', 'acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne'
                ])[g.o]
        else 'org-' || g.o
    end as name
from fleet_params as p
cross join generate_series(1, p.organizations) as g (o)
order by g.o;

-- name: insert_templates
insert into prebuilds.templates (id, organization_id, name, deleted, deprecated)
select
    t.id,
    t.org_id,
    t.name,
    t.deleted,
    t.deprecated
from fleet_templates as t
order by t.t;

-- name: insert_template_versions
insert into prebuilds.template_versions (id, template_id, name, created_at)
select
    v.id,
    v.template_id,
    v.name,
    v.created_at
from fleet_versions as v
order by v.created_at, v.id;

-- name: set_active_versions
update prebuilds.templates as t
set active_version_id = v.id
from fleet_versions as v
where t.id = v.template_id and v.is_last;

-- name: insert_presets
insert into prebuilds.presets (
    id,
    template_version_id,
    name,
    desired_instances,
    ttl_seconds,
    scheduling_timezone,
    last_invalidated_at,
    failures_reset_at,
    created_at
)
select
    fp.id,
    fp.version_id,
    fp.name,
    fp.desired,
    fp.ttl_seconds,
    fp.scheduling_timezone,
    fp.last_invalidated_at,
    fp.failures_reset_at,
    fp.created_at
from fleet_presets as fp
order by fp.k;

-- name: insert_preset_schedules
-- Scheduled active presets: more during working hours, none at night (valid, not overlapping).
-- Old presets with a time zone kept a working-hours schedule.
insert into prebuilds.preset_schedules (
    id, preset_id, cron_expression, desired_instances, created_at
)
select
    pg_temp.fleet_uuid(p.seed, 'schedule', fp.k * 10 + s.n) as id,
    fp.id as preset_id,
    s.cron_expression,
    s.desired_instances,
    fp.created_at + interval '1 minute' * s.n as created_at
from fleet_presets as fp
cross join fleet_params as p
cross join
    lateral (
        values
        (1, '* 9-18 * * 1-5', fp.desired + 2, fp.kind = 'scheduled'),
        (2, '* 0-6 * * *', 0, fp.kind = 'scheduled'),
        (1, '* 8-17 * * 1-5', 2, fp.role <> 'active' and fp.scheduling_timezone <> '')
    ) as s (n, cron_expression, desired_instances, wanted)
where s.wanted
order by fp.k, s.n;

-- name: insert_workspaces
-- Without the latest-build pointers: the trigger (or set_latest_builds) sets them.
insert into prebuilds.workspaces (
    id, organization_id, template_id, owner_id, name, created_at, deleted
)
select
    w.id,
    w.org_id,
    w.template_id,
    w.owner_id,
    w.name,
    w.created_at,
    w.deleted
from fleet_ws as w
order by w.created_at, w.id;

-- name: insert_workspaces_with_latest
-- With the pointers the trigger would set (replica mode: the builds are not there yet).
insert into prebuilds.workspaces (
    id,
    organization_id,
    template_id,
    owner_id,
    name,
    created_at,
    deleted,
    latest_build_id,
    latest_build_number,
    current_preset_id,
    latest_build_transition,
    latest_build_created_at,
    latest_build_initiator_id,
    latest_build_job_id
)
select
    w.id,
    w.org_id,
    w.template_id,
    w.owner_id,
    w.name,
    w.created_at,
    w.deleted,
    l.id as latest_build_id,
    l.build_number as latest_build_number,
    l.preset_id as current_preset_id,
    l.transition as latest_build_transition,
    l.created_at as latest_build_created_at,
    l.initiator_id as latest_build_initiator_id,
    l.job_id as latest_build_job_id
from fleet_ws as w
inner join fleet_latest as l on w.id = l.ws_id
order by w.created_at, w.id;

-- name: insert_jobs
-- Picked up 2–10 s after queueing, 30–90 s of work; canceled jobs never started; running ones
-- heartbeat.
insert into prebuilds.provisioner_jobs (
    id, initiator_id, created_at, started_at, completed_at, canceled_at, error, worker_id,
    updated_at
)
select
    b.job_id,
    b.initiator_id,
    b.created_at,
    case
        when b.outcome in ('running', 'succeeded', 'failed') then j.started_at
    end as started_at,
    case
        when b.outcome in ('succeeded', 'failed')
            then j.started_at + interval '1 second' * (30 + 60 * j.r_run)
        when b.outcome = 'canceled' then b.created_at + interval '20 seconds'
    end as completed_at,
    case when b.outcome = 'canceled' then b.created_at + interval '15 seconds' end as canceled_at,
    case
        when b.outcome = 'failed'
            then
                (array[
                    'terraform apply: exit status 1',
                    'error creating container: image pull backoff',
                    'timed out waiting for the agent to connect',
                    'quota exceeded: cpu',
                    'provider error: 503 Service Unavailable'
                ])[1 + floor(j.r_run * 5)::int]
    end as error,
    case
        when b.outcome in ('running', 'succeeded', 'failed')
            then 'provisioner-' || (1 + floor(j.r_start * 6)::int)
    end as worker_id,
    -- Heartbeats (SPEC 5.2): a running job beat at the anchor (its provisioner is alive); a
    -- finished one last at its end.
    case
        when b.outcome = 'running' then greatest(j.started_at, p.anchor)
        when b.outcome in ('succeeded', 'failed')
            then j.started_at + interval '1 second' * (30 + 60 * j.r_run)
    end as updated_at
from fleet_builds as b
cross join fleet_params as p
cross join
    lateral (
        select
            pg_temp.fleet_rand(p.seed, 'job-start', b.build_key) as r_start,
            pg_temp.fleet_rand(p.seed, 'job-run', b.build_key) as r_run
    ) as r
cross join
    lateral (
        select
            r.r_start,
            r.r_run,
            b.created_at + interval '1 second' * (2 + 8 * r.r_start) as started_at
    ) as j
order by b.created_at, b.ws_id, b.build_number;

-- name: replica_mode_on
-- Bulk load (superuser, or SET privilege on the parameter): no foreign-key or other trigger fires
-- per row; verify_fleet then checks every foreign key and the validations once, set-based.
set local session_replication_role = replica;

-- name: replica_mode_off
set local session_replication_role = origin;

-- name: disable_latest_build_trigger
alter table prebuilds.workspace_builds disable trigger workspace_builds_track_latest;

-- name: insert_builds
insert into prebuilds.workspace_builds (
    id,
    workspace_id,
    build_number,
    template_version_id,
    preset_id,
    transition,
    initiator_id,
    job_id,
    created_at
)
select
    b.id,
    b.ws_id,
    b.build_number,
    b.template_version_id,
    b.preset_id,
    b.transition,
    b.initiator_id,
    b.job_id,
    b.created_at
from fleet_builds as b
order by b.created_at, b.ws_id, b.build_number;

-- name: set_latest_builds
update prebuilds.workspaces as w
set
    latest_build_id = l.id,
    latest_build_number = l.build_number,
    current_preset_id = l.preset_id,
    latest_build_transition = l.transition,
    latest_build_created_at = l.created_at,
    latest_build_initiator_id = l.initiator_id,
    latest_build_job_id = l.job_id
from fleet_latest as l
where w.id = l.ws_id;

-- name: enable_latest_build_trigger
alter table prebuilds.workspace_builds enable trigger workspace_builds_track_latest;

-- name: insert_agents
-- Agents connect mid-way through their build's job.
insert into prebuilds.workspace_agents (id, job_id, name, lifecycle_state, created_at)
select
    pg_temp.fleet_time_uuid(p.seed, 'agent-' || a.name, a.build_key, p.anchor - a.created_at)
        as id,
    a.job_id,
    a.name,
    a.lifecycle_state,
    a.created_at
from (
    select
        b.build_key,
        b.job_id,
        'main' as name,
        b.agent_state as lifecycle_state,
        b.created_at + interval '40 seconds' as created_at
    from fleet_builds as b
    where b.agent_state is not null
    union all
    select
        b.build_key,
        b.job_id,
        'sidecar' as name,
        b.sidecar_state as lifecycle_state,
        b.created_at + interval '45 seconds' as created_at
    from fleet_builds as b
    where b.sidecar_state is not null
) as a
cross join fleet_params as p
order by a.created_at, a.job_id, a.name;

-- name: insert_preset_counters
-- Lifetime counters consistent with the generated builds.
insert into prebuilds.preset_counters (preset_id, created, failed, claimed)
select
    b.preset_id,
    count(*) filter (
        where b.build_number = 1 and b.transition = 'start' and b.initiator_id = p.system_id
    ) as created,
    count(*) filter (
        where b.transition = 'start' and b.initiator_id = p.system_id and b.outcome = 'failed'
    ) as failed,
    count(*) filter (
        where b.build_number = 2 and b.transition = 'start' and b.initiator_id <> p.system_id
    ) as claimed
from fleet_builds as b
cross join fleet_params as p
where b.preset_id is not null
group by b.preset_id
order by b.preset_id;

-- name: can_bulk_load
select
    current_setting('is_superuser')::bool
    or has_parameter_privilege('session_replication_role', 'set') as allowed;

-- name: analyze_fleet
-- Statistics before verify_fleet and for the benchmarks (vacuum_fleet runs after the commit).
analyze
prebuilds.organizations,
prebuilds.users,
prebuilds.templates,
prebuilds.template_versions,
prebuilds.presets,
prebuilds.preset_schedules,
prebuilds.preset_counters,
prebuilds.workspaces,
prebuilds.provisioner_jobs,
prebuilds.workspace_builds,
prebuilds.workspace_agents;

-- name: vacuum_fleet
vacuum
prebuilds.organizations,
prebuilds.users,
prebuilds.templates,
prebuilds.template_versions,
prebuilds.presets,
prebuilds.preset_schedules,
prebuilds.preset_counters,
prebuilds.workspaces,
prebuilds.provisioner_jobs,
prebuilds.workspace_builds,
prebuilds.workspace_agents;

-- name: verify_fleet
-- After a replica-mode load: what the skipped triggers would have checked, once per rule
-- instead of once per row. Every single-column foreign key of the schema (an anti-join each),
-- then the time zones and schedules (presets_check_timezone, preset_schedules_check).
do $$
declare
    v_fk record;
    v_orphans bigint;
    v_problem text;
begin
    for v_fk in
        select
            c.conname,
            c.conrelid::regclass as child,
            a.attname as child_column,
            c.confrelid::regclass as parent,
            pa.attname as parent_column,
            cardinality(c.conkey) as columns
        from pg_constraint as c
        join pg_attribute as a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        join pg_attribute as pa on pa.attrelid = c.confrelid and pa.attnum = c.confkey[1]
        where c.contype = 'f' and c.connamespace = 'prebuilds'::regnamespace
        order by c.conname
    loop
        if v_fk.columns <> 1 then
            raise exception 'verify_fleet: cannot check multi-column foreign key %', v_fk.conname;
        end if;
        execute format(
            'select count(*) from %s as c where c.%I is not null'
            ' and not exists (select from %s as p where p.%I = c.%I)',
            v_fk.child, v_fk.child_column, v_fk.parent, v_fk.parent_column, v_fk.child_column
        ) into v_orphans;
        if v_orphans > 0 then
            raise exception 'fleet: % rows of % break foreign key %',
                v_orphans, v_fk.child, v_fk.conname;
        end if;
    end loop;

    select coalesce(
        (select 'preset time zone: ' || prebuilds.timezone_error(z.scheduling_timezone)
         from (select distinct p.scheduling_timezone from prebuilds.presets as p
               where p.scheduling_timezone <> '') as z
         where prebuilds.timezone_error(z.scheduling_timezone) is not null
         limit 1),
        (select 'schedule ' || e.cron_expression || ': '
                || prebuilds.cron_expression_error(e.cron_expression)
         from (select distinct s.cron_expression from prebuilds.preset_schedules as s) as e
         where prebuilds.cron_expression_error(e.cron_expression) is not null
         limit 1),
        (select 'schedules ' || a.cron_expression || ' and ' || b.cron_expression || ' overlap'
         from prebuilds.preset_schedules as a
         join prebuilds.preset_schedules as b on b.preset_id = a.preset_id and a.id < b.id
         where prebuilds.schedules_overlap(a.cron_expression, b.cron_expression)
         limit 1)
    ) into v_problem;
    if v_problem is not null then
        raise exception 'fleet: invalid %', v_problem;
    end if;
end;
$$;

-- name: anchor
select p.anchor from fleet_params as p;

-- name: situation_counts
-- Presets and live prebuilds per situation, for the summary.
select
    fp.kind,
    count(distinct fp.k)::int as presets,
    count(l.n)::int as prebuilds
from fleet_presets as fp
left join fleet_live as l on fp.k = l.k
where fp.kind is not null
group by fp.kind
order by fp.kind;

-- name: state_counts
-- Live prebuilds per state of their latest build, for the summary.
select
    l.state,
    count(*)::int as prebuilds
from fleet_live as l
group by l.state
order by l.state;

-- name: table_counts
select
    (select count(*) from prebuilds.organizations)::int as organizations,
    (select count(*) from prebuilds.users where not is_system)::int as users,
    (select count(*) from prebuilds.templates)::int as templates,
    (select count(*) from prebuilds.template_versions)::int as template_versions,
    (select count(*) from prebuilds.presets)::int as presets,
    (select count(*) from fleet_presets where role = 'active' and desired is not null)::int
        as active_presets,
    (select count(*) from prebuilds.preset_schedules)::int as preset_schedules,
    (select count(*) from fleet_live)::int as live_prebuilds,
    (select count(*) from fleet_user_ws)::int as user_workspaces,
    (select count(*) from fleet_hist_ws)::int as deleted_workspaces,
    (select count(*) from prebuilds.workspaces)::int as workspaces,
    (
        select count(*)
        from fleet_builds as b
        inner join fleet_hist_ws as h on b.ws_id = h.id
    )::int as historical_builds,
    (select count(*) from prebuilds.workspace_builds)::int as builds,
    (select count(*) from prebuilds.provisioner_jobs)::int as jobs,
    (select count(*) from prebuilds.workspace_agents)::int as agents;

-- name: database_has_fleet
select
    exists (select from prebuilds.organizations)
    or exists (select from prebuilds.workspaces)
    or exists (select from prebuilds.users as u where not u.is_system) as has_fleet;

-- name: actions_by_kind
-- The plan at now(), counted by action (python -m bench.fleet prints it).
select
    ra.action,
    count(*)::int as n
from prebuilds.reconciliation_actions as ra
group by ra.action
order by ra.action;

-- name: state_overview
select
    count(*)::int as presets_considered,
    (count(*) filter (where not ps.is_active))::int as presets_inactive,
    (count(*) filter (where ps.blocked_reason = 'backoff'))::int as presets_in_backoff,
    (count(*) filter (where ps.blocked_reason = 'hard_limited'))::int as presets_hard_limited,
    (count(*) filter (where ps.extraneous > 0))::int as presets_with_surplus,
    (count(*) filter (where ps.expired > 0))::int as presets_with_expired,
    (count(*) filter (where ps.pending_cancelable > 0))::int as presets_with_cancelable,
    (count(*) filter (where ps.schedule_note like 'schedule%'))::int as presets_scheduled
from prebuilds.preset_state as ps;
