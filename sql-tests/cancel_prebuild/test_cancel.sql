-- cancel_prebuild (SPEC 4.5): cancels the still-unpicked initial job of a prebuild whose preset is
-- still inactive, records an orphan delete build completed at once and marks the workspace
-- deleted; true once, false on a second call, after a provisioner picked the job up, for an active
-- preset, and for anything that is not a queued initial build.
begin;
select plan(12);

do $$
declare
    v_p uuid := fixture.active_preset('old', 1);
    v_cur uuid := fixture.active_preset('cur', 1);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'q1');
    perform fixture.prebuild(v_p, '2025-06-02 10:05Z', 'starting', p_name => 'q2');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'running');
    perform fixture.prebuild(v_cur, '2025-06-02 10:10Z', 'starting', p_name => 'active-queued');
    perform fixture.preset(fixture.new_version('old', 'v2'), 'default', 1);
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z') as a (x) where x like 'cancel:%'$$,
    array['cancel:q1', 'cancel:q2'],
    'the plan cancels both queued builds of the outdated preset'
);

select is(prebuilds.cancel_prebuild(fixture.ws('q1')), true, 'cancelling q1: true');

select results_eq(
    $$
    select b.build_number, b.transition, j.status
    from prebuilds.workspace_builds as b
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    where b.workspace_id = fixture.ws('q1')
    order by b.build_number
    $$,
    $$values (1, 'start', 'canceled'), (2, 'delete', 'succeeded')$$,
    'the start job is canceled and an orphan delete build is recorded, completed at once'
);

select results_eq(
    $$
    select w.deleted, b.initiator_id, b.preset_id
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    where w.id = fixture.ws('q1')
    $$,
    $$select true, prebuilds.system_user_id(), fixture.preset_of('old', 'v1')$$,
    'the workspace is marked deleted; the orphan delete is the system user''s, for the same preset'
);

select is(prebuilds.cancel_prebuild(fixture.ws('q1')), false, 'a second call: false');

select is(
    (select count(*)::int from prebuilds.workspace_builds where workspace_id = fixture.ws('q1')),
    2,
    'and it writes nothing'
);

-- A provisioner picks q2 up: the oldest queued job now that q1 is canceled.
create temp table got on commit drop as
select * from prebuilds.acquire_job('worker-1');

select is((select workspace_id from got), fixture.ws('q2'), 'the provisioner acquired q2');

select is(prebuilds.cancel_prebuild(fixture.ws('q2')), false, 'once picked up: false');

select results_eq(
    $$
    select w.deleted, j.status
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    where w.id = fixture.ws('q2')
    $$,
    $$values (false, 'running')$$,
    'q2 keeps running and is not deleted'
);

select is(
    prebuilds.cancel_prebuild(fixture.ws('active-queued')),
    false,
    'a queued initial build of an active preset: false'
);

select is(
    (
        select j.status from prebuilds.provisioner_jobs as j
        where j.id = fixture.latest_job(fixture.ws('active-queued'))
    ),
    'pending',
    'and its job stays pending'
);

select is(
    prebuilds.cancel_prebuild(fixture.ws('running'))
    or prebuilds.cancel_prebuild(gen_random_uuid()),
    false,
    'a running prebuild (to delete, not cancel) or an unknown workspace: false'
);

select * from finish();
rollback;
