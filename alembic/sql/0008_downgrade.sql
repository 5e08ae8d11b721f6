-- Downgrade of revision 0008 to 0007. Written by hand above the marker, in sections; below it,
-- the 0007 (or earlier) text of the objects 0008 re-created.

-- >>> woken by changes, claims counted (issue 11, SPEC 6.1 and 6.2) ------------------------------
-- The per-minute claim counts go; the lifetime claim counts stay in preset_counters.claimed.
drop trigger settings_notify_reconcile on prebuilds.settings;
drop trigger preset_schedules_notify_reconcile_insert on prebuilds.preset_schedules;
drop trigger preset_schedules_notify_reconcile_update on prebuilds.preset_schedules;
drop trigger preset_schedules_notify_reconcile_delete on prebuilds.preset_schedules;
drop trigger presets_notify_reconcile_insert on prebuilds.presets;
drop trigger presets_notify_reconcile_update on prebuilds.presets;
drop trigger templates_notify_reconcile on prebuilds.templates;
drop function prebuilds.notify_plan_change();
drop view prebuilds.preset_state;
drop function prebuilds.preset_state_at(timestamptz);
drop function prebuilds.next_change_at(timestamptz);
drop function prebuilds.prune_claim_stats();
drop function prebuilds.claim_prebuild(uuid, uuid, text);
drop function prebuilds.complete_job(uuid, text);
drop function prebuilds.count_claim(uuid, bool);
drop function prebuilds.notify_claim(text);
drop function prebuilds.wait_for_claims(int);
drop function prebuilds.notify_reconcile(text);
drop function prebuilds.count_prebuild_event(uuid, text);
drop trigger settings_check on prebuilds.settings;
drop function prebuilds.check_settings();
drop table prebuilds.claim_stats;
alter table prebuilds.preset_counters drop column missed;
alter table prebuilds.settings drop column claim_stats_retention;
-- <<< woken by changes, claims counted -----------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/preset_state_at.sql
-- "Why is my pool not being filled?": one row per preset under consideration at p_now (SPEC 3).
-- Operators read it through the view preset_state; tests call it with fixed instants.
-- PL/pgSQL for its cached plan, with preset_plan_at inlined (see reconciliation_actions_at).

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
    schedule_note text
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
            pp.schedule_note
        from prebuilds.preset_plan_at(p_now) as pp
        order by
            pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
            pp.preset_id;
end;
$$;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit '
'and why creates are blocked.';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.preset_state_at(timestamptz) from public;
grant execute on function prebuilds.preset_state_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;

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
    ps.schedule_note
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
comment on column prebuilds.preset_state.desired is 'Pool size wanted now; 0 when inactive.';
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

grant select on prebuilds.preset_state
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
    insert into prebuilds.preset_counters as c (preset_id, shard, created, failed, claimed)
    values (
        p_preset_id,
        pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed;
end;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed or claimed) for a preset, in '
'the shard row of the calling backend.';

-- >>> db/functions/claim_prebuild.sql
-- Hand an eligible prebuild to a person (SPEC 4.5). Called by the platform when a user creates a
-- workspace from a preset. Takes the oldest eligible prebuild with `skip locked`: a prebuild
-- being deleted is locked by delete_prebuild and skipped, so a claimed workspace is never deleted.

create function prebuilds.claim_prebuild(p_preset_id uuid, p_owner_id uuid, p_name text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_workspace_id uuid;
    v_version_id uuid;
begin
    if p_owner_id = prebuilds.system_user_id() then
        raise exception 'claim_prebuild: the system user cannot claim a prebuild'
            using errcode = 'invalid_parameter_value';
    end if;
    if coalesce(p_name, '') = '' then
        raise exception 'claim_prebuild: workspace name must not be empty'
            using errcode = 'invalid_parameter_value';
    end if;
    if not exists (select from prebuilds.users as u where u.id = p_owner_id) then
        raise exception 'claim_prebuild: no user with id %', p_owner_id
            using errcode = 'foreign_key_violation';
    end if;

    select w.id, b.template_version_id into v_workspace_id, v_version_id
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    join prebuilds.presets as p on p.id = w.current_preset_id
    join prebuilds.templates as t on t.active_version_id = p.template_version_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and not t.deleted
      and not t.deprecated
      and b.transition = 'start'
      and j.status = 'succeeded'
      and not prebuilds.is_expired(w.created_at, p.ttl_seconds, p.last_invalidated_at, now())
      and prebuilds.agents_ready(b.job_id)
    order by w.created_at, w.id
    limit 1
    for update of w skip locked;
    if not found then
        return null;
    end if;

    update prebuilds.workspaces
    set owner_id = p_owner_id, name = p_name
    where id = v_workspace_id;

    -- Initiated by the new owner: provisioners serve it first, and it never counts as a
    -- prebuild starting.
    perform prebuilds.queue_build(v_workspace_id, v_version_id, p_preset_id, 'start', p_owner_id);
    perform prebuilds.count_prebuild_event(p_preset_id, 'claimed');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.claim_prebuild(uuid, uuid, text) is
'Gives the oldest eligible prebuild of a preset to p_owner_id under the name p_name and queues '
'its start build; returns the workspace id, or null when none is eligible.';

revoke execute on function prebuilds.claim_prebuild(uuid, uuid, text) from public;
grant execute on function prebuilds.claim_prebuild(uuid, uuid, text) to prebuilds_platform;

-- >>> db/functions/complete_job.sql
-- Provisioner side: finish a job (SPEC 4.5). A successful delete build marks its workspace
-- deleted, which removes it from the live prebuilds. Used by the simulated provisioner and tests.

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
    set completed_at = now(), error = nullif(p_error, '')
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
    elsif v_status = 'failed' and v_transition = 'start' and v_preset_id is not null
          and v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.count_prebuild_event(v_preset_id, 'failed');
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted. False when the job was already completed or never started.';

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
