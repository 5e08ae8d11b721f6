-- The columns of preset_state_at for an active preset (SPEC 3, 4.2): names, counts by state,
-- eligible = running, unexpired and ready; extraneous = max(running - expired - desired, 0).
begin;
select plan(7);

do $$
declare
    v_p uuid := fixture.active_preset('t', 3, 3600, 'mixed');
begin
    perform fixture.prebuild(v_p, '2025-06-02 11:30Z', p_name => 'ready');
    perform fixture.prebuild(v_p, '2025-06-02 11:40Z', p_ready => false, p_name => 'not-ready');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'expired');
    perform fixture.prebuild(v_p, '2025-06-02 11:50Z', 'starting', p_name => 'starting');
    perform fixture.prebuild(v_p, '2025-06-02 11:50Z', 'stopping', p_name => 'stopping');
    perform fixture.prebuild(v_p, '2025-06-02 11:50Z', 'deleting', p_name => 'deleting');
    perform fixture.prebuild(v_p, '2025-06-02 09:00Z', 'stopped', p_name => 'stopped');
end;
$$;

select results_eq(
    $$
    select preset_id, organization_name, template_name, template_version_name, preset_name
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$select fixture.preset_of('t', 'v1', 'mixed'), 'acme', 't', 'v1', 'mixed'$$,
    'the row names its preset, organization, template and version'
);

select results_eq(
    $$
    select is_active, desired, actual, eligible, expired, extraneous
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, 3, 3, 1, 1, 0)$$,
    'running 3 (ready, not-ready, expired), eligible 1, expired 1, not extraneous'
);

select results_eq(
    $$
    select starting, stopping, deleting, pending_cancelable, failures, backoff_until,
           hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (1, 1, 1, 0, 0, null::timestamptz, false, null::text, 0)$$,
    'one each starting, stopping, deleting; 3 - (3 - 1) - 1 = 0 creates'
);

update prebuilds.presets set desired_instances = 1;

select results_eq(
    $$select desired, extraneous from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (1, 1)$$,
    'desired 1: extraneous = 3 - 1 - 1'
);

update prebuilds.presets set ttl_seconds = null;

select results_eq(
    $$select expired, eligible, extraneous from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (0, 2, 2)$$,
    'without a ttl: nothing expired, 2 eligible, extraneous 3 - 0 - 1'
);

update prebuilds.presets set desired_instances = 10;

select results_eq(
    $$select extraneous, creates_planned from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (0, 6)$$,
    'extraneous is never negative; creates 10 - 3 - 1 starting'
);

select results_eq(
    $$
    select preset_id, desired, actual, eligible
    from prebuilds.preset_state
    $$,
    $$
    select preset_id, desired, actual, eligible
    from prebuilds.preset_state_at(now())
    $$,
    'the view preset_state is the function at now()'
);

select * from finish();
rollback;
