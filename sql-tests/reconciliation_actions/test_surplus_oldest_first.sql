-- Surplus prebuilds are deleted oldest first (SPEC 4.4), by workspace creation time.
begin;
select plan(5);

do $$
declare
    v_p uuid := fixture.active_preset('t', 2);
begin
    -- Inserted out of age order, so that the plan cannot rely on insertion order.
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'w3');
    perform fixture.prebuild(v_p, '2025-06-02 08:00Z', p_name => 'w1');
    perform fixture.prebuild(v_p, '2025-06-02 11:00Z', p_name => 'w4');
    perform fixture.prebuild(v_p, '2025-06-02 09:00Z', p_name => 'w2');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:w1', 'delete:w2'],
    'four running, two desired: the two oldest are deleted'
);

select results_eq(
    $$
    select seq, workspace_id, reason
    from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    order by seq
    $$,
    $$
    values
        (1, fixture.ws('w1'), 'surplus: 4 running, 2 desired'),
        (2, fixture.ws('w2'), 'surplus: 4 running, 2 desired')
    $$,
    'seq orders them oldest first, and the reason gives the counts'
);

select results_eq(
    $$
    select desired, actual, eligible, expired, extraneous, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (2, 4, 4, 0, 2, null::text, 0)$$,
    'preset_state: extraneous 2, no creates'
);

update prebuilds.presets set desired_instances = 3;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:w1'],
    'with 3 desired only the oldest goes'
);

-- A surplus prebuild that is not ready is still surplus; age decides, not readiness.
update prebuilds.workspace_agents set lifecycle_state = 'starting'
where job_id = fixture.latest_job(fixture.ws('w4'));

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:w1'],
    'readiness does not change which surplus prebuild is deleted'
);

select * from finish();
rollback;
