-- resume_preset (SPEC 4.2, 4.5): sets failures_reset_at to now(), so earlier failures no longer
-- count for the hard limit or backoff. Inside one transaction now() is fixed: the failures are
-- created before now() and the plan is evaluated at or after now().
begin;
select plan(11);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
begin
    perform fixture.prebuild(v_p, now() - interval '10 minutes', 'failed');
    perform fixture.prebuild(v_p, now() - interval '9 minutes', 'failed');
    perform fixture.prebuild(v_p, now() - interval '8 minutes', 'failed');
end;
$$;

select results_eq(
    $$
    select failures, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at(now())
    $$,
    $$values (3, true, 'hard_limited', 0)$$,
    'three failures: hard-limited'
);

select is(prebuilds.resume_preset(fixture.preset_of('t')), true, 'resume_preset: true');

select is(
    (select failures_reset_at from prebuilds.presets where id = fixture.preset_of('t')),
    now(),
    'failures_reset_at is now()'
);

select results_eq(
    $$
    select failures, backoff_until, hard_limited, blocked_reason, creates_planned
    from prebuilds.preset_state_at(now())
    $$,
    $$values (0, null::timestamptz, false, null::text, 1)$$,
    'after resume: no failures counted, not hard-limited, a create is planned'
);

select results_eq(
    $$select * from fixture.plan(now())$$,
    array['create:default'],
    'the plan creates again'
);

select is(prebuilds.resume_preset(fixture.preset_of('t')), true, 'resuming again: true');

select results_eq(
    $$select failures, hard_limited, creates_planned from prebuilds.preset_state_at(now())$$,
    $$values (0, false, 1)$$,
    'and nothing changes'
);

select is(prebuilds.resume_preset(gen_random_uuid()), false, 'an unknown preset: false');

-- A failure after the reset counts again.
do $$
begin
    perform fixture.prebuild(fixture.preset_of('t'), now() + interval '1 minute', 'failed');
end;
$$;

select results_eq(
    $$
    select failures, backoff_until, hard_limited, blocked_reason
    from prebuilds.preset_state_at(now() + interval '90 seconds')
    $$,
    $$values (1, now() + interval '2 minutes', false, 'backoff')$$,
    'a new failure after the reset backs off (1 failure x 1 minute) but does not hard-limit'
);

-- A resume ignores only the builds created before it.
select is(prebuilds.resume_preset(fixture.preset_of('t')), true, 'resuming once more: true');

select results_eq(
    $$
    select failures, backoff_until
    from prebuilds.preset_state_at(now() + interval '90 seconds')
    $$,
    $$values (1, now() + interval '2 minutes')$$,
    'the failure created after the resume instant still counts'
);

select * from finish();
rollback;
