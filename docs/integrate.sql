-- Integrating a platform with prebuilds, from an empty database to a claimed workspace.
-- Run by `psql -v ON_ERROR_STOP=1 -f docs/integrate.sql` as the schema's owner (or a login role
-- that is a member of prebuilds_platform and prebuilds_provisioner), after `prebuilds migrate`,
-- while a reconciler runs (`prebuilds run`, as a member of prebuilds_reconciler). Each part
-- takes the role that does it in production; tests/test_integration_script.py runs this file
-- verbatim.

-- 1. The platform (role prebuilds_platform): a user, a template version with two presets.
set role prebuilds_platform;

select prebuilds.register_user('alice') as alice;

select prebuilds.publish_template_version(
    'acme', 'python', 'v1',
    '[
        {"name": "small", "parameters": {"cpu": 2, "memory_gb": 4, "image": "python:3.12"},
         "desired_instances": 1, "ttl_seconds": 86400},
        {"name": "gpu", "parameters": {"cpu": 8, "gpu": "a10", "image": "python:3.12-cuda"}}
    ]'
) as version_id;

-- Pools change without a new version: two small prebuilds; gpu keeps no pool (built on demand).
select prebuilds.configure_preset(p.id, '{"desired_instances": 2}')
from prebuilds.presets as p
inner join prebuilds.template_versions as v on p.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
where o.name = 'acme' and t.name = 'python' and v.name = 'v1' and p.name = 'small';

-- What the reconciler is about to do, and why.
select
    preset_name,
    action,
    reason
from prebuilds.reconciliation_actions;

reset role;

-- 2. A provisioner (role prebuilds_provisioner): takes the jobs the reconciler queued, builds
-- them (here: nothing to build), reports the agent ready and completes the job. `prebuilds
-- provision --exec CMD` does this for real; a loop in SQL stands in for it here.
set role prebuilds_provisioner;

do $$
declare
    v_job record;
    v_built int := 0;
begin
    for i in 1..600 loop
        select * into v_job from prebuilds.acquire_job('integrate-worker');
        if v_job.job_id is null then
            perform pg_sleep(0.1);  -- the reconciler has not queued the next build yet
        else
            perform prebuilds.report_agent_lifecycle(v_job.job_id, 'main', 'ready');
            perform prebuilds.complete_job(v_job.job_id, null);
            v_built := v_built + 1;
            commit;
            raise notice 'built % (% of 2)', v_job.workspace_id, v_built;
        end if;
        exit when v_built = 2;
    end loop;
    if v_built < 2 then
        raise exception 'the reconciler queued % of 2 builds in 60 s: is `prebuilds run` up?',
            v_built;
    end if;
end;
$$;

reset role;

-- 3. The platform again: alice gets a ready workspace in one call.
set role prebuilds_platform;

select
    preset_name,
    desired,
    actual,
    eligible
from prebuilds.preset_state;

select
    prebuilds.claim_prebuild(
        p.id, prebuilds.register_user('alice'), 'alice-python'
    ) as workspace_id
from prebuilds.presets as p
inner join prebuilds.template_versions as v on p.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
where o.name = 'acme' and t.name = 'python' and v.name = 'v1' and p.name = 'small';

reset role;
