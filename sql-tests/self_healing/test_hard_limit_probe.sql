-- Hard limits recover by themselves (SPEC 5.4): a hard-limited active preset whose last failure
-- finished more than hard_limit_cooldown ago and has nothing starting gets exactly one create,
-- the probe. hard_limited and blocked_reason stay until the probe succeeds; a failed probe
-- re-arms the cooldown; a null cooldown never probes.
begin;
select plan(10);

do $$
declare
    v_p uuid := fixture.active_preset('t', 3);
begin
    perform fixture.prebuild(v_p, '2025-06-02 11:05Z', 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 11:10Z', 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 11:20Z', 'failed');
end;
$$;

select is(
    (select hard_limit_cooldown from prebuilds.settings),
    interval '1 hour',
    'the default cooldown is one hour'
);

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 12:19:59Z')$$,
    'one second before the cooldown ends: nothing'
);

select results_eq(
    $$select action, reason from prebuilds.reconciliation_actions_at('2025-06-02 12:20Z')$$,
    $$
    values (
        'create',
        'probe: hard-limited since 2025-06-02 11:05:00+00, last failure 2025-06-02 11:20:00+00, '
        || 'cooldown 01:00:00'
    )
    $$,
    'at the end of the cooldown: exactly one create (3 wanted), the probe'
);

select results_eq(
    $$
    select hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:20Z')
    $$,
    $$values (true, 'hard_limited', 1)$$,
    'while probing the preset stays hard-limited'
);

-- The probe is created and starts: nothing more until it ends.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 12:20Z', 'starting',
        p_name => 'probe');
end;
$$;

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 12:45Z')$$,
    'a probe in flight: no second probe'
);

-- The probe fails at 12:30: the cooldown starts again from its failure.
update prebuilds.provisioner_jobs
set started_at = '2025-06-02 12:21Z', completed_at = '2025-06-02 12:30Z', error = 'still broken'
where id = fixture.latest_job(fixture.ws('probe'));

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-02 13:29:59Z')$$,
    'a failed probe re-arms the cooldown (from when it finished)'
);

select results_eq(
    $$select action from prebuilds.reconciliation_actions_at('2025-06-02 13:30Z')$$,
    $$values ('create')$$,
    'and probes again an hour later'
);

select is(
    (select last_error from prebuilds.preset_state_at('2025-06-02 13:00Z')),
    'still broken',
    'last_error: the error of the most recent failed start'
);

update prebuilds.settings set hard_limit_cooldown = null;

select is_empty(
    $$select from prebuilds.reconciliation_actions_at('2025-06-03 12:00Z')$$,
    'a null cooldown never probes: only resume clears the limit'
);

update prebuilds.settings set hard_limit_cooldown = '1 hour';

-- The next probe succeeds: the limit is over and the pool fills normally.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), '2025-06-02 13:30Z', p_name => 'probe-2');
end;
$$;

select results_eq(
    $$
    select hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 13:40Z')
    $$,
    $$values (false, null::text, 2)$$,
    'a successful probe ends the hard limit: the two missing prebuilds are created'
);

select * from finish();
rollback;
