-- report_agent_lifecycle (SPEC 2, 4.5): creates the agent on first report and updates it after;
-- calling it twice is harmless; readiness follows the agents' states.
begin;
select plan(10);

do $$
begin
    perform fixture.prebuild(
        fixture.active_preset('t', 1), '2025-06-02 10:00Z', p_ready => false, p_name => 'p'
    );
end;
$$;

create temp table reports (n int, agent uuid) on commit drop;

select is(
    (select eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    0,
    'no agent yet: not eligible'
);

insert into reports
select
    1 as n,
    prebuilds.report_agent_lifecycle(
        fixture.latest_job(fixture.ws('p')), 'main', 'starting'
    ) as agent;

select results_eq(
    $$
    select a.id, a.name, a.lifecycle_state, a.deleted
    from prebuilds.workspace_agents as a
    where a.job_id = fixture.latest_job(fixture.ws('p'))
    $$,
    $$select agent, 'main', 'starting', false from reports where n = 1$$,
    'the first report creates the agent and returns its id'
);

select is(
    (select eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    0,
    'an agent still starting: not eligible'
);

insert into reports
select
    2 as n,
    prebuilds.report_agent_lifecycle(
        fixture.latest_job(fixture.ws('p')), 'main', 'ready'
    ) as agent;
insert into reports
select
    3 as n,
    prebuilds.report_agent_lifecycle(
        fixture.latest_job(fixture.ws('p')), 'main', 'ready'
    ) as agent;

select is(
    (select count(distinct agent)::int from reports),
    1,
    'later reports (also the same one twice) update the same agent'
);

select results_eq(
    $$
    select count(*)::int, min(lifecycle_state) from prebuilds.workspace_agents
    where job_id = fixture.latest_job(fixture.ws('p'))
    $$,
    $$values (1, 'ready')$$,
    'one agent, ready'
);

select is(
    (select eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    1,
    'its only agent ready: eligible'
);

insert into reports
select
    4 as n,
    prebuilds.report_agent_lifecycle(
        fixture.latest_job(fixture.ws('p')), 'sidecar', 'created'
    ) as agent;

select is(
    (select eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    0,
    'a second agent not yet ready: not eligible'
);

select isnt(
    (select agent from reports where n = 4),
    (select agent from reports where n = 1),
    'a second agent name is a second agent'
);

select throws_ok(
    $$
    select prebuilds.report_agent_lifecycle(fixture.latest_job(fixture.ws('p')), 'main', 'sleepy')
    $$,
    '23514',
    null,
    'an unknown lifecycle state is rejected (check_violation)'
);

select throws_ok(
    $$select prebuilds.report_agent_lifecycle(gen_random_uuid(), 'main', 'ready')$$,
    '23503',
    null,
    'an agent of an unknown job is rejected (foreign_key_violation)'
);

select * from finish();
rollback;
