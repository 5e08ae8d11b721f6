-- Backoff looks at the `desired` most recent start builds only (SPEC 4.2): a success more recent
-- than the failures clears it for a pool of 1, not for a pool of 2.
begin;
select plan(4);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1, 60);
begin
    perform fixture.prebuild(v_p, '2025-06-02 11:58:00Z', 'failed', p_name => 'f1');
    perform fixture.prebuild(v_p, '2025-06-02 11:58:10Z', 'failed', p_name => 'f2');
    -- Succeeded after the failures; expired (ttl 60 s) by 11:59:45, so a create is wanted.
    perform fixture.prebuild(v_p, '2025-06-02 11:58:30Z', p_name => 'ok');
end;
$$;

select results_eq(
    $$select * from fixture.plan('2025-06-02 11:59:45Z')$$,
    array['delete:ok', 'create:default'],
    'desired 1: the most recent build succeeded, so no backoff'
);

select results_eq(
    $$
    select failures, backoff_until, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 11:59:45Z')
    $$,
    $$values (2, null::timestamptz, null::text)$$,
    'the failures are counted but do not back off'
);

update prebuilds.presets set desired_instances = 2;

select results_eq(
    $$select * from fixture.plan('2025-06-02 11:59:45Z')$$,
    array['delete:ok', 'backoff:default'],
    'desired 2: the two most recent builds include a failure, so creates back off'
);

select results_eq(
    $$
    select failures, backoff_until, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 11:59:45Z')
    $$,
    $$values (2, '2025-06-02 12:00:10Z'::timestamptz, 'backoff')$$,
    'backoff_until = most recent failure 11:58:10 + 2 x 1 minute'
);

select * from finish();
rollback;
