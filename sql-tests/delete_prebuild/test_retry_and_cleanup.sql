-- delete_prebuild's re-check of SPEC 5 (at now()): a failed delete whose retry is due and not
-- quarantined, and a failed or stopped prebuild past failed_prebuild_retention, are deleted;
-- one not due yet, quarantined, or within the retention is not.
begin;
select plan(11);

do $$
declare
    v_p uuid := fixture.active_preset('t', 0);
    v_ws uuid;
begin
    v_ws := fixture.prebuild(v_p, now() - interval '1 day', p_name => 'due');
    perform fixture.build(v_ws, 'delete', 'failed', now() - interval '61 seconds');
    v_ws := fixture.prebuild(v_p, now() - interval '1 day', p_name => 'not-due');
    perform fixture.build(v_ws, 'delete', 'failed', now() - interval '59 seconds');
    v_ws := fixture.prebuild(v_p, now() - interval '1 day', p_name => 'quarantined');
    perform fixture.build(v_ws, 'delete', 'failed', now() - interval '1 day');
    perform fixture.build(v_ws, 'delete', 'failed', now() - interval '1 day');
    perform fixture.prebuild(v_p, now() - interval '3 days', 'failed', p_name => 'failed-old');
    perform fixture.prebuild(v_p, now() - interval '3 hours', 'stopped', p_name => 'stopped');
end;
$$;

select is(prebuilds.delete_prebuild(fixture.ws('not-due')), false, 'retry not due yet: no');
select is(prebuilds.delete_prebuild(fixture.ws('due')), true, 'retry due: a delete is queued');
select results_eq(
    $$
    select b.transition, j.status, w.delete_failures
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where w.name = 'due'
    $$,
    $$values ('delete', 'pending', 1)$$,
    'the retry is a new pending delete build; the count of failures stays until it ends'
);
select is(prebuilds.delete_prebuild(fixture.ws('due')), false, 'called twice: nothing more');
select is(
    (select sum(delete_retried)::int from prebuilds.preset_counters), 1, 'one retry counted'
);

update prebuilds.settings set delete_retry_limit = 1;
select is(
    prebuilds.delete_prebuild(fixture.ws('quarantined')),
    false,
    'two failures with a limit of 1: quarantined, not deleted'
);
update prebuilds.settings set delete_retry_limit = 2;
select is(prebuilds.delete_prebuild(fixture.ws('quarantined')), true, 'a limit of 2: retried');

select is(
    prebuilds.delete_prebuild(fixture.ws('failed-old')),
    false,
    'a failed prebuild without retention is kept'
);
update prebuilds.settings set failed_prebuild_retention = '1 day';
select is(prebuilds.delete_prebuild(fixture.ws('failed-old')), true, 'past the retention: deleted');
select is(prebuilds.delete_prebuild(fixture.ws('stopped')), false, 'within the retention: kept');
update prebuilds.settings set failed_prebuild_retention = '1 hour';
select is(prebuilds.delete_prebuild(fixture.ws('stopped')), true, 'a shorter retention: deleted');

select * from finish();
rollback;
