-- Inactive presets (SPEC 4.2): desired 0, eligible 0, extraneous 0, hard_limited false and
-- backoff_until null even with the failures that would hard-limit and back off an active one;
-- pending_cancelable counts their queued initial builds.
begin;
select plan(4);

do $$
declare
    v_p uuid := fixture.active_preset('t', 2);
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', p_name => 'running');
    perform fixture.prebuild(v_p, '2025-06-02 11:57Z', 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 11:58Z', 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 11:59Z', 'failed');
    perform fixture.prebuild(v_p, '2025-06-02 11:59:30Z', 'starting', p_name => 'queued');
end;
$$;

select results_eq(
    $$
    select is_active, hard_limited, backoff_until, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, true, '2025-06-02 12:02Z'::timestamptz, null::text)$$,
    'active: hard-limited (a build in flight neither ends nor extends the limit, SPEC 5.4), '
    || 'backoff_until set, nothing wanted'
);

update prebuilds.workspaces set deleted = true where name = 'queued';

select results_eq(
    $$
    select is_active, backoff_until, hard_limited, blocked_reason
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (true, '2025-06-02 12:02Z'::timestamptz, true, 'hard_limited')$$,
    'active: hard-limited and backing off'
);

update prebuilds.workspaces set deleted = false where name = 'queued';
update prebuilds.templates set deprecated = true;

select results_eq(
    $$
    select is_active, desired, actual, eligible, expired, extraneous, starting, pending_cancelable,
           backoff_until, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$values (false, 0, 1, 0, 0, 0, 1, 1, null::timestamptz, false, null::text, 0)$$,
    'inactive: desired 0, nothing eligible or extraneous, no hard limit or backoff, 1 cancelable'
);

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['cancel:queued', 'delete:running'],
    'inactive: the queued build is cancelled and the running prebuild deleted, nothing created'
);

select * from finish();
rollback;
