-- The migration creates the system user prebuilds with Coder's id (SPEC 2), and the settings row
-- with its defaults.
begin;
select plan(3);

select results_eq(
    $$select id, username, is_system from prebuilds.users where is_system$$,
    $$values ('c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid, 'prebuilds', true)$$,
    'the system user prebuilds exists with id c42fdf75-3097-471c-8c33-fb52454d81c0'
);

select is(
    prebuilds.system_user_id(),
    'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid,
    'system_user_id() returns that id'
);

select results_eq(
    $$
    select reconciliation_paused, backoff_interval, backoff_lookback, failure_hard_limit,
           max_pending_creates
    from prebuilds.settings
    $$,
    $$values (false, interval '1 minute', interval '1 hour', 3, null::int)$$,
    'one settings row with the defaults: not paused, 1 minute, 1 hour, limit 3, no cap'
);

select * from finish();
rollback;
