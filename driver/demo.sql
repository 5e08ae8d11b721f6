-- Named statements of `prebuilds demo` (loaded like queries.sql). The demo fleet is built with
-- the platform's own moves: pools filled by create_prebuild and a simulated provisioner, then
-- the drift an operator sees after a day: a new version, a deprecation, a shrunk pool, a claim.

-- name: database_is_empty
select not exists (select from prebuilds.organizations) as empty;

-- name: database_before_demo
-- Checked before anything is migrated: tables that are not the prebuilds schema's (someone
-- else's data), and whether the prebuilds schema is already there.
select
    (
        select count(*)
        from pg_catalog.pg_tables as t
        where
            t.schemaname not in ('pg_catalog', 'information_schema', 'prebuilds')
            and not (t.schemaname = 'public' and t.tablename = 'alembic_version')
    )::int as other_tables,
    to_regclass('prebuilds.organizations') is not null as has_schema;

-- name: seed_fleet
do $$
declare
    v_org uuid;
    v_tpl uuid;
    v_ver uuid;
    v_name text;
begin
    -- Backoff and delete retries in seconds rather than minutes, so the failing preset reaches
    -- its hard limit, and failed deletes are retried, while you watch.
    update prebuilds.settings
    set backoff_interval = interval '2 seconds', delete_retry_interval = interval '2 seconds';

    insert into prebuilds.users (username) values ('alice'), ('bob');

    -- acme/python: a long version history; v3 is active now and v4 is about to be promoted.
    insert into prebuilds.organizations (name) values ('acme') returning id into v_org;
    insert into prebuilds.templates (organization_id, name) values (v_org, 'python')
    returning id into v_tpl;
    foreach v_name in array array['v1', 'v2', 'v3', 'v4'] loop
        insert into prebuilds.template_versions (template_id, name) values (v_tpl, v_name)
        returning id into v_ver;
        insert into prebuilds.presets (template_version_id, name, desired_instances)
        values (v_ver, 'default', 2);
        if v_name = 'v4' then
            insert into prebuilds.presets (template_version_id, name, desired_instances)
            values (v_ver, 'large', 1);
        end if;
        if v_name = 'v3' then
            update prebuilds.templates set active_version_id = v_ver where id = v_tpl;
        end if;
    end loop;

    -- acme/go: prebuilds live one hour at most.
    insert into prebuilds.templates (organization_id, name) values (v_org, 'go')
    returning id into v_tpl;
    insert into prebuilds.template_versions (template_id, name) values (v_tpl, 'v1')
    returning id into v_ver;
    update prebuilds.templates set active_version_id = v_ver where id = v_tpl;
    insert into prebuilds.presets (template_version_id, name, desired_instances, ttl_seconds)
    values (v_ver, 'default', 2, 3600);

    -- globex/data-science: two presets on one version; globex/flaky: every build fails.
    insert into prebuilds.organizations (name) values ('globex') returning id into v_org;
    insert into prebuilds.templates (organization_id, name) values (v_org, 'data-science')
    returning id into v_tpl;
    insert into prebuilds.template_versions (template_id, name) values (v_tpl, 'v7')
    returning id into v_ver;
    update prebuilds.templates set active_version_id = v_ver where id = v_tpl;
    insert into prebuilds.presets (template_version_id, name, desired_instances)
    values (v_ver, 'cpu', 3), (v_ver, 'gpu', 1);
    insert into prebuilds.templates (organization_id, name) values (v_org, 'flaky')
    returning id into v_tpl;
    insert into prebuilds.template_versions (template_id, name) values (v_tpl, 'v1')
    returning id into v_ver;
    update prebuilds.templates set active_version_id = v_ver where id = v_tpl;
    insert into prebuilds.presets (template_version_id, name, desired_instances)
    values (v_ver, 'default', 1);

    -- initech/legacy (about to be deprecated) and initech/web (its pool about to shrink).
    insert into prebuilds.organizations (name) values ('initech') returning id into v_org;
    foreach v_name in array array['legacy', 'web'] loop
        insert into prebuilds.templates (organization_id, name) values (v_org, v_name)
        returning id into v_tpl;
        insert into prebuilds.template_versions (template_id, name) values (v_tpl, 'v1')
        returning id into v_ver;
        update prebuilds.templates set active_version_id = v_ver where id = v_tpl;
        insert into prebuilds.presets (template_version_id, name, desired_instances)
        values (v_ver, 'default', 3);
    end loop;
end;
$$;

-- name: healthy_active_presets
-- Pools to fill before the drift (the flaky template only ever fails).
select p.id
from prebuilds.presets as p
inner join prebuilds.templates as t on p.template_version_id = t.active_version_id
where t.name <> 'flaky' and p.desired_instances is not null
order by p.id;

-- name: create_prebuild
select prebuilds.create_prebuild(%(preset_id)s) as workspace_id;

-- name: flaky_presets
select p.id
from prebuilds.presets as p
inner join prebuilds.template_versions as v on p.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
where t.name = 'flaky';

-- name: queue_initial_build_on_old_version
-- One more python v3 prebuild is queued just before v4 is promoted: the cycle cancels it.
do $$
declare
    v_preset uuid;
begin
    select p.id into v_preset
    from prebuilds.presets as p
    join prebuilds.template_versions as v on v.id = p.template_version_id
    join prebuilds.templates as t on t.id = v.template_id
    where t.name = 'python' and v.name = 'v3' and p.name = 'default';
    update prebuilds.presets set desired_instances = 3 where id = v_preset;
    perform prebuilds.create_prebuild(v_preset);
end;
$$;

-- name: drift
-- What changed since the pools were last full.
do $$
begin
    -- python v4 promoted: v3's prebuilds are outdated.
    update prebuilds.templates as t set active_version_id = v.id
    from prebuilds.template_versions as v
    where v.template_id = t.id and t.name = 'python' and v.name = 'v4';
    -- legacy deprecated: its prebuilds go.
    update prebuilds.templates set deprecated = true where name = 'legacy';
    -- web's pool shrinks from 3 to 1: two surplus.
    update prebuilds.presets as p set desired_instances = 1
    from prebuilds.template_versions as v, prebuilds.templates as t
    where v.id = p.template_version_id and t.id = v.template_id and t.name = 'web';
    -- go's prebuilds were built two hours ago; their TTL is one hour.
    update prebuilds.workspaces as w set created_at = now() - interval '2 hours'
    from prebuilds.templates as t
    where t.id = w.template_id and t.name = 'go';
    -- The provisioner restarting the data-science gpu prebuild died 10 minutes ago: its job is
    -- still running, with no heartbeat since (SPEC 5.2: the reconciler fails it).
    perform prebuilds.queue_build(
        w.id, w.latest_template_version_id, w.current_preset_id, 'start',
        prebuilds.system_user_id()
    )
    from (
        select w.id, b.template_version_id as latest_template_version_id, w.current_preset_id
        from prebuilds.workspaces as w
        inner join prebuilds.presets as p on w.current_preset_id = p.id
        inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
        where p.name = 'gpu' and not w.deleted
    ) as w;
    update prebuilds.provisioner_jobs as j
    set
        started_at = now() - interval '10 minutes',
        updated_at = now() - interval '10 minutes',
        worker_id = 'provisioner-that-died'
    from prebuilds.workspaces as w
    inner join prebuilds.presets as p on w.current_preset_id = p.id
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    where p.name = 'gpu' and b.job_id = j.id and j.started_at is null;
    -- alice claims a data-science cpu prebuild.
    perform prebuilds.claim_prebuild(p.id, u.id, 'alice-notebook')
    from prebuilds.presets as p, prebuilds.users as u
    where p.name = 'cpu' and u.username = 'alice';
end;
$$;

-- name: next_backoff
-- When the earliest backoff ends, if any preset that is not hard-limited is waiting, or the
-- earliest retry of a failed delete is due.
select min(w.until) as until
from (
    select ps.backoff_until as until
    from prebuilds.preset_state as ps
    where ps.backoff_until is not null and not ps.hard_limited
    union all
    select prebuilds.delete_retry_at(j.completed_at, w.delete_failures, s.delete_retry_interval)
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    cross join prebuilds.settings as s
    where
        w.owner_id = prebuilds.system_user_id()
        and not w.deleted
        and b.transition = 'delete'
        and j.status = 'failed'
        and w.delete_failures <= s.delete_retry_limit
) as w;
