-- complete_job (SPEC 4.5): finishes a started job (failed when an error is given); a successful
-- delete marks the workspace deleted. False on a second call or for a job never started; an error
-- for an unknown job id.
begin;
select plan(12);

do $$
declare
    v_p uuid := fixture.active_preset('t', 2);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'to-delete');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'delete-fails');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'provisioning', p_name => 'start-fails');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'provisioning', p_name => 'start-ok');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'queued');
    perform prebuilds.delete_prebuild(fixture.ws('to-delete'));
    perform prebuilds.delete_prebuild(fixture.ws('delete-fails'));
    -- A worker takes both delete jobs (the only queued jobs besides `queued`'s, which is older).
    update prebuilds.provisioner_jobs set started_at = now(), worker_id = 'w1'
    where id in (
        fixture.latest_job(fixture.ws('to-delete')), fixture.latest_job(fixture.ws('delete-fails'))
    );
end;
$$;

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('to-delete'))),
    true,
    'completing a started delete job: true'
);

select results_eq(
    $$
    select w.deleted, j.status, j.completed_at, j.error
    from prebuilds.workspaces as w
    inner join prebuilds.provisioner_jobs as j on j.id = fixture.latest_job(w.id)
    where w.id = fixture.ws('to-delete')
    $$,
    $$values (true, 'succeeded', now(), null::text)$$,
    'the job succeeded and the workspace is marked deleted'
);

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('to-delete'))),
    false,
    'a second call: false'
);

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('delete-fails')), 'destroy failed'),
    true,
    'completing a delete job with an error: true'
);

select results_eq(
    $$
    select w.deleted, j.status, j.error
    from prebuilds.workspaces as w
    inner join prebuilds.provisioner_jobs as j on j.id = fixture.latest_job(w.id)
    where w.id = fixture.ws('delete-fails')
    $$,
    $$values (false, 'failed', 'destroy failed')$$,
    'a failed delete leaves the workspace in place'
);

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('start-fails')), 'apply failed'),
    true,
    'failing a running start job: true'
);

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('start-ok'))),
    true,
    'succeeding a running start job: true'
);

select results_eq(
    $$
    select actual, starting, failures from prebuilds.preset_state_at(now())
    $$,
    $$values (1, 1, 0)$$,
    'start-ok now runs, queued still starts, the failed delete is no longer running'
);

select results_eq(
    $$
    select w.name, j.status from prebuilds.workspaces as w
    inner join prebuilds.provisioner_jobs as j on j.id = fixture.latest_job(w.id)
    where w.name in ('start-fails', 'start-ok')
    order by w.name
    $$,
    $$values ('start-fails', 'failed'), ('start-ok', 'succeeded')$$,
    'the start jobs are failed and succeeded'
);

select is(
    prebuilds.complete_job(fixture.latest_job(fixture.ws('queued'))),
    false,
    'a job no worker started: false'
);

select is(
    (
        select status from prebuilds.provisioner_jobs
        where id = fixture.latest_job(fixture.ws('queued'))
    ),
    'pending',
    'and it stays pending'
);

select throws_ok(
    $$select prebuilds.complete_job(gen_random_uuid())$$,
    'P0002',
    null,
    'an unknown job id: no_data_found'
);

select * from finish();
rollback;
