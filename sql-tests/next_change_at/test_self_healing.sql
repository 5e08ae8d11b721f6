-- next_change_at (SPEC 6.1) and the self-healing rules (SPEC 5): the loop wakes when a failed
-- delete's retry is due, just after a job hangs, when a hard-limited preset's cooldown ends and
-- just after a failed or stopped prebuild passes its retention; the plan changes at each instant.
begin;
select plan(9);

create temp table ids on commit drop as
select
    fixture.active_preset('t', 0) as preset,
    fixture.active_preset('u', 1) as limited;

select is(
    prebuilds.next_change_at('2025-06-02 12:00Z'), null::timestamptz, 'nothing due: null'
);

do $$
declare
    v_ws uuid;
begin
    v_ws := fixture.prebuild((select preset from ids), '2025-06-01 10:00Z', p_name => 'retry');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 12:00Z');
end;
$$;
select is(
    prebuilds.next_change_at('2025-06-02 12:00:30Z'), '2025-06-02 12:01Z'::timestamptz,
    'a failed delete: its retry instant'
);
select results_eq(
    $$
    select action from prebuilds.reconciliation_actions_at('2025-06-02 12:01Z')
    where workspace_id = fixture.ws('retry')
    $$,
    $$values ('delete')$$,
    'and the plan retries it then'
);

do $$
begin
    perform fixture.prebuild((select preset from ids), '2025-06-02 12:00Z', 'provisioning',
        p_name => 'silent');
end;
$$;
select is(
    prebuilds.next_change_at('2025-06-02 12:01Z'), '2025-06-02 12:05:00.000001Z'::timestamptz,
    'a running job: just after its heartbeat plus job_heartbeat_timeout'
);
select results_eq(
    $$
    select action from prebuilds.reconciliation_actions_at('2025-06-02 12:05:00.000001Z')
    where workspace_id = fixture.ws('silent')
    $$,
    $$values ('fail_job')$$,
    'and the plan fails it then'
);

update prebuilds.workspaces set deleted = true where name in ('retry', 'silent');
do $$
begin
    perform fixture.prebuild((select limited from ids), '2025-06-02 11:00Z', 'failed');
    perform fixture.prebuild((select limited from ids), '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild((select limited from ids), '2025-06-02 11:20Z', 'failed');
end;
$$;
select is(
    prebuilds.next_change_at('2025-06-02 12:00Z'), '2025-06-02 12:20Z'::timestamptz,
    'a hard-limited preset: the end of its cooldown'
);
select results_eq(
    $$select reason like 'probe:%' from prebuilds.reconciliation_actions_at('2025-06-02 12:20Z')$$,
    $$values (true)$$,
    'and the probe is planned then'
);

update prebuilds.settings set hard_limit_cooldown = null, failed_prebuild_retention = '1 day';
select is(
    prebuilds.next_change_at('2025-06-02 12:00Z'), '2025-06-03 11:00:00.000001Z'::timestamptz,
    'with a retention: just after the oldest failed prebuild is a day old'
);
select results_eq(
    $$
    select reason from prebuilds.reconciliation_actions_at('2025-06-03 11:00:00.000001Z')
    $$,
    $$values ('cleanup: failed start finished 1 day ago')$$,
    'and the plan cleans it up then'
);

select * from finish();
rollback;
