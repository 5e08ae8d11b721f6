-- Downgrade of revision 0004 to 0003. Written by hand above the marker; below it, the 0003 text
-- of the objects 0004 re-created.

drop function prebuilds.finish_run(bigint, text, int, text);
drop function prebuilds.apply_action(bigint, int, text, uuid, uuid, text);
drop function prebuilds.start_run(bigint, int, int, text, int, int, int, double precision);
drop function prebuilds.take_reconcile_lock(bigint);
drop function prebuilds.reconcile_lock_held(bigint, int);
drop function prebuilds.write_fence_key(bigint, int);
drop trigger settings_keep_row on prebuilds.settings;
drop trigger settings_keep_row_truncate on prebuilds.settings;
drop function prebuilds.keep_settings_row();
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();
drop trigger presets_check_pool on prebuilds.presets;
drop function prebuilds.check_preset_pool();
drop view prebuilds.reconciliation_actions;
drop function prebuilds.reconciliation_actions_at(timestamptz);
drop trigger presets_check_timezone on prebuilds.presets;
drop function prebuilds.check_preset_timezone();

update prebuilds.reconciliation_runs set status = 'failed' where status = 'abandoned';
alter table prebuilds.reconciliation_runs
drop constraint reconciliation_runs_status_check,
add constraint reconciliation_runs_status_check check (
    status in ('running', 'succeeded', 'failed', 'paused', 'interrupted')
),
drop column lock_key,
drop column lock_pid,
drop column lock_token,
drop column actions_deferred;
comment on table prebuilds.reconciliation_runs is
'Reconciliation cycles, one row each; a row left in status running means the driver died mid-'
'cycle.';
comment on column prebuilds.reconciliation_runs.status is
'running, succeeded (every action applied or skipped), failed (an action or the cycle failed), '
'paused (nothing planned: reconciliation is paused) or interrupted (stopped by a signal after '
'the action in flight).';

alter table prebuilds.reconciliation_action_log drop column started_at;

alter table prebuilds.settings
drop constraint settings_max_pending_creates_check,
add constraint settings_max_pending_creates_check check (max_pending_creates > 0),
drop column max_actions_per_cycle;
comment on table prebuilds.settings is 'Reconciler settings; a single row.';

alter table prebuilds.presets
drop constraint presets_desired_instances_check,
add constraint presets_desired_instances_check check (desired_instances >= 0);
comment on column prebuilds.presets.desired_instances is
'Pool size when no schedule is in force; null means no pool (existing prebuilds are deleted).';

alter table prebuilds.preset_schedules
drop constraint preset_schedules_desired_instances_check,
add constraint preset_schedules_desired_instances_check check (desired_instances >= 0);

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/check_preset_timezone.sql
-- Trigger function: a preset's scheduling_timezone must be '' (no schedules) or an IANA time zone
-- name this server knows (SPEC 2). Called by the trigger presets_check_timezone.
-- PostgreSQL's `at time zone` (what timezone_error asks) also takes abbreviations ('PST': a fixed
-- offset, without daylight saving time), POSIX specs ('UTC+3', which it reads as three hours
-- *west* of Greenwich) and names in any case. A name is an IANA name when the TimeZone setting
-- accepts it and spells it the same way (it answers a zone file's own spelling, and rejects
-- abbreviations); a name with digits may be a POSIX spec or an offset, and is looked up in
-- pg_timezone_names (which reads every zone file: tens of milliseconds, so only for those).

create function prebuilds.check_preset_timezone()
returns trigger
language plpgsql
set search_path = ''
-- Restores the session's TimeZone when the function returns: set_config below changes it.
set timezone = 'UTC'
as $$
declare
    v_zone text := new.scheduling_timezone;
    v_error text;
    v_spelling text;
begin
    if v_zone = '' or (tg_op = 'UPDATE' and v_zone = old.scheduling_timezone) then
        return new;
    end if;
    v_error := prebuilds.timezone_error(v_zone);
    if v_error is null then
        begin
            perform pg_catalog.set_config('TimeZone', v_zone, true);
            v_spelling := pg_catalog.current_setting('TimeZone');
        exception
            when invalid_parameter_value then
                v_spelling := null;
        end;
        if v_spelling ~ '[0-9]' and not exists (
            select from pg_catalog.pg_timezone_names as z where z.name = v_spelling
        ) then
            v_spelling := null;
        end if;
        if v_spelling is distinct from v_zone then
            v_error := quote_literal(v_zone) || ' is not an IANA time zone name'
                || coalesce(' (did you mean ' || quote_literal(v_spelling) || '?)', '');
        end if;
    end if;
    if v_error is not null then
        raise exception 'invalid preset %: %', quote_literal(new.name), v_error
            using errcode = 'check_violation',
                  hint = 'Use an IANA name such as Europe/Paris, or '''' for no schedules.';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_timezone() is
'Trigger: rejects a scheduling_timezone that is not an IANA time zone name the server knows.';

-- >>> db/triggers/presets_check_timezone.sql
-- Time zones are validated when written (SPEC 4.3).

create trigger presets_check_timezone
before insert or update of scheduling_timezone on prebuilds.presets
for each row execute function prebuilds.check_preset_timezone();

comment on trigger presets_check_timezone on prebuilds.presets is
'Rejects a scheduling_timezone that is not an IANA time zone name the server knows.';

-- >>> db/functions/reconciliation_actions_at.sql
-- The plan: every unit of work at p_now, in the order to apply it (SPEC 3, 4.4).
-- Cancels and deletes first, then creates interleaved across presets, then informational backoff
-- rows. The driver reads it through the view reconciliation_actions; tests call it directly.

create function prebuilds.reconciliation_actions_at(p_now timestamptz)
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
    backoff_until timestamptz
)
language sql
stable
set jit = off
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
    )

    select
        (
            row_number() over (
                order by
                    it.phase,
                    -- Creates are interleaved: every preset's first, then every second, …
                    case when it.phase = 2 then it.n end,
                    it.organization_name, it.template_name, it.template_version_name,
                    it.preset_name, it.preset_id, it.n
            )
        )::int as seq,
        it.preset_id,
        it.action,
        it.workspace_id,
        it.reason,
        it.organization_name,
        it.template_name,
        it.template_version_name,
        it.preset_name,
        it.backoff_until
    from items as it
    order by seq;
end;

comment on function prebuilds.reconciliation_actions_at(timestamptz) is
'Every action the reconciler would take at p_now, in order: cancel, delete, create (interleaved '
'across presets) and informational backoff rows.';

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
    ra.backoff_until
from prebuilds.reconciliation_actions_at(now()) as ra;

comment on view prebuilds.reconciliation_actions is
'The plan of the next reconciliation cycle: one row per unit of work in the order the driver '
'applies it. Empty while paused.';
comment on column prebuilds.reconciliation_actions.seq is 'Position in the plan, from 1.';
comment on column prebuilds.reconciliation_actions.preset_id is 'Preset the action is for.';
comment on column prebuilds.reconciliation_actions.action is
'cancel (queued build of an inactive preset), delete (running prebuild), create (one new '
'prebuild) or backoff (informational: creates held back).';
comment on column prebuilds.reconciliation_actions.workspace_id is
'Workspace to cancel or delete; null for create and backoff.';
comment on column prebuilds.reconciliation_actions.reason is 'Why, in words.';
comment on column prebuilds.reconciliation_actions.organization_name is
'Organization of the template.';
comment on column prebuilds.reconciliation_actions.template_name is 'Template name.';
comment on column prebuilds.reconciliation_actions.template_version_name is
'Version of the preset.';
comment on column prebuilds.reconciliation_actions.preset_name is 'Preset name.';
comment on column prebuilds.reconciliation_actions.backoff_until is
'For backoff rows: when creates may resume.';
