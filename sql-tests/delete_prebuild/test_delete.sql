-- delete_prebuild (SPEC 4.5): queues a delete build (pending job, by the system user) for a
-- workspace that is still a running prebuild and returns true; false, with nothing written, once
-- it is deleting, and for claimed, failed, canceled, stopped, in-flight, deleted or users'
-- workspaces.
begin;
select plan(9);

create temp table result (name text, deleted bool) on commit drop;

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'running');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_ready => false, p_name => 'not-ready');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'failed', p_name => 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'canceled', p_name => 'canceled');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'stopped', p_name => 'stopped');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'starting');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'provisioning', p_name => 'provisioning');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'stopping', p_name => 'stopping');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_owner => v_alice, p_name => 'mine');
    v_ws := fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'gone');
    update prebuilds.workspaces set deleted = true where id = v_ws;
    v_ws := fixture.prebuild(v_p, '2025-06-02 09:00Z', p_name => 'claimed');
    -- Claimed by alice while the reconciler was planning.
    if prebuilds.claim_prebuild(v_p, v_alice, 'alices-ws') is distinct from v_ws then
        raise exception 'expected to claim the workspace named claimed';
    end if;
end;
$$;

create temp table builds_before on commit drop as
select count(*) as n from prebuilds.workspace_builds;

insert into result
select
    'running' as name,
    prebuilds.delete_prebuild(fixture.ws('running')) as deleted;

select is((select deleted from result where name = 'running'), true, 'a running prebuild: true');

select results_eq(
    $$
    select b.build_number, b.transition, b.initiator_id, b.preset_id, b.template_version_id,
           j.status, j.initiator_id
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    where w.id = fixture.ws('running')
    $$,
    $$
    select 2, 'delete', prebuilds.system_user_id(), p.id, p.template_version_id, 'pending',
           prebuilds.system_user_id()
    from prebuilds.presets as p where p.id = fixture.preset_of('t')
    $$,
    'it adds build 2: delete, same preset and version, by the system user, with a pending job'
);

select is(
    (select deleted from prebuilds.workspaces where id = fixture.ws('running')),
    false,
    'the workspace is deleted only when the delete build succeeds'
);

select is(
    prebuilds.delete_prebuild(fixture.ws('running')),
    false,
    'a second call: false (already deleting)'
);

select is(
    (select deleting from prebuilds.preset_state_at(now())),
    1,
    'the plan counts it as deleting'
);

insert into result
select
    w.name,
    prebuilds.delete_prebuild(w.id) as deleted
from prebuilds.workspaces as w
where w.name <> 'running';

select results_eq(
    $$select name, deleted from result where name <> 'running' order by name$$,
    $$
    values
        ('alices-ws', false),
        ('canceled', false),
        ('failed', false),
        ('gone', false),
        ('mine', false),
        ('not-ready', true),
        ('provisioning', false),
        ('starting', false),
        ('stopped', false),
        ('stopping', false)
    $$,
    'only running prebuilds are deleted (ready or not); every other workspace gives false'
);

select is(
    (select count(*) from prebuilds.workspace_builds),
    (select n + 2 from builds_before),
    'exactly two delete builds were added (running and not-ready)'
);

select is(
    prebuilds.delete_prebuild(gen_random_uuid()),
    false,
    'an unknown workspace: false'
);

select is(
    (select owner_id from prebuilds.workspaces where name = 'alices-ws'),
    (select id from prebuilds.users where username = 'alice'),
    'the claimed workspace still belongs to alice'
);

select * from finish();
rollback;
