-- Test vocabulary for the pgTAP files (not part of the product): builds fleets in a few calls.
-- Installed into the test template database by tests/fixtures.py, in the schema `fixture`.

create schema fixture;

comment on schema fixture is 'Test-only helpers that build fleets for the pgTAP files.';

-- A template (and its organization, created on first use).
create function fixture.template(p_name text, p_org text default 'acme')
returns uuid
language plpgsql
as $$
declare
    v_org uuid;
    v_id uuid;
begin
    insert into prebuilds.organizations (name) values (p_org)
    on conflict (name) do nothing;
    select id into v_org from prebuilds.organizations where name = p_org;
    insert into prebuilds.templates (organization_id, name)
    values (v_org, p_name)
    returning id into v_id;
    return v_id;
end;
$$;

-- A version of a template; p_activate makes it the active version.
create function fixture.version(p_template_id uuid, p_name text, p_activate bool default true)
returns uuid
language plpgsql
as $$
declare
    v_id uuid;
begin
    insert into prebuilds.template_versions (template_id, name)
    values (p_template_id, p_name)
    returning id into v_id;
    if p_activate then
        update prebuilds.templates set active_version_id = v_id where id = p_template_id;
    end if;
    return v_id;
end;
$$;

create function fixture.preset(
    p_version_id uuid,
    p_name text default 'default',
    p_desired int default null,
    p_ttl int default null
)
returns uuid
language sql
as $$
    insert into prebuilds.presets (template_version_id, name, desired_instances, ttl_seconds)
    values (p_version_id, p_name, p_desired, p_ttl)
    returning id;
$$;

-- An active preset on a fresh template: the one-liner most tests start with.
create function fixture.active_preset(
    p_template text,
    p_desired int default 1,
    p_ttl int default null,
    p_preset text default 'default'
)
returns uuid
language sql
as $$
    select fixture.preset(
        fixture.version(fixture.template(p_template), 'v1'), p_preset, p_desired, p_ttl
    );
$$;

create function fixture.user(p_username text)
returns uuid
language sql
as $$
    insert into prebuilds.users (username) values (p_username) returning id;
$$;

-- Appends a build with a job in the given status (pending, running, succeeded, failed,
-- canceling, canceled), all timestamps (the heartbeat updated_at too) at p_at.
create function fixture.build(
    p_workspace_id uuid,
    p_transition text,
    p_status text,
    p_at timestamptz,
    p_initiator uuid default prebuilds.system_user_id(),
    p_preset_id uuid default null
)
returns uuid
language plpgsql
as $$
declare
    v_job uuid;
    v_version uuid;
    v_preset uuid;
begin
    select b.template_version_id, coalesce(p_preset_id, w.current_preset_id)
    into v_version, v_preset
    from prebuilds.workspaces as w
    left join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    where w.id = p_workspace_id;
    if v_version is null then
        select template_version_id into v_version from prebuilds.presets where id = v_preset;
    end if;
    insert into prebuilds.provisioner_jobs (
        initiator_id, created_at, started_at, completed_at, canceled_at, error, updated_at
    )
    values (
        p_initiator,
        p_at,
        case when p_status <> 'pending' then p_at end,
        case when p_status in ('succeeded', 'failed', 'canceled') then p_at end,
        case when p_status in ('canceling', 'canceled') then p_at end,
        case when p_status = 'failed' then 'terraform apply failed' end,
        -- The last heartbeat (SPEC 5.2): a started job beat when it started (or ended).
        case when p_status <> 'pending' then p_at end
    )
    returning id into v_job;
    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition, initiator_id,
        job_id, created_at
    )
    select w.id, coalesce(w.latest_build_number, 0) + 1, v_version, v_preset, p_transition,
           p_initiator, v_job, p_at
    from prebuilds.workspaces as w
    where w.id = p_workspace_id;
    return v_job;
end;
$$;

-- Marks the agent of a job ready (or another lifecycle state).
create function fixture.agent(p_job_id uuid, p_state text default 'ready')
returns uuid
language sql
as $$
    select prebuilds.report_agent_lifecycle(p_job_id, 'main', p_state);
$$;

-- A prebuild of a preset created at p_at, in one of these states:
--   running (start succeeded; p_ready gives it a ready agent), starting (start pending),
--   provisioning (start job running), failed, canceled (start), stopped, stopping, deleting.
-- p_name names the workspace, so that tests can refer to it with fixture.ws(name).
create function fixture.prebuild(
    p_preset_id uuid,
    p_at timestamptz,
    p_state text default 'running',
    p_ready bool default true,
    p_owner uuid default prebuilds.system_user_id(),
    p_name text default null
)
returns uuid
language plpgsql
as $$
declare
    v_ws uuid;
    v_job uuid;
begin
    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name, created_at)
    select
        t.organization_id, t.id, p_owner,
        coalesce(p_name, 'ws-' || left(gen_random_uuid()::text, 8)), p_at
    from prebuilds.presets as p
    join prebuilds.template_versions as v on v.id = p.template_version_id
    join prebuilds.templates as t on t.id = v.template_id
    where p.id = p_preset_id
    returning id into v_ws;

    v_job := fixture.build(
        v_ws, 'start',
        case p_state
            when 'starting' then 'pending'
            when 'provisioning' then 'running'
            when 'failed' then 'failed'
            when 'canceled' then 'canceled'
            else 'succeeded'
        end,
        p_at, p_owner, p_preset_id
    );
    if p_ready and p_state not in ('starting', 'provisioning', 'failed', 'canceled') then
        perform fixture.agent(v_job);
    end if;
    case p_state
        when 'stopped' then perform fixture.build(v_ws, 'stop', 'succeeded', p_at, p_owner);
        when 'stopping' then perform fixture.build(v_ws, 'stop', 'pending', p_at, p_owner);
        when 'deleting' then perform fixture.build(v_ws, 'delete', 'pending', p_at, p_owner);
        else null;
    end case;
    return v_ws;
end;
$$;

-- Actions planned at p_now, as text rows 'action:workspace' in plan order, for compact asserts.
create function fixture.actions(p_now timestamptz)
returns setof text
language sql
as $$
    select ra.action || ':' || coalesce(ra.workspace_id::text, ra.preset_name)
    from prebuilds.reconciliation_actions_at(p_now) as ra
    order by ra.seq;
$$;

-- The workspace named p_name (names are unique within a test by convention; an error otherwise).
-- The lookups below are volatile on purpose: the planner evaluates stable calls with constant
-- arguments while planning, before the rows inserted earlier in the same do block are visible.
create function fixture.ws(p_name text)
returns uuid
language plpgsql
volatile
as $$
declare
    v_id uuid;
begin
    select w.id into strict v_id from prebuilds.workspaces as w where w.name = p_name;
    return v_id;
end;
$$;

-- The preset p_preset of version p_version of template p_template (an error unless exactly one).
create function fixture.preset_of(
    p_template text, p_version text default 'v1', p_preset text default 'default'
)
returns uuid
language plpgsql
volatile
as $$
declare
    v_id uuid;
begin
    select p.id into strict v_id
    from prebuilds.presets as p
    join prebuilds.template_versions as v on v.id = p.template_version_id
    join prebuilds.templates as t on t.id = v.template_id
    where t.name = p_template and v.name = p_version and p.name = p_preset;
    return v_id;
end;
$$;

-- A new version p_version of the live template p_template, made active unless p_activate is false.
create function fixture.new_version(p_template text, p_version text, p_activate bool default true)
returns uuid
language sql
as $$
    select fixture.version(t.id, p_version, p_activate)
    from prebuilds.templates as t
    where t.name = p_template and not t.deleted;
$$;

-- The latest job of a workspace (to acquire, complete or report agents on it).
create function fixture.latest_job(p_workspace_id uuid)
returns uuid
language sql
volatile
as $$
    select b.job_id
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    where w.id = p_workspace_id;
$$;

-- Actions planned at p_now in plan order, labelled for humans: 'cancel:<workspace name>',
-- 'delete:<workspace name>', 'create:<preset name>', 'backoff:<preset name>'.
create function fixture.plan(p_now timestamptz)
returns setof text
language sql
as $$
    select ra.action || ':' || coalesce(w.name, ra.preset_name)
    from prebuilds.reconciliation_actions_at(p_now) as ra
    left join prebuilds.workspaces as w on w.id = ra.workspace_id
    order by ra.seq;
$$;

-- Schedules (SPEC 4.3) ---------------------------------------------------------------------------

-- Sets a preset's scheduling_timezone (through the validating trigger) and returns the preset id,
-- so that it chains: fixture.timezone(fixture.active_preset('t', 1), 'Europe/Berlin').
create function fixture.timezone(p_preset_id uuid, p_timezone text)
returns uuid
language sql
as $$
    update prebuilds.presets set scheduling_timezone = p_timezone
    where id = p_preset_id
    returning id;
$$;

-- A schedule of a preset: p_desired prebuilds while p_expression matches (validated on insert).
create function fixture.schedule(p_preset_id uuid, p_expression text, p_desired int)
returns uuid
language sql
as $$
    insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
    values (p_preset_id, p_expression, p_desired)
    returning id;
$$;

-- A preset's pool as the plan sees it at p_now: desired and schedule_note from preset_state_at,
-- and how many `create` rows reconciliation_actions_at plans for it. Every preset under
-- consideration when p_preset_id is null.
create function fixture.pool(p_now timestamptz, p_preset_id uuid default null)
returns table (desired int, creates int, schedule_note text)
language sql
as $$
    select
        ps.desired,
        (
            select count(*)::int
            from prebuilds.reconciliation_actions_at(p_now) as ra
            where ra.preset_id = ps.preset_id and ra.action = 'create'
        ),
        ps.schedule_note
    from prebuilds.preset_state_at(p_now) as ps
    where p_preset_id is null or ps.preset_id = p_preset_id
    order by ps.preset_name, ps.preset_id;
$$;
