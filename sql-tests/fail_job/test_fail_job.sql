-- fail_job (SPEC 5.2): completes a hung job of a prebuild's latest build as failed, re-checking at
-- now() that it is still the system user's and still hung; everything else is left alone.
begin;
select plan(12);

do $$
declare
    v_p uuid := fixture.active_preset('t', 5);
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_p, now() - interval '1 hour', 'provisioning', p_name => 'silent');
    update prebuilds.provisioner_jobs set updated_at = now() - interval '7 minutes 12 seconds'
    where id = fixture.latest_job(fixture.ws('silent'));
    perform fixture.prebuild(v_p, now() - interval '1 hour', 'provisioning', p_name => 'beating');
    update prebuilds.provisioner_jobs set updated_at = now() - interval '1 minute'
    where id = fixture.latest_job(fixture.ws('beating'));
    perform fixture.prebuild(v_p, now() - interval '31 minutes', 'starting', p_name => 'unpicked');
    perform fixture.prebuild(v_p, now() - interval '1 hour', 'deleting', p_name => 'deleting');
    perform fixture.prebuild(v_p, now() - interval '1 hour', 'provisioning', p_owner => v_alice,
        p_name => 'alices');
    v_ws := fixture.prebuild(v_p, now() - interval '1 hour', p_name => 'stopped-by-alice');
    perform fixture.build(v_ws, 'stop', 'running', now() - interval '1 hour', v_alice);
end;
$$;

select is(prebuilds.fail_job(fixture.ws('silent')), true, 'a running job silent for 7 min: failed');

select results_eq(
    $$
    select status, error from prebuilds.provisioner_jobs
    where id = fixture.latest_job(fixture.ws('silent'))
    $$,
    $$values ('failed', 'hung: no heartbeat for 00:07:12')$$,
    'the job is failed with an error naming why'
);

select is(
    prebuilds.heartbeat_job(fixture.latest_job(fixture.ws('silent'))),
    false,
    'the provisioner''s next heartbeat learns the job is not its own any more'
);

select is(prebuilds.fail_job(fixture.ws('silent')), false, 'a second call does nothing');

select is(prebuilds.fail_job(fixture.ws('beating')), false, 'a job that beats is left alone');

select is(prebuilds.fail_job(fixture.ws('unpicked')), true, 'a job unpicked for 31 min: failed');

select results_eq(
    $$
    select status, error, started_at is not null from prebuilds.provisioner_jobs
    where id = fixture.latest_job(fixture.ws('unpicked'))
    $$,
    $$values ('failed', 'hung: not picked up for 00:31:00', true)$$,
    'never picked up: failed (and out of the queue for good)'
);

select is(prebuilds.fail_job(fixture.ws('deleting')), true, 'a hung delete is failed too');

select is(
    (select delete_failures from prebuilds.workspaces where name = 'deleting'),
    1,
    'a failed delete counts as one failed delete in a row (it will be retried)'
);

select is(
    (select sum(hung_failed)::int from prebuilds.preset_counters),
    3,
    'three hung jobs counted for the metrics'
);

select is(
    (select sum(failed)::int from prebuilds.preset_counters),
    2,
    'the two failed starts count as failed starts'
);

select ok(
    not prebuilds.fail_job(fixture.ws('alices'))
    and not prebuilds.fail_job(fixture.ws('stopped-by-alice'))
    and (
        select bool_and(j.status = 'running')
        from prebuilds.provisioner_jobs as j
        where j.id in (
                fixture.latest_job(fixture.ws('alices')),
                fixture.latest_job(fixture.ws('stopped-by-alice'))
            )
    ),
    'people''s jobs are never failed'
);

select * from finish();
rollback;
