-- complete_job and SPEC 5: completing is a last heartbeat (updated_at), and a failed delete adds
-- one to workspaces.delete_failures, which any other build resets.
begin;
select plan(4);

do $$
declare
    v_p uuid := fixture.active_preset('t', 0);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'ws');
    perform prebuilds.delete_prebuild(fixture.ws('ws'));
    update prebuilds.provisioner_jobs set started_at = '2025-06-02 10:00Z',
        updated_at = '2025-06-02 10:00Z'
    where id = fixture.latest_job(fixture.ws('ws'));
    perform prebuilds.complete_job(fixture.latest_job(fixture.ws('ws')), 'destroy failed');
end;
$$;

select is(
    (
        select updated_at from prebuilds.provisioner_jobs
        where id = fixture.latest_job(fixture.ws('ws'))
    ),
    now(),
    'completing a job records a last heartbeat'
);

select is(
    (select delete_failures from prebuilds.workspaces where name = 'ws'),
    1,
    'a failed delete counts'
);

do $$
begin
    perform fixture.build(fixture.ws('ws'), 'delete', 'running', now());
    perform prebuilds.complete_job(fixture.latest_job(fixture.ws('ws')), 'destroy failed again');
end;
$$;

select is(
    (select delete_failures from prebuilds.workspaces where name = 'ws'),
    2,
    'a second failed delete in a row: 2'
);

do $$
begin
    perform fixture.build(fixture.ws('ws'), 'start', 'succeeded', now());
end;
$$;

select is(
    (select delete_failures from prebuilds.workspaces where name = 'ws'),
    0,
    'a start build ends the run of failed deletes'
);

select * from finish();
rollback;
