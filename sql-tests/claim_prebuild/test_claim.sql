-- claim_prebuild (SPEC 4.5): takes the oldest eligible prebuild, gives it to the owner under the
-- given name and adds a start build initiated by the owner (never counted as a prebuild
-- starting); null when none is eligible; an error when the owner is the system user.
begin;
select plan(14);

do $$
declare
    v_p uuid := fixture.active_preset('t', 4, 86400);
begin
    perform fixture.user('alice');
    perform fixture.user('bob');
    perform fixture.user('carol');
    perform fixture.prebuild(v_p, now() - interval '3 hours', p_name => 'old');
    perform fixture.prebuild(v_p, now() - interval '1 hour', p_name => 'young');
    perform fixture.prebuild(
        v_p, now() - interval '4 hours', p_ready => false, p_name => 'not-ready'
    );
    perform fixture.prebuild(v_p, now() - interval '2 days', p_name => 'expired');
    perform fixture.prebuild(v_p, now() - interval '5 hours', 'starting', p_name => 'starting');
    perform fixture.prebuild(v_p, now() - interval '5 hours', 'stopped', p_name => 'stopped');
end;
$$;

-- Claims rename workspaces: keep the original names.
create temp table named on commit drop as
select
    w.name,
    w.id
from prebuilds.workspaces as w;

create temp table claims (who text, ws uuid) on commit drop;

insert into claims
select
    'alice' as who,
    prebuilds.claim_prebuild(fixture.preset_of('t'), u.id, 'alice-ws') as ws
from prebuilds.users as u where u.username = 'alice';

select is(
    (select ws from claims where who = 'alice'),
    (select id from named where name = 'old'),
    'the oldest eligible prebuild is taken (not the older not-ready, expired or starting ones)'
);

select results_eq(
    $$
    select w.owner_id, w.name, w.deleted
    from prebuilds.workspaces as w inner join claims as c on w.id = c.ws
    where c.who = 'alice'
    $$,
    $$select id, 'alice-ws', false from prebuilds.users where username = 'alice'$$,
    'it now belongs to alice, under her name'
);

select results_eq(
    $$
    select b.build_number, b.transition, b.initiator_id, b.preset_id, j.status, j.initiator_id
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    inner join prebuilds.provisioner_jobs as j on b.job_id = j.id
    where w.name = 'alice-ws'
    $$,
    $$
    select 2, 'start', u.id, fixture.preset_of('t'), 'pending', u.id
    from prebuilds.users as u where u.username = 'alice'
    $$,
    'a start build 2 initiated by alice, with a pending job of hers'
);

select results_eq(
    $$
    select actual, eligible, starting, creates_planned
    from prebuilds.preset_state_at(now())
    $$,
    $$values (3, 1, 1, 1)$$,
    'the pool lost a prebuild; alice''s start is not counted as starting'
);

select ok(
    not exists (
        select from prebuilds.reconciliation_actions_at(now())
        where workspace_id = (select ws from claims where who = 'alice')
    ),
    'the reconciler never plans anything for the claimed workspace'
);

insert into claims
select
    'bob' as who,
    prebuilds.claim_prebuild(fixture.preset_of('t'), u.id, 'bob-ws') as ws
from prebuilds.users as u where u.username = 'bob';

select is(
    (select ws from claims where who = 'bob'),
    (select id from named where name = 'young'),
    'bob gets the next one'
);

insert into claims
select
    'carol' as who,
    prebuilds.claim_prebuild(fixture.preset_of('t'), u.id, 'carol-ws') as ws
from prebuilds.users as u where u.username = 'carol';

select is((select ws from claims where who = 'carol'), null, 'none eligible left: null');

select is(
    (select count(*)::int from prebuilds.workspaces where name = 'carol-ws'),
    0,
    'and nothing changes hands'
);

select throws_ok(
    $$select prebuilds.claim_prebuild(fixture.preset_of('t'), prebuilds.system_user_id(), 'x')$$,
    '22023',
    null,
    'the system user cannot claim: invalid_parameter_value'
);

select throws_ok(
    $$select prebuilds.claim_prebuild(fixture.preset_of('t'), gen_random_uuid(), 'x')$$,
    '23503',
    null,
    'an unknown owner: foreign_key_violation'
);

-- An eligible prebuild of an inactive preset is not claimable.
do $$
begin
    perform fixture.agent(fixture.latest_job(fixture.ws('not-ready')));
    perform fixture.new_version('t', 'v2');
end;
$$;

select is(
    prebuilds.claim_prebuild(
        fixture.preset_of('t'), (select id from prebuilds.users where username = 'carol'), 'c'
    ),
    null,
    'a prebuild of an outdated version is not claimable'
);

update prebuilds.templates set active_version_id = (
    select v.id from prebuilds.template_versions as v where v.name = 'v1'
);

select is(
    prebuilds.claim_prebuild(
        fixture.preset_of('t'), (select id from prebuilds.users where username = 'carol'), 'c'
    ),
    (select id from named where name = 'not-ready'),
    'once ready and active again it is claimed'
);

select is(
    prebuilds.delete_prebuild((select id from named where name = 'not-ready')),
    false,
    'a claimed workspace cannot be deleted as a prebuild'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('t')),
    null,
    'claims make room: create_prebuild tops the pool up again'
);

select * from finish();
rollback;
