-- failure_hard_limit = 0 disables the hard limit (SPEC 2, 4.2).
begin;
select plan(4);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
    v_i int;
begin
    for v_i in 0..4 loop
        perform fixture.prebuild(
            v_p, '2025-06-02 10:00Z'::timestamptz + v_i * interval '10 minutes', 'failed'
        );
    end loop;
end;
$$;

select results_eq(
    $$select hard_limited, blocked_reason from prebuilds.preset_state_at('2025-06-02 12:00Z')$$,
    $$values (true, 'hard_limited')$$,
    'five failures in a row hard-limit with the default limit'
);

update prebuilds.settings set failure_hard_limit = 0;

select results_eq(
    $$
    select failures, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (0, false, null::text, 1)$$,
    'with the limit at 0 the preset is not hard-limited (the failures are past the lookback)'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['create:default'],
    'and it creates again'
);

select results_eq(
    $$select hard_limited, blocked_reason from prebuilds.preset_state_at('2025-06-02 10:40:30Z')$$,
    $$values (false, 'backoff')$$,
    'backoff still applies without a hard limit'
);

select * from finish();
rollback;
