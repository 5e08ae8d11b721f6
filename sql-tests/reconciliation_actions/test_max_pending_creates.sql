-- max_pending_creates (SPEC 2, 4.4): a deployment-wide cap on prebuild start jobs in flight.
-- Creates are interleaved across presets so that the cap never starves one; presets held back say
-- 'capped'; in-flight starts count against the cap; deletes are never capped.
begin;
select plan(9);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

do $$
begin
    perform fixture.active_preset('a', 3, p_preset => 'A');
    perform fixture.active_preset('b', 3, p_preset => 'B');
    perform fixture.active_preset('c', 3, p_preset => 'C');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'create:A', 'create:B', 'create:C', 'create:A', 'create:B', 'create:C',
        'create:A', 'create:B', 'create:C'
    ],
    'no cap (the default): nine creates, interleaved A, B, C, A, ...'
);

update prebuilds.settings set max_pending_creates = 4;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:A', 'create:B', 'create:C', 'create:A'],
    'cap 4 with nothing in flight: A, B, C, A'
);

select results_eq(
    $$select seq, preset_id from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    $$
    values
        (1, fixture.preset_of('a', 'v1', 'A')),
        (2, fixture.preset_of('b', 'v1', 'B')),
        (3, fixture.preset_of('c', 'v1', 'C')),
        (4, fixture.preset_of('a', 'v1', 'A'))
    $$,
    'seq and preset ids follow the interleaving'
);

select results_eq(
    $$
    select preset_name, desired, creates_planned, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values ('A', 3, 2, 'capped'), ('B', 3, 1, 'capped'), ('C', 3, 1, 'capped')$$,
    'every preset held back by the cap says capped'
);

-- A wants only one: it gets it and is not capped; B and C share the rest.
update prebuilds.presets set desired_instances = 1 where name = 'A';

select results_eq(
    $$
    select preset_name, creates_planned, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values ('A', 1, null::text), ('B', 2, 'capped'), ('C', 1, 'capped')$$,
    'a preset that gets all it wants is not capped'
);

-- Two prebuild starts in flight (one queued, one provisioning) leave room for two creates.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('c', 'v1', 'C'), '2025-06-02 11:00Z', 'starting');
    perform fixture.prebuild(
        fixture.preset_of('c', 'v1', 'C'), '2025-06-02 11:00Z', 'provisioning'
    );
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:A', 'create:B'],
    'starts in flight count against the cap: 4 - 2 = 2 creates'
);

select results_eq(
    $$
    select preset_name, starting, creates_planned, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values ('A', 0, 1, null::text), ('B', 0, 1, 'capped'), ('C', 2, 0, 'capped')$$,
    'C, starting two, still wants one and is capped'
);

-- Over the cap: nothing is created, but deletes go ahead.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('b', 'v1', 'B'), '2025-06-02 11:00Z', 'starting');
    perform fixture.prebuild(fixture.preset_of('b', 'v1', 'B'), '2025-06-02 11:00Z', 'starting');
    perform fixture.prebuild(
        fixture.preset_of('a', 'v1', 'A'), '2025-06-02 10:00Z', p_name => 'a1'
    );
    perform fixture.prebuild(
        fixture.preset_of('a', 'v1', 'A'), '2025-06-02 11:00Z', p_name => 'a2'
    );
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:a1'],
    'with the cap reached no creates are planned; the surplus delete is not capped'
);

update prebuilds.settings set max_pending_creates = null;

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:a1', 'create:B', 'create:C'],
    'removing the cap plans every wanted create'
);

select * from finish();
rollback;
