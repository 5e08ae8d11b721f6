-- The settings row cannot be deleted or truncated (issue 7), and its bounds are checked.
begin;
select plan(6);

select throws_ok(
    'delete from prebuilds.settings',
    '23001',
    'prebuilds.settings must keep its one row: update it instead of deleting it',
    'delete is refused with a message naming the table'
);
select throws_ok(
    'truncate prebuilds.settings', '23001', null, 'truncate is refused'
);
select is((select count(*)::int from prebuilds.settings), 1, 'the row is still there');
select is(
    (select max_actions_per_cycle from prebuilds.settings), 1000,
    'max_actions_per_cycle defaults to 1000'
);
select throws_ok(
    'update prebuilds.settings set max_actions_per_cycle = 0', '23514', null,
    'max_actions_per_cycle below 1 is refused'
);
select throws_ok(
    'update prebuilds.settings set max_pending_creates = 100001', '23514', null,
    'max_pending_creates above 100,000 is refused'
);

select * from finish();
rollback;
