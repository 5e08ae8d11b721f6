-- acquire_job (SPEC 4.5): jobs initiated by people first, then the oldest; marks the job started
-- by the worker; no row once the queue is empty. Running, canceling and finished jobs are skipped.
begin;
select plan(8);

do $$
declare
    v_p uuid := fixture.active_preset('t', 5);
    v_alice uuid := fixture.user('alice');
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'starting', p_name => 'sys-old');
    perform fixture.prebuild(v_p, '2025-06-02 10:30Z', 'starting', p_name => 'sys-new');
    perform fixture.prebuild(
        v_p, '2025-06-02 11:00Z', 'starting', p_owner => v_alice, p_name => 'alice-new'
    );
    perform fixture.prebuild(
        v_p, '2025-06-02 10:45Z', 'starting', p_owner => v_alice, p_name => 'alice-old'
    );
    perform fixture.prebuild(v_p, '2025-06-02 09:00Z', 'provisioning', p_name => 'running');
    perform fixture.prebuild(v_p, '2025-06-02 09:00Z', 'failed', p_name => 'done');
    -- A queued job whose cancellation was requested.
    perform fixture.prebuild(v_p, '2025-06-02 09:00Z', 'starting', p_name => 'canceling');
    update prebuilds.provisioner_jobs set canceled_at = '2025-06-02 09:01Z'
    where id = fixture.latest_job(fixture.ws('canceling'));
end;
$$;

create temp table got (n int, worker text, job_id uuid, workspace_id uuid) on commit drop;

insert into got (n, worker, job_id, workspace_id)
select
    1 as n,
    'w1' as worker,
    a.job_id,
    a.workspace_id
from prebuilds.acquire_job('w1') as a;

select results_eq(
    $$
    select a.workspace_id, a.build_number, a.transition, a.preset_id, a.initiator_id
    from prebuilds.acquire_job('w2') as a
    $$,
    $$
    select fixture.ws('alice-new'), 1, 'start', fixture.preset_of('t'), u.id
    from prebuilds.users as u where u.username = 'alice'
    $$,
    'the second call returns the job''s build: alice''s newer job, as people come first'
);

select is(
    (select workspace_id from got where n = 1),
    fixture.ws('alice-old'),
    'the first call took alice''s older job, ahead of older prebuild jobs'
);

select results_eq(
    $$
    select j.status, j.worker_id, j.started_at
    from prebuilds.provisioner_jobs as j where j.id = (select job_id from got where n = 1)
    $$,
    $$values ('running', 'w1', now())$$,
    'the acquired job is running, by w1, started now'
);

insert into got (n, worker, job_id, workspace_id)
select
    3 as n,
    'w1' as worker,
    a.job_id,
    a.workspace_id
from prebuilds.acquire_job('w1') as a;

insert into got (n, worker, job_id, workspace_id)
select
    4 as n,
    'w1' as worker,
    a.job_id,
    a.workspace_id
from prebuilds.acquire_job('w1') as a;

select results_eq(
    $$select workspace_id from got where n in (3, 4) order by n$$,
    $$values (fixture.ws('sys-old')), (fixture.ws('sys-new'))$$,
    'then the system user''s jobs, oldest first'
);

select is_empty(
    $$select * from prebuilds.acquire_job('w1')$$,
    'the queue is empty: no row (running, canceling and finished jobs are not handed out)'
);

select is(
    (
        select status from prebuilds.provisioner_jobs
        where id = fixture.latest_job(fixture.ws('canceling'))
    ),
    'canceling',
    'the canceling job was left alone'
);

select is(
    (select count(*)::int from prebuilds.provisioner_jobs where status = 'pending'),
    0,
    'every pending job was handed out once'
);

select is(
    (select starting from prebuilds.preset_state_at(now())),
    3,
    'acquired prebuild starts still count as starting; users'' and the canceling one do not'
);

select * from finish();
rollback;
