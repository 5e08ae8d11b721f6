-- heartbeat_job (SPEC 5.2): advances updated_at of a running job and answers true; answers false
-- and writes nothing for a job that is not running (queued, finished, canceling, unknown), which
-- tells the provisioner to stop the job's command. acquire_job gives the first heartbeat.
begin;
select plan(9);

do $$
declare
    v_p uuid := fixture.active_preset('t', 5);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'provisioning', p_name => 'running');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'failed', p_name => 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'provisioning', p_name => 'canceling');
    update prebuilds.provisioner_jobs set canceled_at = '2025-06-02 10:05Z'
    where id = fixture.latest_job(fixture.ws('canceling'));
    -- Heartbeats an hour old: the job looks hung until it beats again.
    update prebuilds.provisioner_jobs set updated_at = '2025-06-02 10:00Z'
    where started_at is not null;
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'queued');
end;
$$;

select is(
    prebuilds.heartbeat_job(fixture.latest_job(fixture.ws('running'))),
    true,
    'a running job: true'
);

select is(
    (
        select updated_at from prebuilds.provisioner_jobs
        where id = fixture.latest_job(fixture.ws('running'))
    ),
    now(),
    'its heartbeat is now'
);

select is(
    prebuilds.heartbeat_job(fixture.latest_job(fixture.ws('queued'))),
    false,
    'a queued job nobody picked up: false'
);

select is(
    prebuilds.heartbeat_job(fixture.latest_job(fixture.ws('failed'))),
    false,
    'a completed job: false'
);

select is(
    prebuilds.heartbeat_job(fixture.latest_job(fixture.ws('canceling'))),
    false,
    'a job whose cancellation was requested: false (its command should stop)'
);

select is(
    prebuilds.heartbeat_job(gen_random_uuid()),
    false,
    'an unknown job: false'
);

select results_eq(
    $$
    select w.name, j.updated_at
    from prebuilds.workspaces as w
    inner join prebuilds.provisioner_jobs as j on j.id = fixture.latest_job(w.id)
    where w.name in ('queued', 'failed', 'canceling')
    order by w.name
    $$,
    $$
    values
    ('canceling', '2025-06-02 10:00Z'::timestamptz),
    ('failed', '2025-06-02 10:00Z'::timestamptz),
    ('queued', null)
    $$,
    'false means nothing was written'
);

create temp table taken on commit drop as
select a.job_id from prebuilds.acquire_job('w1') as a;

select results_eq(
    $$
    select j.status, j.updated_at
    from prebuilds.provisioner_jobs as j inner join taken on j.id = taken.job_id
    $$,
    $$values ('running', now())$$,
    'acquire_job gives the job its first heartbeat'
);

select is(
    (
        select prebuilds.complete_job(taken.job_id) and not prebuilds.heartbeat_job(taken.job_id)
        from taken
    ),
    true,
    'once completed, heartbeats answer false'
);

select * from finish();
rollback;
