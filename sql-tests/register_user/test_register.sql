-- register_user: the user's id, created on first call, the same one on every later call; never
-- a system account; names checked like every name.
begin;
select plan(6);

create temp table ids on commit drop as
select prebuilds.register_user('alice') as alice;

select is(
    (select id from prebuilds.users where username = 'alice'), (select alice from ids),
    'the user is created and its id returned'
);
select is(
    prebuilds.register_user('alice'), (select alice from ids), 'the same id again'
);
select is(
    (select is_system from prebuilds.users where username = 'alice'), false, 'a person'
);
select throws_ok(
    $$select prebuilds.register_user('prebuilds')$$, '22023',
    'invalid username: ''prebuilds'' is a system account', 'the system user is not a person'
);
select throws_ok(
    $$select prebuilds.register_user(repeat('u', 201))$$, '22023',
    'invalid username: must be 1 to 200 characters (got 201)', 'a name too long'
);
select is((select count(*)::int from prebuilds.users), 2, 'alice and the system user only');

select * from finish();
rollback;
