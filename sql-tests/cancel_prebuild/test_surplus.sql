-- cancel_prebuild on an active preset (SPEC 5.3): only while, under the preset's row lock, the
-- running unexpired and starting prebuilds are more than desired.
begin;
select plan(5);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
begin
    perform fixture.prebuild(v_p, now() - interval '1 hour', p_name => 'running');
    perform fixture.prebuild(v_p, now() - interval '2 minutes', 'starting', p_name => 'q1');
    perform fixture.prebuild(v_p, now() - interval '1 minute', 'starting', p_name => 'q2');
end;
$$;

select is(
    prebuilds.cancel_prebuild(fixture.ws('q2')), true, '1 running + 2 starting > 1: cancelled'
);
select results_eq(
    $$
    select w.deleted, j.status
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.workspace_id = w.id and b.build_number = 1
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where w.name = 'q2'
    $$,
    $$values (true, 'canceled')$$,
    'its job is canceled and the workspace deleted'
);
select is(
    prebuilds.cancel_prebuild(fixture.ws('q1')), true, '1 running + 1 starting > 1: cancelled'
);

-- The pool grows meanwhile: the queued build is wanted again.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), now(), 'starting', p_name => 'q3');
end;
$$;
update prebuilds.presets set desired_instances = 2;
select is(prebuilds.cancel_prebuild(fixture.ws('q3')), false, '1 running + 1 starting = 2: kept');

-- An expired running prebuild does not count.
update prebuilds.presets set ttl_seconds = 60, desired_instances = 1;
select is(
    prebuilds.cancel_prebuild(fixture.ws('q3')),
    false,
    '0 unexpired running + 1 starting = 1 desired: kept'
);

select * from finish();
rollback;
