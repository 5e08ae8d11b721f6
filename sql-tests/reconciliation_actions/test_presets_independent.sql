-- Several presets on one version are independent (SPEC 4.2): counts, surplus, creates and backoff
-- are per preset.
begin;
select plan(5);

do $$
declare
    v_version uuid := fixture.version(fixture.template('t'), 'v1');
    v_small uuid := fixture.preset(v_version, 'small', 1);
    v_large uuid := fixture.preset(v_version, 'large', 3);
    v_broken uuid := fixture.preset(v_version, 'broken', 1);
begin
    perform fixture.prebuild(v_small, '2025-06-02 10:00Z', p_name => 's1');
    perform fixture.prebuild(v_small, '2025-06-02 11:00Z', p_name => 's2');
    perform fixture.prebuild(v_large, '2025-06-02 09:00Z', p_name => 'l1');
    perform fixture.prebuild(v_broken, '2025-06-02 11:59:30Z', 'failed');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:s1', 'create:large', 'create:large', 'backoff:broken'],
    'small deletes its surplus, large creates two, broken backs off'
);

select results_eq(
    $$
    select preset_name, desired, actual, eligible, extraneous, failures, blocked_reason,
           creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('broken', 1, 0, 0, 0, 1, 'backoff', 0),
        ('large', 3, 1, 1, 0, 0, null::text, 2),
        ('small', 1, 2, 2, 1, 0, null, 0)
    $$,
    'each preset counts only its own prebuilds and failures'
);

select results_eq(
    $$
    select preset_id from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    order by seq
    $$,
    $$
    values
        (fixture.preset_of('t', 'v1', 'small')),
        (fixture.preset_of('t', 'v1', 'large')),
        (fixture.preset_of('t', 'v1', 'large')),
        (fixture.preset_of('t', 'v1', 'broken'))
    $$,
    'each action carries its own preset'
);

-- large's prebuild moves to small (a later build names small): it now counts there.
do $$
begin
    perform fixture.build(
        fixture.ws('l1'), 'start', 'succeeded', '2025-06-02 11:30Z',
        p_preset_id => fixture.preset_of('t', 'v1', 'small')
    );
    perform fixture.agent(fixture.latest_job(fixture.ws('l1')));
end;
$$;

select results_eq(
    $$select preset_name, actual from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values ('broken', 0), ('large', 0), ('small', 3)$$,
    'a prebuild counts in the preset of its latest build that names one'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'delete:l1', 'delete:s1', 'create:large', 'create:large', 'create:large', 'backoff:broken'
    ],
    'small deletes its two oldest; large creates three'
);

select * from finish();
rollback;
