-- cleanup_prebuilds (SPEC 5.5, `prebuilds cleanup`): failed, stopped and quarantined prebuilds,
-- filtered, oldest first; a dry run returns exactly the rows a real run acts on and changes
-- nothing; people's workspaces are never listed; bad arguments are named.
begin;
select plan(9);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
    v_q uuid := fixture.active_preset('u', 1);
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_p, now() - interval '3 days', 'failed', p_name => 'failed');
    perform fixture.prebuild(v_p, now() - interval '2 days', 'stopped', p_name => 'stopped');
    perform fixture.prebuild(v_q, now() - interval '1 day', 'failed', p_name => 'u-failed');
    v_ws := fixture.prebuild(v_p, now() - interval '4 days', p_name => 'quarantined');
    for i in 1..6 loop
        perform fixture.build(v_ws, 'delete', 'failed', now() - interval '4 days');
    end loop;
    perform fixture.prebuild(v_p, now() - interval '5 days', 'stopped', p_owner => v_alice,
        p_name => 'alices');
    perform fixture.prebuild(v_p, now() - interval '5 days', p_name => 'running');
end;
$$;

select results_eq(
    $$
    select workspace_name, state, outcome
    from prebuilds.cleanup_prebuilds(array['failed', 'stopped'], p_dry_run => true)
    $$,
    $$
    values
        ('failed', 'failed start', 'would delete'),
        ('stopped', 'stopped', 'would delete'),
        ('u-failed', 'failed start', 'would delete')
    $$,
    'dry run: failed and stopped prebuilds, oldest first; running, quarantined and people''s not'
);

select is(
    (select count(*)::int from prebuilds.workspace_builds where transition = 'delete'),
    6,
    'a dry run queues nothing'
);

select results_eq(
    $$
    select workspace_name, outcome
    from prebuilds.cleanup_prebuilds(array['failed'], p_template => 't', p_dry_run => true)
    $$,
    $$values ('failed', 'would delete')$$,
    'filtered by kind and template'
);

select results_eq(
    $$
    select workspace_name
    from prebuilds.cleanup_prebuilds(
        array['failed', 'stopped'], p_finished_before => now() - interval '36 hours'
    )
    $$,
    $$values ('failed'), ('stopped')$$,
    'filtered by age'
);

select results_eq(
    $$
    select workspace_name, state, outcome
    from prebuilds.cleanup_prebuilds(array['quarantined', 'failed'], p_limit => 2,
        p_dry_run => false)
    $$,
    $$
    values
        ('quarantined', 'quarantined', 'delete queued'),
        ('failed', 'failed start', 'delete queued')
    $$,
    'a real run queues the deletes, oldest first, at most the limit'
);

select results_eq(
    $$
    select w.name, j.status
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where b.transition = 'delete' and j.status = 'pending'
    order by w.name
    $$,
    $$values ('failed', 'pending'), ('quarantined', 'pending')$$,
    'each has a pending delete build'
);

select is_empty(
    $$
    select from prebuilds.cleanup_prebuilds(array['quarantined', 'failed'], p_template => 't',
        p_dry_run => false)
    $$,
    'a second run finds nothing more there'
);

select throws_ok(
    $$select * from prebuilds.cleanup_prebuilds(array['failed', 'broken'])$$,
    '22023',
    'cleanup_prebuilds: kinds must be some of failed, stopped, quarantined (got ''broken'')',
    'an unknown kind is named'
);

select throws_ok(
    $$select * from prebuilds.cleanup_prebuilds(array['failed'], p_limit => 0)$$,
    '22023',
    'cleanup_prebuilds: limit must be between 1 and 10000 (got 0)',
    'a bad limit is named'
);

select * from finish();
rollback;
