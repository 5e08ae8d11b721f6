-- Readiness (SPEC 2, 4.2): a running prebuild counts in actual, but is eligible only when it has an
-- agent and all its non-deleted agents are ready. Not-ready prebuilds are neither replaced nor
-- deleted for being not ready.
begin;
select plan(5);

do $$
declare
    v_p uuid := fixture.active_preset('t', 5);
    v_ws uuid;
    v_job uuid;
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'ready');
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_ready => false, p_name => 'no-agent');

    v_ws := fixture.prebuild(
        v_p, '2025-06-02 10:00Z', p_ready => false, p_name => 'starting-agent'
    );
    perform fixture.agent(fixture.latest_job(v_ws), 'starting');

    v_ws := fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'one-failed-agent');
    perform prebuilds.report_agent_lifecycle(fixture.latest_job(v_ws), 'sidecar', 'start_error');

    -- A deleted agent that is not ready does not count against readiness.
    v_ws := fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'deleted-agent');
    v_job := fixture.latest_job(v_ws);
    perform prebuilds.report_agent_lifecycle(v_job, 'old', 'start_error');
    update prebuilds.workspace_agents set deleted = true where job_id = v_job and name = 'old';
end;
$$;

select results_eq(
    $$
    select actual, eligible, expired, extraneous
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (5, 2, 0, 0)$$,
    'five running, two eligible (the ready one and the one whose failed agent is deleted)'
);

select is_empty(
    $$select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')$$,
    'not-ready prebuilds fill the pool: no create, no delete'
);

do $$
begin
    perform fixture.agent(fixture.latest_job(fixture.ws('no-agent')), 'ready');
    perform fixture.agent(fixture.latest_job(fixture.ws('starting-agent')), 'ready');
end;
$$;

select is(
    (select eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')),
    4,
    'agents reporting ready make their prebuilds eligible'
);

update prebuilds.templates set deprecated = true;

select results_eq(
    $$select actual, eligible from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (5, 0)$$,
    'an inactive preset has nothing eligible, ready or not'
);

-- An agent that is deleted leaves no agent at all: not ready.
update prebuilds.workspace_agents set deleted = true
where job_id = fixture.latest_job(fixture.ws('ready'));

select is(
    prebuilds.agents_ready(fixture.latest_job(fixture.ws('ready'))),
    false,
    'a prebuild whose only agent is deleted is not ready'
);

select * from finish();
rollback;
